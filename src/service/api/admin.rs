//! Admin endpoints: the online backup. Every route here is for the admin role only, which the role
//! table in `auth.rs` enforces before routing, like every other route.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;

use super::error::ApiError;
use super::extract::parse_json;
use super::{AppState, Route, route};
use crate::core::model::rfc3339;
use crate::protocol::api;
use crate::service::backup::{self, BackupError};

const ADMIN_PREFIX: &str = "/api/v1/admin/";

/// The admin routes.
pub fn routes() -> Vec<Route> {
    vec![route("/api/v1/admin/backup", Method::POST, backup)]
}

/// Is `path` an admin route (no request time limit: a backup of a large store takes minutes)?
pub fn is_admin_path(path: &str) -> bool {
    path.starts_with(ADMIN_PREFIX) || path == ADMIN_PREFIX.trim_end_matches('/')
}

impl From<BackupError> for ApiError {
    fn from(error: BackupError) -> Self {
        match error {
            BackupError::Busy => ApiError::Conflict(error.to_string()),
            BackupError::Exists { .. } => ApiError::Conflict(error.to_string()),
            BackupError::NoRoom { .. } => ApiError::InsufficientStorage(error.to_string()),
            BackupError::Io { .. } | BackupError::Store(_) => {
                tracing::error!(%error, "backup failed");
                ApiError::Internal
            }
        }
    }
}

/// `POST admin/backup/` `{out?}`: a consistent snapshot (one read transaction) written to the
/// service's disk while it keeps serving; 409 while another runs, 507 without room for it.
pub async fn backup(State(state): State<AppState>, body: Bytes) -> Result<Json<api::Backup>, ApiError> {
    let request: api::BackupRequest = if body.iter().all(u8::is_ascii_whitespace) { api::BackupRequest::default() } else { parse_json(&body)? };
    let now = state.clock.now_ms();
    let data_dir = state.config.data_dir.clone();
    let out = match request.out.as_deref().map(str::trim) {
        None | Some("") => backup::default_path(&data_dir, now),
        Some(path) => data_dir.join(path),
    };
    // Refuse a second backup at once, before a thread is started for it.
    let gate = state.backups.clone();
    drop(gate.enter()?);
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || {
        let ticket = gate.enter()?;
        backup::online(&store, &ticket, &out, now)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "backup task failed");
        ApiError::Internal
    })??;
    tracing::info!(path = %report.path.display(), size_bytes = report.size_bytes, calls = report.calls, duration_ms = report.duration_ms, "backup written");
    Ok(Json(api::Backup {
        path: report.path.display().to_string(),
        size_bytes: report.size_bytes,
        calls: report.calls,
        campaigns: report.campaigns,
        entries: report.entries,
        snapshot_at: rfc3339(report.snapshot_at),
        duration_ms: report.duration_ms,
    }))
}
