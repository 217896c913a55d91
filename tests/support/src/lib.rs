//! What the integration tests (`tests/api`), the browser tests (`tests/browser`) and the benchmarks share: the
//! service under test on its own database, broker, channel and stream (`spawn_app`, `TestApp`), the per-test
//! database that is dropped when the test passes and kept when it fails, publishers, waiting on a condition,
//! the sample order, free ports and reading `/metrics`.
//!
//! The items tests use most are re-exported here, so a test names them as `order_service_test_support::spawn_app`.

pub mod app;
pub mod database;
pub mod metrics;
pub mod net;
pub mod orders;
pub mod publish;
pub mod settings;
pub mod wait;

pub use app::{
    prepare, prepare_on, prepare_on_database, prepare_with, spawn_app, spawn_app_with, start_error,
};
pub use app::{StoppedApp, TestApp};
pub use database::{
    base_database_url, connect, count, empty_database, insert_directly, migrated_database,
};
pub use net::{free_port, header};
pub use orders::{sample_changed, sample_with_uid, uid_of, SAMPLE, SAMPLE_UID};
pub use publish::{create_stream, publishers, Publisher, StreamGuard};
pub use settings::admin_token;
pub use wait::{eventually, holds_for, WAIT};
