//! Every setting is a flag with an environment variable and a default; `--help` lists them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "order-service",
    version,
    about = "Takes orders from NATS Streaming, stores them in PostgreSQL, serves them from memory."
)]
pub struct Settings {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://order_service:order_service@127.0.0.1:5432/order_service",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Connections in the database pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
    /// NATS URL of the streaming server.
    #[arg(long, env = "STAN_URL", default_value = "nats://127.0.0.1:4222")]
    pub stan_url: String,
    /// NATS Streaming cluster id.
    #[arg(long, env = "STAN_CLUSTER_ID", default_value = "test-cluster")]
    pub stan_cluster_id: String,
    /// Channel the orders arrive on.
    #[arg(long, env = "STAN_CHANNEL", default_value = "orders")]
    pub stan_channel: String,
    /// Stable client id of this instance: a restart with the same id replaces a dead predecessor at once.
    #[arg(long, env = "STAN_CLIENT_ID", default_value = "order-service")]
    pub stan_client_id: String,
    /// Durable name: a restart resumes after the last acknowledged message.
    #[arg(long, env = "STAN_DURABLE_NAME", default_value = "order-service")]
    pub stan_durable_name: String,
    /// Queue group shared by all instances.
    #[arg(long, env = "STAN_QUEUE_GROUP", default_value = "order-service")]
    pub stan_queue_group: String,
    /// Seconds before an unacknowledged message is redelivered. Short, because ratsio loses the first deliveries
    /// after subscribing and they come back only after this.
    #[arg(long, env = "STAN_ACK_WAIT", default_value_t = 5)]
    pub stan_ack_wait_secs: i32,
    /// Messages delivered but not yet acknowledged: bounds memory under any backlog.
    #[arg(long, env = "STAN_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub stan_max_in_flight: i32,
    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8081")]
    pub http_addr: SocketAddr,
    /// Messages above this size are rejected before parsing.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Log format: human or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
    pub log_format: String,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
}

impl Settings {
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.stan_ack_wait_secs).unwrap_or(1))
    }
}
