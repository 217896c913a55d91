//! Middleware that times every HTTP request into `order_service_http_request_duration_seconds{route, status}` and
//! logs the requests that failed on our side (5xx) with their cause. There is no per-request log line or span: under
//! load they cost more CPU than the lookup itself (a request id and a span per request were 7 % of the service's
//! CPU under wrk), and the histogram already counts every request by route and status.
//!
//! `GET /order/{id}` is benchmarked, so the per-request work is kept small: no allocation, no shared lock and no
//! memory that another worker writes, for a named route. Each worker keeps its own table from route to its own
//! histogram series for each status (`WorkerHistograms`: a scrape adds the workers' series up); a series is made
//! once per route and status per worker. Routes are found by their name (`#[get]` names each after its function;
//! actix requires names to be unique for `url_for`), which actix resolves by index after routing; the template
//! string is built only the first time.

use std::cell::RefCell;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::http::routes::{order_uid_segment, GET_ORDER, ORDER_ROUTE};
use crate::telemetry::metrics::{Metrics, UNMATCHED_ROUTE};
use crate::telemetry::worker_histograms::{WorkerHistograms, WorkerSeries};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::{Error, HttpRequest};

/// The middleware factory: `App::new().wrap(HttpMetrics::new(&metrics))`.
pub struct HttpMetrics {
    durations: WorkerHistograms,
}

impl HttpMetrics {
    pub fn new(metrics: &Metrics) -> HttpMetrics {
        HttpMetrics {
            durations: metrics.http_request_duration.clone(),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            service,
            routes: Rc::new(RouteTable {
                durations: self.durations.clone(),
                routes: RefCell::new(Vec::new()),
            }),
        }))
    }
}

pub struct HttpMetricsService<S> {
    service: S,
    routes: Rc<RouteTable>,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Timed<S::Future>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        Timed {
            inner: self.service.call(request),
            started: Instant::now(),
            routes: self.routes.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, observed when it completes.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        started: Instant,
        routes: Rc<RouteTable>,
    }
}

impl<F, B> Future for Timed<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let seconds = this.started.elapsed().as_secs_f64();
        match &result {
            Ok(response) => {
                let status = response.status();
                if status.is_server_error() {
                    let request = response.request();
                    tracing::error!(method = %request.method(), path = request.path(), status = status.as_u16(),
                        error = ?response.response().error(), "Request failed.");
                }
                this.routes
                    .observe(Some(response.request()), status, seconds)
            }
            // Handlers' errors are already responses here; this is an inner middleware failing.
            Err(error) => {
                this.routes
                    .observe(None, error.as_response_error().status_code(), seconds)
            }
        }
        Poll::Ready(result)
    }
}

/// One worker's resolved histogram handles.
struct RouteTable {
    durations: WorkerHistograms,
    routes: RefCell<Vec<Route>>,
}

struct Route {
    /// The route's name, or `None` for an unnamed route (found by its template instead).
    name: Option<Box<str>>,
    template: Box<str>,
    by_status: Vec<(StatusCode, WorkerSeries)>,
}

impl RouteTable {
    fn observe(&self, request: Option<&HttpRequest>, status: StatusCode, seconds: f64) {
        let mut routes = self.routes.borrow_mut();
        let request = request.filter(|request| !fell_through(request));
        let name = request.and_then(HttpRequest::match_name);
        let known =
            name.and_then(|name| routes.iter().position(|r| r.name.as_deref() == Some(name)));
        let index = match known {
            Some(index) => index,
            None => {
                // An unnamed route, or the first request of a named one: find it by its template.
                let template = match name {
                    Some(GET_ORDER) => Some(ORDER_ROUTE.to_owned()),
                    _ => request.and_then(HttpRequest::match_pattern),
                };
                let template = template.as_deref().unwrap_or(UNMATCHED_ROUTE);
                match routes.iter().position(|r| &*r.template == template) {
                    Some(index) => index,
                    None => {
                        routes.push(Route {
                            name: name.map(Box::from),
                            template: template.into(),
                            by_status: Vec::new(),
                        });
                        routes.len() - 1
                    }
                }
            }
        };
        let route = &mut routes[index];
        match route.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, histogram)) => histogram.observe(seconds),
            None => {
                let histogram = self.durations.series(&[&*route.template, status.as_str()]);
                histogram.observe(seconds);
                route.by_status.push((status, histogram));
            }
        }
    }
}

/// True for what reached the order route's prefix but not its template (see `routes::GetOrderRoute`): it counts
/// as unmatched, as it did when the template decided.
fn fell_through(request: &HttpRequest) -> bool {
    request.match_name() == Some(GET_ORDER) && order_uid_segment(request).is_none()
}
