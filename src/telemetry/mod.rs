//! What the service tells operators: log lines (`logs`), the Prometheus registry (`metrics`) and
//! the HTTP workers' own histograms in it (`worker_histograms`), and an error with
//! its causes for either (`error_chain`). Uses `config` and `domain` only.

pub mod error_chain;
mod logs;
pub mod metrics;
pub mod worker_histograms;

#[cfg(test)]
pub(crate) use logs::capture;
pub use logs::{get_subscriber, init_subscriber, malformed_requests, DEFAULT_LOG_FILTER};
