//! Integration tests over real connections: PostgreSQL (a fresh database per test), nats-server, the project's STAN
//! broker (in-process, its own cluster id per test) and the real ratsio client inside the service; for JetStream,
//! the machine's nats-server with JetStream (a stream, subject and consumer of the test's own).

/// Runs each named test once per transport: `async fn name(source: SourceKind)` becomes the tests
/// `name::over_stan` and `name::over_jetstream`.
macro_rules! for_each_source {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use order_service::config::SourceKind;

                #[actix_web::test]
                async fn over_stan() -> anyhow::Result<()> {
                    super::$name(SourceKind::Stan).await
                }

                #[actix_web::test]
                async fn over_jetstream() -> anyhow::Result<()> {
                    super::$name(SourceKind::JetStream).await
                }
            }
        )*
    };
}

mod alerts;
mod binary;
mod clusters;
mod compose;
mod dashboard;
mod fault_harness;
mod faults;
mod feed;
mod health_check;
mod hostile;
mod instances;
mod jetstream;
mod listeners;
mod memory;
mod metrics;
mod migrations;
mod openapi;
mod orders;
mod pg_failover;
mod pipeline;
mod prometheus_harness;
mod read_through;
mod replay;
mod stalls;
mod storage;
mod tls_auth;
