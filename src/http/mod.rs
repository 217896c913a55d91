//! Both listeners' faces: the routes (`routes`), the operator listener's gate (`admin_gate`), the request metrics
//! (`request_metrics`), what `/readyz` checks (`readiness`), and the web page's assets (`ui/`, embedded by
//! `routes::ui`). Uses the pipeline, the cache, storage and everything below them; `app` mounts it.

pub mod admin_gate;
pub mod readiness;
pub mod request_metrics;
pub mod routes;
