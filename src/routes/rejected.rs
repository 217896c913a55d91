use actix_web::{get, web, HttpResponse};

use crate::db::{self, Pool};
use crate::routes::orders::{ListError, Page};

/// Dead letters with their reasons, newest first.
#[get("/rejected")]
pub async fn list_rejected(
    page: web::Query<Page>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ListError> {
    let rejected = db::list_rejected(&pool, page.limit(), page.before).await?;
    Ok(HttpResponse::Ok().json(rejected))
}
