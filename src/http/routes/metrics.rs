use actix_web::{get, http::StatusCode, web, HttpResponse};

use crate::http::readiness::Readiness;
use crate::http::routes::error_response;
use crate::telemetry::metrics::{Metrics, CONTENT_TYPE};

/// Every metric of this instance in the Prometheus text format.
#[get("/metrics")]
pub async fn get_metrics(
    metrics: web::Data<Metrics>,
    readiness: web::Data<Readiness>,
) -> HttpResponse {
    // Readiness needs a database round trip, so it is sampled here, once per scrape, rather than kept current.
    metrics
        .ready
        .set(i64::from(readiness.check().await.is_ok()));
    match metrics.render() {
        Ok(body) => HttpResponse::Ok().content_type(CONTENT_TYPE).body(body),
        Err(error) => {
            tracing::error!(%error, "Failed to render the metrics.");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected",
                "failed to render the metrics",
            )
        }
    }
}
