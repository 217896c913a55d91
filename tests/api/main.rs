//! Integration tests over real connections: PostgreSQL (a fresh database per test), nats-server, the project's STAN
//! broker (in-process, own cluster id per test) and the real ratsio client inside the service.

mod helpers;
mod orders;
