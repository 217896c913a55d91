//! `HEAD` is answered wherever `GET` is, with the same status and headers and no body (middleware on both
//! listeners, outside the router). actix-web's `#[get]` routes match `GET` only, so `HEAD` found no route; here it
//! is routed as `GET`. The body is never sent: actix-http's codec remembers the method it parsed and writes no body
//! for a `HEAD` request, whatever the response holds, while its headers (`Content-Length` included) stay.
//!
//! A `Transform` rather than `middleware::from_fn`: that one boxes the rest of the chain's future on every request,
//! and every `GET /order/{id}` passes here.

use std::future::{ready, Ready};

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::Method;
use actix_web::Error;

/// The middleware factory: `App::new().wrap(HeadAsGet)`.
pub struct HeadAsGet;

impl<S, B> Transform<S, ServiceRequest> for HeadAsGet
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HeadAsGetService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HeadAsGetService { service }))
    }
}

pub struct HeadAsGetService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for HeadAsGetService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, mut request: ServiceRequest) -> Self::Future {
        if request.method() == Method::HEAD {
            request.head_mut().method = Method::GET;
        }
        self.service.call(request)
    }
}
