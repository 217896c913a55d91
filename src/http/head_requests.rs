//! `HEAD` is answered wherever `GET` is, with the same status and headers and no body (middleware on both
//! listeners, outside the router). actix-web's `#[get]` routes match `GET` only, so `HEAD` found no route; here it
//! is routed as `GET`. The body is never sent: actix-http's codec remembers the method it parsed and writes no body
//! for a `HEAD` request, whatever the response holds, while its headers (`Content-Length` included) stay.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;

/// The middleware (`actix_web::middleware::from_fn(head_requests::head_as_get)`).
pub async fn head_as_get(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if request.method() == Method::HEAD {
        request.head_mut().method = Method::GET;
    }
    next.call(request).await
}
