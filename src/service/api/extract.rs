//! Request plumbing: JSON and raw bodies with field-naming errors, query parameters,
//! pagination, and store reads off the async workers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Query, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::service::store::Reader;

/// A JSON body whose errors name the field: `{"field": "phone_numbers[3]"}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The raw request body (for bodies that are checked against a signature before they are
/// parsed), with the same size limit and errors as [`JsonBody`].
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state).await.map(RawBody).map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("Request body is larger than limits.request_body_max_bytes".into())
            } else {
                ApiError::BadRequest { message: format!("Unreadable request body: {rejection}"), field: None }
            }
        })
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object: serde would also fill a struct from an array of its fields in
    // order, which no client means and which would skip the field names entirely.
    let not_an_object = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => None,
        None => Some("Request body is empty; a JSON object is expected"),
        Some(b'[') => Some("Request body must be a JSON object, not an array"),
        Some(b'"') => Some("Request body must be a JSON object, not a string"),
        Some(b'-' | b'0'..=b'9') => Some("Request body must be a JSON object, not a number"),
        Some(b't' | b'f') => Some("Request body must be a JSON object, not a boolean"),
        Some(b'n') => Some("Request body must be a JSON object, not null"),
        Some(_) => Some("Invalid JSON: a JSON object is expected"),
    };
    if let Some(message) = not_an_object {
        return Err(ApiError::BadRequest { message: message.into(), field: None });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let text = inner.to_string();
        // serde reports a missing field at the parent's path; name the field itself.
        let field = match text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            Some(missing) if path == "." => Some(missing.to_string()),
            Some(missing) => Some(format!("{path}.{missing}")),
            None if path == "." => None,
            None => Some(path),
        };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("Invalid JSON: {text}")
        } else {
            match &field {
                Some(f) => format!("Invalid field `{f}`: {}", strip_position(&text)),
                None => format!("Invalid request: {}", strip_position(&text)),
            }
        };
        ApiError::BadRequest { message, field }
    })?;
    deserializer.end().map_err(|e| ApiError::BadRequest { message: format!("Invalid JSON: {e}"), field: None })?;
    Ok(value)
}

fn strip_position(text: &str) -> &str {
    text.split(" at line ").next().unwrap_or(text)
}

/// Query parameters as text, parsed one by one so each error can name its parameter.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Query(map) = Query::<HashMap<String, String>>::from_request(request, state)
            .await
            .map_err(|e| ApiError::BadRequest { message: format!("Invalid query string: {e}"), field: None })?;
        Ok(Params(map))
    }
}

impl Params {
    /// Refuses parameters the endpoint does not take, naming them.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&str> = self.0.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        let accepted = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        Err(ApiError::field(unknown[0], format!("Unknown query parameter(s): {}; this endpoint accepts: {accepted}", unknown.join(", "))))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn id(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name).map(|v| parse_id(name, v)).transpose()
    }

    /// `limit` within `[1, page_size_max]`, default `page_size_default`.
    pub fn limit(&self, state: &AppState) -> Result<usize, ApiError> {
        let limits = &state.config.limits;
        match self.text("limit") {
            None => Ok(limits.page_size_default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=limits.page_size_max).contains(&n) => Ok(n),
                _ => Err(ApiError::field("limit", format!("limit must be a whole number from 1 to {}", limits.page_size_max))),
            },
        }
    }
}

pub fn parse_id(field: &str, text: &str) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::field(field, format!("{field} must be a positive integer"))),
    }
}

/// Runs a read against a fresh snapshot on the blocking pool.
pub async fn read<T: Send + 'static>(state: &AppState, f: impl FnOnce(&Reader) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let reader = store.read()?;
        f(&reader)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "read task failed");
        ApiError::Internal
    })?
}
