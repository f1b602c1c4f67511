//! The HTTP API on axum: routes, shared state, and the middleware that every request passes
//! (access log, timeout, authentication, and the headers and error shape of every answer).
//! Handlers validate, then hand commands to the writer and await the commit; reads go straight
//! to a store snapshot. The API never edits a call's state and never talks to the provider.

mod admin;
mod auth;
mod calls;
mod campaigns;
mod dnc;
pub mod error;
mod extract;
mod openapi;
mod ops;
mod phones;
mod prometheus;
mod twilio;
pub mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};

use crate::config::Config;
use crate::core::clock::SharedClock;
use crate::service::stats::{Gauges, LiveStats};
use crate::service::store::Store;
use crate::service::writer::WriterHandle;
use error::ApiError;

/// What every handler can reach: one `Arc`, so that the clone each middleware and handler takes
/// per request is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The handles and settings behind [`AppState`].
pub struct AppParts {
    pub writer: WriterHandle,
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    /// The retry rules and tokens as they are now (a SIGHUP may replace them).
    pub live: Arc<crate::service::reload::Live>,
    pub gauges: Arc<Gauges>,
    pub stats: Arc<LiveStats>,
    pub clock: SharedClock,
    /// `public_url`, or `http://` + the address the listener bound: the base of the URLs given to
    /// the provider (the Twilio status callback's signature covers it).
    pub public_base: Arc<str>,
    /// The provider's health as the workers see it (circuit breaker, throttling), for metrics.
    pub provider_health: Arc<crate::service::dispatch::ProviderHealth>,
    /// One permit per running CSV export (`limits.exports_max`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// What the retention thread reports (disabled when retention is not configured).
    pub retention: Arc<crate::service::retention::RetentionStatus>,
    /// One online backup at a time.
    pub backups: Arc<crate::service::backup::BackupGate>,
    /// The data disk's free-space guard: below its limit, new work is refused.
    pub disk: Arc<crate::service::disk::DiskGuard>,
}

impl AppState {
    /// New work (calls, numbers, campaign starts) is refused while the data disk is low.
    pub fn accepting_new_work(&self) -> Result<(), ApiError> {
        match self.disk.refusal() {
            Some(reason) => Err(ApiError::Unavailable(reason)),
            None => Ok(()),
        }
    }
}

/// One route of the table the router is built from: a path, one method, and its handler. The
/// table is a plain list so that it can be enumerated: `openapi.rs` checks it against the API
/// document, both ways.
pub struct Route {
    pub path: &'static str,
    pub method: Method,
    /// Whether the path is also answered with a trailing slash (every path but the probes').
    pub trailing_slash: bool,
    handler: MethodRouter<AppState>,
}

/// A route whose path is answered with and without the trailing slash.
fn route<H: Handler<T, AppState>, T: 'static>(path: &'static str, method: Method, handler: H) -> Route {
    let filter = MethodFilter::try_from(method.clone()).expect("the table uses standard methods");
    Route { path, method, trailing_slash: true, handler: on(filter, handler) }
}

/// Every route of the service. A route added here and not to `docs/openapi.yaml` fails the
/// document's test.
pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        route("/api/v1/campaigns", Method::GET, campaigns::list),
        route("/api/v1/campaigns", Method::POST, campaigns::create),
        route("/api/v1/campaigns/{id}", Method::GET, campaigns::get),
        route("/api/v1/campaigns/{id}", Method::PATCH, campaigns::patch),
        route("/api/v1/campaigns/{id}/pause", Method::POST, campaigns::pause),
        route("/api/v1/campaigns/{id}/resume", Method::POST, campaigns::resume),
        route("/api/v1/campaigns/{id}/stop", Method::POST, campaigns::stop),
        route("/api/v1/campaigns/{id}/start", Method::POST, campaigns::start),
        route("/api/v1/campaigns/{id}/phone-numbers", Method::GET, campaigns::list_numbers),
        route("/api/v1/phone-numbers", Method::POST, campaigns::add_numbers),
        route("/api/v1/initiate-call", Method::POST, calls::initiate),
        route("/api/v1/bulk-initiate-calls", Method::POST, calls::bulk),
        route("/api/v1/callback", Method::PUT, calls::callback),
        route("/api/v1/calls", Method::GET, calls::list),
        route("/api/v1/calls/export", Method::GET, calls::export),
        route("/api/v1/calls/{id}", Method::GET, calls::get),
        route("/api/v1/dnc", Method::GET, dnc::list),
        route("/api/v1/dnc", Method::POST, dnc::add),
        route("/api/v1/dnc/{number}", Method::DELETE, dnc::remove),
        route("/api/v1/dlq", Method::GET, ops::dead_letters),
        route("/api/v1/dlq/replay", Method::POST, ops::replay_many),
        route("/api/v1/dlq/{id}/replay", Method::POST, ops::replay),
        route("/api/v1/providers/twilio/status", Method::POST, twilio::status),
        route("/api/v1/metrics", Method::GET, ops::metrics),
        route("/api/v1/openapi.json", Method::GET, openapi::document),
        route("/metrics", Method::GET, prometheus::prometheus),
    ];
    // Routes for the admin role only (the role table lets no other role POST).
    routes.extend(admin::routes());
    // The probes answer their exact path only.
    for (path, handler) in [("/healthz", get(ops::healthz)), ("/readyz", get(ops::readyz))] {
        routes.push(Route { path, method: Method::GET, trailing_slash: false, handler });
    }
    routes
}

pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    // Two routes on one path (GET and POST) merge into one method router.
    for Route { path, trailing_slash, handler, .. } in routes() {
        if trailing_slash {
            let bare = path.trim_end_matches('/');
            api = api.route(bare, handler.clone()).route(&format!("{bare}/"), handler);
        } else {
            api = api.route(path, handler);
        }
    }
    api.fallback(|| async { ApiError::NotFound("No such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.config.limits.request_body_max_bytes))
        // Around the routing, not on each route: an anonymous client gets 401 whatever the path
        // or method, so it cannot tell which routes and methods exist.
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(state.clone(), access_log))
        .layer(map_response(finish_response))
        .with_state(state)
}

/// Every answer carries phone numbers or may: no cache may store it and no browser may guess its
/// type. Every error is in the one JSON shape, including the plain-text rejections of axum's own
/// extractors (a path segment that is not UTF-8, a query string that does not parse).
async fn finish_response(response: Response) -> Response {
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let mut response = if (status.is_client_error() || status.is_server_error()) && !is_json { error::reshape(response).await } else { response };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// One line per request (method, path, status, latency; never a token or a query string, which
/// may hold a phone number), and the request time limit.
async fn access_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // An admin operation (a backup of a large store) takes as long as it takes.
    let response = if admin::is_admin_path(&path) {
        next.run(request).await
    } else {
        match tokio::time::timeout(state.config.limits.http_request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::Unavailable("Request took longer than limits.http_request_timeout".into()).into_response(),
        }
    };
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(target: "callmgr::access", %method, path, status, micros, "request");
    } else {
        tracing::info!(target: "callmgr::access", %method, path, status, micros, "request");
    }
    response
}
