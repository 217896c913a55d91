//! The framework's own ceiling for bench/http.sh: actix-web answering `GET /order/{order_uid}` with one fixed document,
//! with no cache, actor, middleware or other route. The service can be no faster than this on the same machine; the
//! gap between this and nginx is actix-web's, the gap between the service and this is ours.
//!
//!     cargo run --release --example actix_return_200 -- --port 8090 --workers 2 --document order.json

use std::path::PathBuf;

use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use clap::Parser;

#[derive(Parser)]
#[command(
    about = "actix-web answering GET /order/{id} with one fixed document (a benchmark reference)"
)]
struct Args {
    #[arg(long, default_value_t = 8090)]
    port: u16,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The JSON document every request gets.
    #[arg(long)]
    document: PathBuf,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let document = Bytes::from(std::fs::read(&args.document)?);
    HttpServer::new(move || {
        let document = document.clone();
        App::new().route(
            "/order/{order_uid}",
            web::get().to(move || {
                let document = document.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(document)
                }
            }),
        )
    })
    .workers(args.workers)
    .bind(("127.0.0.1", args.port))?
    .run()
    .await
}
