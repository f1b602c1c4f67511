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
mod ops;
mod phones;
mod prometheus;
mod twilio;
pub mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};

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

/// Registers `path` with and without the trailing slash (both are accepted).
fn both(router: Router<AppState>, path: &str, methods: MethodRouter<AppState>) -> Router<AppState> {
    let bare = path.trim_end_matches('/');
    router.route(bare, methods.clone()).route(&format!("{bare}/"), methods)
}

pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    let routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("/api/v1/campaigns", get(campaigns::list).post(campaigns::create)),
        ("/api/v1/campaigns/{id}", get(campaigns::get).patch(campaigns::patch)),
        ("/api/v1/campaigns/{id}/pause", post(campaigns::pause)),
        ("/api/v1/campaigns/{id}/resume", post(campaigns::resume)),
        ("/api/v1/campaigns/{id}/stop", post(campaigns::stop)),
        ("/api/v1/campaigns/{id}/start", post(campaigns::start)),
        ("/api/v1/campaigns/{id}/phone-numbers", get(campaigns::list_numbers)),
        ("/api/v1/phone-numbers", post(campaigns::add_numbers)),
        ("/api/v1/initiate-call", post(calls::initiate)),
        ("/api/v1/bulk-initiate-calls", post(calls::bulk)),
        ("/api/v1/callback", put(calls::callback)),
        ("/api/v1/calls", get(calls::list)),
        ("/api/v1/calls/export", get(calls::export)),
        ("/api/v1/calls/{id}", get(calls::get)),
        ("/api/v1/dnc", get(dnc::list).post(dnc::add)),
        ("/api/v1/dnc/{number}", delete(dnc::remove)),
        ("/api/v1/dlq", get(ops::dead_letters)),
        ("/api/v1/dlq/replay", post(ops::replay_many)),
        ("/api/v1/dlq/{id}/replay", post(ops::replay)),
        ("/api/v1/providers/twilio/status", post(twilio::status)),
        ("/api/v1/metrics", get(ops::metrics)),
        ("/metrics", get(prometheus::prometheus)),
    ];
    for (path, methods) in routes {
        api = both(api, path, methods);
    }
    // Routes for the admin role only. Every token is an admin today; a role check belongs on
    // this list alone.
    for (path, methods) in admin::routes() {
        api = both(api, path, methods);
    }
    api.route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(|| async { ApiError::NotFound("No such endpoint".into()) })
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
