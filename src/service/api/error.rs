//! The API's one error type: one table from variant to status code and `code` string, and the
//! single JSON shape `{"error": {"code", "message", "details"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::core::model::CallId;
use crate::service::store::StoreError;
use crate::service::writer::CommandError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        message: String,
        field: Option<String>,
    },
    Unauthorized,
    /// The token's role does not allow this request, or a provider signature is wrong (403).
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed,
    Conflict(String),
    PayloadTooLarge(String),
    Duplicate {
        message: String,
        call_id: CallId,
        retry_after_seconds: Option<u64>,
    },
    DoNotCall {
        phone_number: String,
    },
    Unavailable(String),
    /// 507: the disk lacks room for what was asked (a backup). Not 503: waiting does not help,
    /// so clients must not retry it as they retry a busy service.
    InsufficientStorage(String),
    Internal,
    /// A refusal with a status outside this table (e.g. 415 from an extractor), kept as it was.
    Other {
        status: StatusCode,
        message: String,
    },
}

/// The longest rejection text kept as an error message.
const REJECTION_TEXT_MAX_BYTES: usize = 1024;

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { message: message.into(), field: Some(field.into()) }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Duplicate { .. } => (StatusCode::TOO_MANY_REQUESTS, "duplicate_call"),
            ApiError::DoNotCall { .. } => (StatusCode::CONFLICT, "do_not_call"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Other { status, .. } => (*status, other_code(*status)),
        }
    }

    /// The error for an answer that some layer gave as plain text: the status is kept, the text
    /// becomes the message (except for 5xx, whose text may hold internals).
    pub fn from_status(status: StatusCode, text: String) -> ApiError {
        let message = if text.is_empty() { status.canonical_reason().unwrap_or("Request refused").to_string() } else { text };
        match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest { message, field: None },
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::FORBIDDEN => ApiError::Forbidden(message),
            StatusCode::NOT_FOUND => ApiError::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::CONFLICT => ApiError::Conflict(message),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(message),
            StatusCode::INTERNAL_SERVER_ERROR => ApiError::Internal,
            _ if status.is_server_error() => ApiError::Other { status, message: "Internal error; the service log has the details.".into() },
            _ => ApiError::Other { status, message },
        }
    }

    fn message_and_details(&self) -> (String, Value) {
        match self {
            ApiError::BadRequest { message, field } => (message.clone(), field.as_ref().map(|f| json!({"field": f})).unwrap_or(json!({}))),
            ApiError::Unauthorized => ("Authentication credentials were not provided or are invalid.".into(), json!({})),
            ApiError::Forbidden(message)
            | ApiError::NotFound(message)
            | ApiError::Conflict(message)
            | ApiError::PayloadTooLarge(message)
            | ApiError::Unavailable(message)
            | ApiError::InsufficientStorage(message) => (message.clone(), json!({})),
            ApiError::MethodNotAllowed => ("Method not allowed on this path.".into(), json!({})),
            ApiError::Duplicate { message, call_id, .. } => (message.clone(), json!({"call_id": call_id.to_string()})),
            ApiError::DoNotCall { phone_number } => (format!("Number {phone_number} is on the do-not-call list"), json!({"phone_number": phone_number})),
            ApiError::Internal => ("Internal error; the service log has the details.".into(), json!({})),
            ApiError::Other { message, .. } => (message.clone(), json!({})),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let (message, details) = self.message_and_details();
        let retry_after = match &self {
            ApiError::Duplicate { retry_after_seconds: Some(seconds), .. } => Some(seconds.max(&1).to_string()),
            _ => None,
        };
        let body = json!({"error": {"code": code, "message": message, "details": details}});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds)
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The `code` of a status outside the table.
fn other_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        408 => "request_timeout",
        411 => "length_required",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        429 => "too_many_requests",
        431 => "headers_too_large",
        500..=599 => "internal",
        _ => "bad_request",
    }
}

/// Re-answers an error that is not in the JSON shape (axum's extractors answer plain text) in
/// the shape, with the same status and headers and its text as the message.
pub async fn reshape(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, REJECTION_TEXT_MAX_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let mut reshaped = ApiError::from_status(parts.status, text).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            reshaped.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    reshaped
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::NotFound(m) => ApiError::NotFound(m),
            CommandError::Invalid { field, message } => ApiError::BadRequest { message, field: Some(field) },
            CommandError::Conflict(m) => ApiError::Conflict(m),
            CommandError::Duplicate { call_id, message, retry_after_seconds } => ApiError::Duplicate { message, call_id, retry_after_seconds },
            CommandError::DoNotCall { phone_number } => ApiError::DoNotCall { phone_number },
            CommandError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "read failed");
        ApiError::Internal
    }
}
