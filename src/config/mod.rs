//! Settings: every one is a flag with an environment variable and a default in code; `--help` lists them all.
//! The tree (application, database, the sources: stan and jetstream) follows z2p's `Settings`; clap parses it.
//!
//! The settings' helpers sit beside it: `secret` (values `Debug` never shows), `server_url` (URLs with
//! credentials), `redact` (masking, on `server_url`), `admin` (the admin exposure policy), `backoff`, `client_id`.
//! Uses no other part of the crate; every part above it may use it.

pub mod admin;
pub mod backoff;
pub mod client_id;
pub mod redact;
pub mod secret;
pub mod server_url;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use redact::SecretUrl;
pub use secret::Secret;
use server_url::UrlParts;

/// The command line: an optional subcommand (`serve` by default) and the settings.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "order-service",
    version,
    about = "Takes orders from NATS Streaming and/or JetStream, stores them in PostgreSQL and serves them from memory."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Ask the running service to replay one dead letter through its pipeline and print the outcome.
    Replay {
        /// The dead letter's id, as listed by `GET /rejected`.
        id: i64,
        /// Base URL of the running service's admin listener (ADMIN_ADDR); ADMIN_TOKEN is sent when set.
        #[arg(long, env = "SERVICE_URL", default_value = "http://127.0.0.1:8082")]
        service_url: String,
    },
}

/// Everything the service needs to run.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// Where orders come from: `stan`, `jetstream`, or both (`stan,jetstream`, for a migration).
    #[arg(
        long = "source",
        env = "SOURCE",
        value_enum,
        value_delimiter = ',',
        default_value = "stan",
        global = true
    )]
    pub sources: Vec<SourceKind>,
    #[command(flatten)]
    pub application: ApplicationSettings,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub stan: StanSettings,
    #[command(flatten)]
    pub jetstream: JetStreamSettings,
}

impl Settings {
    /// The sources to consume, each once, in the order given.
    pub fn distinct_sources(&self) -> Vec<SourceKind> {
        let mut sources = Vec::new();
        for source in &self.sources {
            if !sources.contains(source) {
                sources.push(*source);
            }
        }
        sources
    }
}

/// A broker orders can come from.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// NATS Streaming (STAN), through ratsio.
    Stan,
    /// NATS JetStream, through async-nats.
    #[value(name = "jetstream")]
    JetStream,
}

impl SourceKind {
    /// The name stored with dead letters and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Stan => "stan",
            SourceKind::JetStream => "jetstream",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Args, Debug, Clone)]
pub struct ApplicationSettings {
    /// Address of the public listener: order lookups, the lookup page, health (port 0 picks a free port).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8081", global = true)]
    pub http_addr: String,
    /// Address of the admin listener: listings, dead letters, replay, metrics, the operator page. Anything but a
    /// loopback address needs ADMIN_TOKEN.
    #[arg(
        long,
        env = "ADMIN_ADDR",
        default_value = "127.0.0.1:8082",
        global = true
    )]
    pub admin_addr: String,
    /// Bearer token every admin request must carry (`Authorization: Bearer <token>`); unset: none needed.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<Secret>,
    /// Host names the admin listener answers besides localhost, 127.0.0.1 and [::1] (comma-separated, each with
    /// or without a port). Without ADMIN_TOKEN every other `Host` is refused, so a web page whose name an attacker
    /// points at 127.0.0.1 (DNS rebinding) cannot read or replay anything; with ADMIN_TOKEN and this unset, any
    /// `Host` is taken.
    #[arg(
        long,
        env = "ADMIN_ALLOWED_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    pub admin_allowed_hosts: Vec<String>,
    /// HTTP worker threads, each with its own cache actor [default: the number of CPUs].
    #[arg(long, env = "HTTP_WORKERS", global = true)]
    pub http_workers: Option<usize>,
    /// Messages larger than this are rejected before parsing.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_message_bytes: usize,
    /// Seconds with deliveries waiting and no commit before the pipeline counts as stalled (`/readyz` 503, the
    /// `pipeline_stalled` gauge, one log line).
    #[arg(long, env = "STALL_AFTER", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86400), global = true)]
    pub stall_after_secs: u64,
    /// Bytes of orders each HTTP worker's cache may hold (JSON + order_uid + 64 per order); the hottest stay, the rest
    /// are read from PostgreSQL on demand. Unset: every stored order is cached.
    #[arg(long, env = "CACHE_MAX_BYTES", global = true)]
    pub cache_max_bytes: Option<usize>,
    /// Seconds between the change feed's catch-up reads when no notification woke it (a safety net).
    #[arg(long, env = "FEED_CATCH_UP_INTERVAL", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub feed_catch_up_interval_secs: u64,
    /// Log lines for people or for machines.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// How the connection to PostgreSQL is protected.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (a `sslmode=require` in DATABASE_URL still wins).
    Disable,
    /// TLS, the server's certificate not checked: protects against listeners, not against an impostor.
    Require,
    /// TLS, the certificate checked against DB_CA_FILE and the host name against it.
    VerifyFull,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL (its password never reaches a log line).
    #[arg(
        id = "database_url",
        value_name = "DATABASE_URL",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://order_service@127.0.0.1:5432/order_service",
        hide_env_values = true,
        global = true
    )]
    pub url: SecretUrl,
    /// Connections in the database pool.
    #[arg(
        long = "db-pool-size",
        env = "DB_POOL_SIZE",
        default_value_t = 4,
        global = true
    )]
    pub pool_size: u32,
    /// Most messages committed in one transaction (group commit). Half of STAN_MAX_IN_FLIGHT by default, so one
    /// batch commits while the next is delivered and validated.
    #[arg(
        long = "batch-size",
        env = "BATCH_SIZE",
        default_value_t = 1024,
        global = true
    )]
    pub batch_size: usize,
    /// Most payload bytes committed in one transaction; a single larger message is committed alone.
    #[arg(
        long = "batch-max-bytes",
        env = "BATCH_MAX_BYTES",
        default_value_t = 16 * 1024 * 1024,
        global = true
    )]
    pub batch_max_bytes: usize,
    /// Seconds any statement or lock wait may take (`statement_timeout`, `lock_timeout` on every connection); a
    /// batch commit as a whole may take three times this.
    #[arg(long = "db-statement-timeout", env = "DB_STATEMENT_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub statement_timeout_secs: u64,
    /// Times a message is tried on its own before it is kept as a dead letter of class `storage`.
    #[arg(long = "store-max-attempts", env = "STORE_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub store_max_attempts: u32,
    /// TLS to PostgreSQL: disable, require, verify-full (needs DB_CA_FILE).
    #[arg(long = "db-sslmode", env = "DB_SSLMODE", value_enum, default_value_t = SslMode::Disable, global = true)]
    pub ssl_mode: SslMode,
    /// PEM file with the CA certificate(s) that sign the PostgreSQL server's certificate.
    #[arg(long = "db-ca-file", env = "DB_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

impl DatabaseSettings {
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_secs(self.statement_timeout_secs)
    }

    /// The deadline of one batch transaction: a few statements, each bounded by the statement timeout.
    pub fn commit_deadline(&self) -> Duration {
        self.statement_timeout().saturating_mul(3)
    }

    /// The URL without its password, for log lines and error messages.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }
}

#[derive(Args, Debug, Clone)]
pub struct StanSettings {
    /// NATS servers of the NATS Streaming cluster: one URL, or a comma-separated list of the nodes of one NATS
    /// cluster (the service moves to another when its node dies). Entries may carry credentials
    /// (`nats://user:password@host`, `nats://token@host`), alike in every entry; they never reach a log line.
    #[arg(
        id = "stan_url",
        value_name = "STAN_URL",
        long = "stan-url",
        env = "STAN_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        global = true
    )]
    pub url: SecretUrl,
    /// NATS user name (with NATS_PASSWORD), for both sources; credentials in STAN_URL or NATS_URL win for that
    /// source.
    #[arg(long = "nats-user", env = "NATS_USER", global = true)]
    pub nats_user: Option<String>,
    /// NATS password (with NATS_USER).
    #[arg(
        long = "nats-password",
        env = "NATS_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub nats_password: Option<Secret>,
    /// NATS authentication token, for both sources.
    #[arg(
        long = "nats-token",
        env = "NATS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub nats_token: Option<Secret>,
    /// PEM file with the CA that signs nats-server's certificate: the async-nats connections (JetStream's, STAN's
    /// acks) then require TLS. ratsio (the STAN client) cannot use TLS, so with STAN this is refused at start.
    #[arg(long = "nats-ca-file", env = "NATS_CA_FILE", global = true)]
    pub nats_ca_file: Option<PathBuf>,
    /// NATS Streaming cluster id.
    #[arg(
        long = "stan-cluster-id",
        env = "STAN_CLUSTER_ID",
        default_value = "test-cluster",
        global = true
    )]
    pub cluster_id: String,
    /// Channel the orders arrive on.
    #[arg(
        long = "stan-channel",
        env = "STAN_CHANNEL",
        default_value = "orders",
        global = true
    )]
    pub channel: String,
    /// Client id of this instance: unique among the instances, stable across restarts of one (a restart with the
    /// same id replaces a dead predecessor at once, a new id leaves the old one holding its messages until its
    /// heartbeats fail). The default, `order-service-<host name>` (letters, digits, `-` and `_` kept, anything
    /// else turned into `-`), is both in a container: each replica has a host name of its own.
    #[arg(
        long = "stan-client-id",
        env = "STAN_CLIENT_ID",
        default_value_t = client_id::default_client_id(),
        global = true
    )]
    pub client_id: String,
    /// Durable name: a restart resumes after the last acknowledged message.
    #[arg(
        long = "stan-durable-name",
        env = "STAN_DURABLE_NAME",
        default_value = "order-service",
        global = true
    )]
    pub durable_name: String,
    /// Queue group shared by every instance of the service.
    #[arg(
        long = "stan-queue-group",
        env = "STAN_QUEUE_GROUP",
        default_value = "order-service",
        global = true
    )]
    pub queue_group: String,
    /// Seconds before an unacknowledged message is redelivered. Short on purpose: a message that could not be stored
    /// comes back promptly, and redeliveries of messages still in flight are skipped, so a short wait costs little.
    #[arg(long = "stan-ack-wait", env = "STAN_ACK_WAIT", default_value_t = 2,
          value_parser = clap::value_parser!(i32).range(1..=3600), global = true)]
    pub ack_wait_secs: i32,
    /// Messages delivered and not yet acknowledged, at most: bounds memory under any backlog (to this many times
    /// MAX_MESSAGE_BYTES).
    #[arg(long = "stan-max-in-flight", env = "STAN_MAX_IN_FLIGHT", default_value_t = 2048,
          value_parser = clap::value_parser!(i32).range(1..=65536), global = true)]
    pub max_in_flight: i32,
    /// Seconds any single broker call may take (ratsio has no timeouts of its own).
    #[arg(long = "stan-timeout", env = "STAN_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub timeout_secs: u64,
    /// Seconds between checks that the broker still knows this client (0 turns them off).
    #[arg(
        long = "stan-probe-interval",
        env = "STAN_PROBE_INTERVAL",
        default_value_t = 5,
        global = true
    )]
    pub probe_interval_secs: u64,
}

impl Settings {
    /// Every secret these settings hold, for `redact::register`: whatever a library repeats of them is masked. Only
    /// the secrets themselves: a URL without one stays readable in error messages.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Ok(config) = self.database.url.expose().parse::<tokio_postgres::Config>() {
            if let Some(password) = config.get_password() {
                secrets.push(String::from_utf8_lossy(password).into_owned());
            }
        }
        secrets.extend(
            UrlParts::split(self.database.url.expose())
                .and_then(|parts| parts.user_info())
                .and_then(|user_info| user_info.secret()),
        );
        secrets.extend(server_url::list_secrets(self.stan.url.expose()));
        secrets.extend(server_url::list_secrets(self.jetstream.url.expose()));
        secrets.extend(
            [
                &self.stan.nats_password,
                &self.stan.nats_token,
                &self.application.admin_token,
            ]
            .into_iter()
            .flatten()
            .map(|secret| secret.expose().to_owned()),
        );
        secrets
    }
}

impl StanSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// `None` when probing is off.
    pub fn probe_interval(&self) -> Option<Duration> {
        (self.probe_interval_secs > 0).then(|| Duration::from_secs(self.probe_interval_secs))
    }
}

/// The JetStream source. Its ack wait and max ack pending fall back to STAN's in-flight settings (`STAN_ACK_WAIT`,
/// `STAN_MAX_IN_FLIGHT`), which they were before they had names of their own.
#[derive(Args, Debug, Clone)]
pub struct JetStreamSettings {
    /// NATS servers with JetStream: one URL, or a comma-separated list of the nodes of one cluster. Entries may
    /// carry credentials, as STAN_URL's; else NATS_USER, NATS_PASSWORD, NATS_TOKEN and NATS_CA_FILE apply to every
    /// entry.
    #[arg(
        id = "nats_url",
        value_name = "NATS_URL",
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        global = true
    )]
    pub url: SecretUrl,
    /// The stream the orders are stored in.
    #[arg(
        id = "js_stream",
        long = "js-stream",
        env = "JS_STREAM",
        default_value = "ORDERS",
        global = true
    )]
    pub stream: String,
    /// The subject orders are published on (the stream's subject, and the consumer's filter).
    #[arg(
        id = "js_subject",
        long = "js-subject",
        env = "JS_SUBJECT",
        default_value = "orders",
        global = true
    )]
    pub subject: String,
    /// The durable pull consumer, shared by every instance of the service.
    #[arg(
        id = "js_consumer",
        long = "js-consumer",
        env = "JS_CONSUMER",
        default_value = "order-service",
        global = true
    )]
    pub consumer: String,
    /// Create the stream (file storage, the limits below) when it does not exist; with `false` a missing stream
    /// is a start-up error naming it.
    #[arg(id = "js_create_stream", long = "js-create-stream", env = "JS_CREATE_STREAM", default_value_t = true,
          action = clap::ArgAction::Set, global = true)]
    pub create_stream: bool,
    /// Limit of a created stream: most messages kept (-1: no limit).
    #[arg(id = "js_max_msgs", long = "js-max-msgs", env = "JS_MAX_MSGS", default_value_t = -1,
          allow_negative_numbers = true, global = true)]
    pub max_msgs: i64,
    /// Limit of a created stream: most bytes kept (-1: no limit).
    #[arg(id = "js_max_bytes", long = "js-max-bytes", env = "JS_MAX_BYTES", default_value_t = -1,
          allow_negative_numbers = true, global = true)]
    pub max_bytes: i64,
    /// Limit of a created stream: seconds a message is kept (0: for ever).
    #[arg(
        id = "js_max_age",
        long = "js-max-age",
        env = "JS_MAX_AGE",
        default_value_t = 0,
        global = true
    )]
    pub max_age_secs: u64,
    /// Of a created stream: seconds in which a second publish with the same `Nats-Msg-Id` is dropped.
    #[arg(id = "js_duplicate_window", long = "js-duplicate-window", env = "JS_DUPLICATE_WINDOW", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub duplicate_window_secs: u64,
    /// Replicas of a stream the service creates (at most the number of JetStream servers in the cluster; 3 for a
    /// three-node cluster). An existing stream keeps its own count, which is logged and exposed as a metric.
    #[arg(id = "js_replicas", long = "js-replicas", env = "JS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5), global = true)]
    pub replicas: u8,
    /// Seconds before an unacknowledged JetStream message is delivered again [default: STAN_ACK_WAIT, which is
    /// read as a fallback].
    #[arg(id = "js_ack_wait", long = "js-ack-wait", env = "JS_ACK_WAIT",
          value_parser = clap::value_parser!(i32).range(1..=3600), global = true)]
    pub ack_wait_secs: Option<i32>,
    /// JetStream messages delivered and not yet acknowledged, at most, over every instance sharing the consumer
    /// [default: STAN_MAX_IN_FLIGHT, which is read as a fallback].
    #[arg(id = "js_max_ack_pending", long = "js-max-ack-pending", env = "JS_MAX_ACK_PENDING",
          value_parser = clap::value_parser!(i32).range(1..=65536), global = true)]
    pub max_ack_pending: Option<i32>,
    /// Seconds any single JetStream call may take.
    #[arg(id = "js_timeout", long = "js-timeout", env = "JS_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub timeout_secs: u64,
    /// Seconds between reads of the consumer's state (pending, ack pending), which also check the connection.
    #[arg(id = "js_info_interval", long = "js-info-interval", env = "JS_INFO_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub info_interval_secs: u64,
}

impl Settings {
    /// JetStream's ack wait: `JS_ACK_WAIT`, else `STAN_ACK_WAIT`.
    pub fn js_ack_wait(&self) -> Duration {
        let secs = self
            .jetstream
            .ack_wait_secs
            .unwrap_or(self.stan.ack_wait_secs);
        Duration::from_secs(secs.unsigned_abs().into())
    }

    /// JetStream's max ack pending: `JS_MAX_ACK_PENDING`, else `STAN_MAX_IN_FLIGHT`.
    pub fn js_max_ack_pending(&self) -> i64 {
        i64::from(
            self.jetstream
                .max_ack_pending
                .unwrap_or(self.stan.max_in_flight),
        )
    }
}

impl JetStreamSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn info_interval(&self) -> Duration {
        Duration::from_secs(self.info_interval_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_options_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from(["order-service"]).expect("defaults parse");
        assert_eq!(cli.command, None);
        assert_eq!(cli.settings.stan.cluster_id, "test-cluster");
        assert_eq!(cli.settings.application.http_addr, "0.0.0.0:8081");
        assert_eq!(cli.settings.stan.client_id, client_id::default_client_id());

        let cli = Cli::try_parse_from([
            "order-service",
            "migrate",
            "--database-url",
            "postgres://x@y/z",
        ])
        .expect("options after the subcommand");
        assert_eq!(cli.command, Some(Command::Migrate));
        assert_eq!(cli.settings.database.url.expose(), "postgres://x@y/z");
    }

    #[test]
    fn an_explicit_client_id_wins_over_the_default() {
        let cli =
            Cli::try_parse_from(["order-service", "--stan-client-id", "edge-7"]).expect("parses");
        assert_eq!(cli.settings.stan.client_id, "edge-7");
    }

    #[test]
    fn sources_default_to_stan_and_take_a_comma_separated_list() {
        let cli = Cli::try_parse_from(["order-service"]).expect("defaults parse");
        assert_eq!(cli.settings.distinct_sources(), [SourceKind::Stan]);
        assert_eq!(cli.settings.jetstream.stream, "ORDERS");

        let cli = Cli::try_parse_from(["order-service", "--source", "stan,jetstream,stan"])
            .expect("a list parses");
        assert_eq!(
            cli.settings.distinct_sources(),
            [SourceKind::Stan, SourceKind::JetStream]
        );
        assert!(Cli::try_parse_from(["order-service", "--source", "kafka"]).is_err());
    }

    #[test]
    fn jetstream_reads_its_own_in_flight_settings_and_falls_back_to_stan_s() {
        let fallback = Cli::try_parse_from([
            "order-service",
            "--stan-ack-wait",
            "7",
            "--stan-max-in-flight",
            "99",
        ])
        .expect("parses");
        assert_eq!(fallback.settings.js_ack_wait(), Duration::from_secs(7));
        assert_eq!(fallback.settings.js_max_ack_pending(), 99);
        assert_eq!(fallback.settings.jetstream.replicas, 1);
        let own = Cli::try_parse_from([
            "order-service",
            "--stan-ack-wait",
            "7",
            "--js-ack-wait",
            "11",
            "--js-max-ack-pending",
            "300",
            "--js-replicas",
            "3",
        ])
        .expect("parses");
        assert_eq!(own.settings.js_ack_wait(), Duration::from_secs(11));
        assert_eq!(own.settings.js_max_ack_pending(), 300);
        assert_eq!(own.settings.jetstream.replicas, 3);
        assert!(Cli::try_parse_from(["order-service", "--js-replicas", "0"]).is_err());
    }

    #[test]
    fn an_ack_wait_of_zero_is_refused() {
        assert!(Cli::try_parse_from(["order-service", "--stan-ack-wait", "0"]).is_err());
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let cli = Cli::try_parse_from([
            "order-service",
            "--database-url",
            "postgres://u:hunter2@h/d",
        ])
        .expect("parses");
        let debug = format!("{:?}", cli.settings);
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn debug_output_hides_every_nats_and_admin_secret() {
        let cli = Cli::try_parse_from([
            "order-service",
            "--stan-url",
            "nats://tok3n-in-url@h:4222",
            "--nats-url",
            "nats://js:js-pa55@h:4222",
            "--nats-password",
            "pa55word",
            "--nats-token",
            "tok3n",
            "--admin-token",
            "adm1n",
        ])
        .expect("parses");
        let debug = format!("{:?}", cli.settings);
        for secret in ["tok3n", "pa55word", "js-pa55", "adm1n"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn every_configured_secret_is_listed_for_redaction() {
        let cli = Cli::try_parse_from([
            "order-service",
            "--database-url",
            "host=db user=app password=db-pw",
            "--stan-url",
            "nats://u:nats-pw@h:4222",
            "--nats-url",
            "nats://js-t0ken@h:4222",
            "--admin-token",
            "adm1n",
        ])
        .expect("parses");
        let secrets = cli.settings.secrets();
        for secret in ["db-pw", "nats-pw", "js-t0ken", "adm1n"] {
            assert!(secrets.iter().any(|s| s == secret), "{secret}: {secrets:?}");
        }
        let plain = Cli::try_parse_from([
            "order-service",
            "--database-url",
            "postgres://app@db/orders",
        ])
        .expect("parses");
        assert!(
            plain.settings.secrets().is_empty(),
            "a URL without a secret stays readable: {:?}",
            plain.settings.secrets()
        );
    }
}
