//! Settings from flags and environment variables.

use clap::{Parser, Subcommand, ValueEnum};

/// Command line of the service.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

/// What to do: serve (default) or only apply migrations.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the pipeline and the HTTP server.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Everything the service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://order_service@127.0.0.1:5432/order_service")]
    pub database_url: String,
    #[arg(long, env = "STAN_URL", default_value = "nats://127.0.0.1:4222")]
    pub stan_url: String,
    #[arg(long, env = "STAN_CLUSTER_ID", default_value = "test-cluster")]
    pub stan_cluster_id: String,
    #[arg(long, env = "STAN_CHANNEL", default_value = "orders")]
    pub stan_channel: String,
    #[arg(long, env = "STAN_CLIENT_ID", default_value = "order-service")]
    pub stan_client_id: String,
    #[arg(long, env = "STAN_DURABLE_NAME", default_value = "order-service")]
    pub stan_durable_name: String,
    #[arg(long, env = "STAN_QUEUE_GROUP", default_value = "order-service")]
    pub stan_queue_group: String,
    /// Seconds the broker waits for an ack before redelivering.
    #[arg(long, env = "STAN_ACK_WAIT", default_value_t = 5)]
    pub stan_ack_wait: i32,
    #[arg(long, env = "STAN_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub stan_max_in_flight: i32,
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8081")]
    pub http_addr: String,
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
    #[arg(long, env = "BATCH_SIZE", default_value_t = 512)]
    pub batch_size: usize,
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1_048_576)]
    pub max_message_bytes: usize,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
}
