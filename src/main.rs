use clap::Parser;
use order_service::app::Application;
use order_service::config::redact;
use order_service::config::{Cli, Command};
use order_service::replay::client as replay_client;
use order_service::{storage, telemetry};

/// jemalloc instead of glibc malloc in the service. Profiled under ingest, glibc spent about a third
/// of the service's CPU in malloc/free, most of it consolidating fragments around the ~1.3 KiB documents
/// (`malloc_consolidate`, `unlink_chunk`); see bench/README.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() {
    let cli = Cli::parse();
    let subscriber = telemetry::get_subscriber(
        telemetry::DEFAULT_LOG_FILTER,
        cli.settings.application.log_format,
        std::io::stderr,
    );
    telemetry::init_subscriber(subscriber);
    redact::register(cli.settings.secrets());
    if let Err(error) = run(cli).await {
        // One line with the whole cause chain, then a non-zero exit; no secret in it, whatever a library put there.
        eprintln!("order-service: {}", redact::text(&format!("{error:#}")));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let pool = storage::build_pool(&settings.database).await?;
            let report = storage::migrate(&pool).await?;
            for migration in &report.adopted {
                println!("recorded {migration} (applied before refinery) in the migration history");
            }
            for migration in &report.applied {
                println!("applied {migration}");
            }
            if report.applied.is_empty() {
                println!("no migration to apply");
            }
            tracing::info!(database = %settings.database.redacted_url(), "Migrations are up to date.");
            Ok(())
        }
        Command::Replay { id, service_url } => {
            let token = settings.application.admin_token.as_ref();
            let answer = replay_client::replay(&service_url, id, token.map(|t| t.expose())).await?;
            println!("{answer}");
            Ok(())
        }
        Command::Serve => {
            tracing::info!(
                database = %settings.database.redacted_url(),
                sources = ?settings.distinct_sources(),
                stan_url = %settings.stan.url.redacted(),
                http_addr = %settings.application.http_addr,
                admin_addr = %settings.application.admin_addr,
                cluster_id = %settings.stan.cluster_id,
                channel = %settings.stan.channel,
                nats_url = %settings.jetstream.url.redacted(),
                stream = %settings.jetstream.stream,
                "Starting."
            );
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
    }
}
