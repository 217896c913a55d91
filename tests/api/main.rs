//! Integration tests over real connections: PostgreSQL (a fresh database per test), nats-server, the project's STAN
//! broker (in-process, its own cluster id per test) and the real ratsio client inside the service.

mod alerts;
mod binary;
mod dashboard;
mod fault_harness;
mod faults;
mod feed;
mod health_check;
mod helpers;
mod listeners;
mod metrics;
mod migrations;
mod openapi;
mod orders;
mod pipeline;
mod prometheus_harness;
mod read_through;
mod replay;
mod tls_auth;
