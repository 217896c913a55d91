//! Both listeners' faces: the routes (`routes`), the operator listener's gate (`admin_gate`), the request metrics
//! (`request_metrics`), one JSON body for every error (`error_bodies`), `HEAD` wherever `GET` is
//! (`head_requests`), what `/readyz` checks (`readiness`), and the web page's assets (`ui/`, embedded by
//! `routes::ui`). Uses the pipeline, the cache, storage and everything below them; `app` mounts it.

pub mod admin_gate;
pub mod error_bodies;
pub mod head_requests;
pub mod readiness;
pub mod request_metrics;
pub mod routes;
