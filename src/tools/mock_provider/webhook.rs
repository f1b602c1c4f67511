//! The mock's `webhook` side: `POST /api/initiate-call` answers `{external_call_id}` and queues
//! one `PUT callback_url` with the drawn outcome. A resend with the same `Idempotency-Key` is
//! answered with the same id and not dialled again. It must not know callmgr beyond HTTP.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{Delivery, MockProvider};
use crate::protocol::webhook::{self, Callback};

/// What the mock reads of a dial request. Looser than `webhook::DialRequest` on purpose, so that
/// a hand-written `curl` with only `call_id` and `callback_url` works in a demo.
#[derive(Deserialize)]
struct DialBody {
    call_id: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    callback_url: Option<String>,
}

pub(super) async fn dial(State(mock): State<MockProvider>, headers: HeaderMap, body: axum::body::Bytes) -> (StatusCode, Json<serde_json::Value>) {
    let shared = &mock.0;
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(request) = serde_json::from_slice::<DialBody>(&body) else {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "body must be JSON with call_id"})));
    };
    let key = headers
        .get(webhook::IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| webhook::idempotency_key(&request.call_id, request.attempt.unwrap_or(1)));
    if let Some(existing) = shared.seen_keys.lock().unwrap().get(&key) {
        shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::OK, Json(json!({"external_call_id": existing, "duplicate": true})));
    }
    if shared.full() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "mock is full"})));
    }
    let Some(url) = shared.settings.callback_url.clone().or(request.callback_url.clone()) else {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "callback_url is required"})));
    };
    let external_call_id = format!("mock-{}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let draw = shared.draw(&mut shared.dice.lock().unwrap());
    let callback = Callback {
        call_id: request.call_id.clone(),
        status: draw.outcome,
        call_duration: Some(draw.talk_seconds),
        external_call_id: Some(external_call_id.clone()),
        attempt: request.attempt,
    };
    let body = serde_json::to_string(&callback).expect("a callback serialises");
    shared.seen_keys.lock().unwrap().insert(key, external_call_id.clone());
    shared.active.lock().unwrap().insert(request.call_id.clone(), request.phone_number.clone());
    shared.enqueue(Instant::now() + draw.ring_and_talk, &request.call_id, true, Delivery::Webhook { url, body });
    (StatusCode::OK, Json(json!({"external_call_id": external_call_id})))
}
