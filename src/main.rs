use clap::Parser;
use order_service::configuration::{Command, Settings};
use order_service::startup::Application;
use order_service::{db, telemetry};

#[actix_web::main]
async fn main() {
    let settings = Settings::parse();
    telemetry::init(settings.log_format == "json");
    if let Err(error) = run(settings).await {
        eprintln!("order-service: {error:#}");
        std::process::exit(1);
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    if settings.command == Some(Command::Migrate) {
        let pool = db::connect(&settings.database_url, 1).await?;
        return db::migrate(&pool).await;
    }
    Application::build(settings)
        .await?
        .run_until_stopped()
        .await
}
