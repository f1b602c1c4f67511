//! `POST /api/v1/providers/twilio/status?call_id=…&attempt=…`: the `twilio` provider's status
//! callback. No token: the request is authenticated by its `X-Twilio-Signature`, checked against
//! the URL callmgr gave Twilio for that attempt (rebuilt from `public_url`, or the bound address,
//! and the `call_id` and `attempt` parsed here), so a proxy rewriting the request line cannot
//! change what is verified. A forged or missing signature answers 403 and changes nothing. A
//! final status goes the same way as `PUT callback/`; a non-final one only notes the progress.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::calls::callback_answer;
use super::error::ApiError;
use super::extract::RawBody;
use crate::core::model::CallId;
use crate::protocol::api;
use crate::protocol::twilio::{self as wire, StatusCallback};
use crate::service::writer::{CallbackInput, Command};

pub async fn status(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap, RawBody(body): RawBody) -> Result<Response, ApiError> {
    let Some(settings) = state.config.provider.twilio.as_ref() else {
        return Err(ApiError::NotFound("No such endpoint".into()));
    };
    // What the URL must hold is checked before the signature, but answered only after it: an
    // unsigned request learns nothing but 403.
    let params = wire::parse_form(query.unwrap_or_default().as_bytes());
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let call_id = param("call_id").and_then(CallId::parse);
    let attempt = param("attempt").and_then(|a| a.parse::<u32>().ok()).filter(|a| *a >= 1);
    let form = wire::parse_form(&body);
    let signature = headers.get(wire::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (Some(call_id), Some(attempt)) = (call_id, attempt) else {
        return Err(ApiError::Forbidden("The status callback URL is not one callmgr gave out".into()));
    };
    if params.len() != 2 {
        return Err(ApiError::Forbidden("The status callback URL is not one callmgr gave out".into()));
    }
    let url = wire::status_callback_url(&state.public_base, call_id, attempt);
    if !wire::verify(&settings.auth_token, &url, &form, signature) {
        tracing::warn!(call_id = %call_id, attempt, "Twilio status callback refused: its X-Twilio-Signature does not match");
        return Err(ApiError::Forbidden("Invalid X-Twilio-Signature".into()));
    }
    let callback = StatusCallback::parse(&form).map_err(|e| ApiError::field(e.field, e.to_string()))?;
    match settings.outcomes.outcome(callback.call_status, callback.answered_by.as_deref()) {
        None => {
            let status = callback.call_status.as_str().to_string();
            let external_call_id = Some(callback.call_sid);
            state.writer.request(|reply| Command::ProviderProgress { call_id, attempt, status: status.clone(), external_call_id, reply }).await?;
            Ok(Json(api::ProviderProgress { message: "Progress recorded".into(), call_id: call_id.to_string(), provider_status: status }).into_response())
        }
        Some(outcome) => {
            let input =
                CallbackInput { call_id, outcome, attempt: Some(attempt), external_call_id: Some(callback.call_sid), duration_seconds: callback.call_duration };
            let reply = state.writer.request(|reply| Command::Callback { input, reply }).await?;
            Ok(Json(callback_answer(&reply)).into_response())
        }
    }
}
