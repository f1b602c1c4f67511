//! Call endpoints: initiate (one and bulk), the provider's callback, reading calls, and the
//! streamed CSV export.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::mpsc::RecvTimeoutError;
use tokio::sync::mpsc::error::TrySendError;

use super::AppState;
use super::campaigns::{campaign_region, check_batch_size};
use super::error::ApiError;
use super::extract::{JsonBody, Params, RawBody, parse_json, read};
use super::phones;
use super::views::*;
use crate::config::fmt_duration;
use crate::core::model::{Call, CallId, Campaign, CampaignId, Outcome, Status, rfc3339};
use crate::protocol::{api, webhook};
use crate::service::store::{CallFilter, Reader, StoreError};
use crate::service::writer::{BulkSource, CallbackInput, CallbackReply, Command};

/// Rows the export sends per chunk.
const EXPORT_CHUNK_ROWS: usize = 1000;
/// Chunks buffered between the export's reader thread and the connection.
const EXPORT_CHANNEL_CHUNKS: usize = 4;
/// The longest `call_duration` accepted, in seconds (a day).
const CALL_DURATION_MAX_SECONDS: u64 = 86_400;

pub async fn initiate(State(state): State<AppState>, JsonBody(body): JsonBody<InitiateCallBody>) -> Result<impl IntoResponse, ApiError> {
    state.accepting_new_work()?;
    let campaign_id = body.campaign_id.0;
    let region = campaign_region(&state, campaign_id, std::iter::once(body.phone_number.as_str())).await?;
    let phone_number = phones::parse(&state, &body.phone_number, region.as_deref()).map_err(|m| ApiError::field("phone_number", m))?;
    let call = state.writer.request(|reply| Command::InitiateCall { campaign_id, phone_number, reply }).await?;
    tracing::info!(call_id = %call.call_id, campaign_id, phone = %crate::core::phone::mask(&call.phone_number), "call accepted");
    let view = call_view(&call, None, &phones::callee_zone(&state, call.timezone.as_deref(), &call.phone_number, None));
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn bulk(State(state): State<AppState>, JsonBody(body): JsonBody<BulkBody>) -> Result<impl IntoResponse, ApiError> {
    state.accepting_new_work()?;
    let campaign_id = body.campaign_id.0;
    let source = match (body.phone_numbers, body.use_campaign_numbers) {
        (Some(_), Some(true)) => return Err(ApiError::field("use_campaign_numbers", "Give either phone_numbers or use_campaign_numbers, not both")),
        (Some(items), _) => {
            check_batch_size(&state, items.len())?;
            if items.is_empty() {
                return Err(ApiError::field("phone_numbers", "phone_numbers must not be empty"));
            }
            let raws = items.iter().filter_map(|v| v.as_str());
            let region = campaign_region(&state, campaign_id, raws).await?;
            BulkSource::Numbers(items.iter().map(|item| phones::parse_number_item(&state, item, region.as_deref()).map(|(e164, _)| e164)).collect())
        }
        (None, Some(true)) => BulkSource::CampaignNumbers,
        (None, _) => return Err(ApiError::field("phone_numbers", "phone_numbers is required unless use_campaign_numbers is true")),
    };
    let summary = state.writer.request(|reply| Command::BulkInitiate { campaign_id, source, reply }).await?;
    let accepted = summary.accepted.len() as u64;
    tracing::info!(campaign_id, accepted, failed = summary.failed_numbers.len(), "bulk calls accepted");
    Ok((
        StatusCode::CREATED,
        Json(api::BulkAccepted {
            success: true,
            campaign_id,
            total_requested: summary.total_requested,
            immediate_processed: summary.immediate_processed,
            queued_for_later: accepted - summary.immediate_processed,
            failed: summary.failed_numbers.len() as u64,
            call_ids: summary.accepted.iter().map(|c| c.to_string()).collect(),
            failed_numbers: summary.failed_numbers.into_iter().map(|(phone_number, reason)| api::FailedNumber { phone_number, reason }).collect(),
        }),
    ))
}

fn parse_callback(body: CallbackBody) -> Result<CallbackInput, ApiError> {
    // The status is validated before the call is looked up (400 before 404).
    let outcome = match &body.status {
        Value::String(s) => Outcome::parse(s.trim()),
        _ => None,
    }
    .ok_or_else(|| ApiError::field("status", "status must be one of PICKED, DISCONNECTED, RNR, FAILED"))?;
    let call_id = match &body.call_id {
        Value::String(s) => CallId::parse(s.trim()),
        _ => None,
    }
    .ok_or_else(|| ApiError::field("call_id", "call_id must be a call's UUID"))?;
    let duration_seconds = match body.call_duration {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if (0.0..=CALL_DURATION_MAX_SECONDS as f64).contains(&f) => Some(f.round() as u64),
            _ => return Err(ApiError::field("call_duration", format!("call_duration must be seconds from 0 to {CALL_DURATION_MAX_SECONDS}"))),
        },
        Some(_) => return Err(ApiError::field("call_duration", "call_duration must be a number of seconds")),
    };
    let external_call_id = match body.external_call_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 200 => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(ApiError::field("external_call_id", "external_call_id must be a string of at most 200 characters")),
    };
    let attempt = match body.attempt {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(a) if (1..=u32::MAX as u64).contains(&a) => Some(a as u32),
            _ => return Err(ApiError::field("attempt", "attempt must be a positive integer")),
        },
        Some(_) => return Err(ApiError::field("attempt", "attempt must be a positive integer")),
    };
    Ok(CallbackInput { call_id, outcome, attempt, external_call_id, duration_seconds })
}

/// The body every callback route answers with.
pub fn callback_answer(reply: &CallbackReply) -> api::CallbackProcessed {
    api::CallbackProcessed {
        message: "Callback processed".into(),
        call_id: reply.call_id.to_string(),
        status: reply.answer.result.status.as_str().to_string(),
        retry_scheduled: reply.answer.result.next_retry_at.is_some(),
        next_retry_at: reply.answer.result.next_retry_at.map(rfc3339),
    }
}

/// `PUT callback/`. With `provider.callback_secret` set, the raw body must carry a valid
/// `X-Callmgr-Signature` (compared in constant time), checked before anything is parsed: 403 otherwise.
pub async fn callback(State(state): State<AppState>, headers: HeaderMap, RawBody(raw): RawBody) -> Result<Json<api::CallbackProcessed>, ApiError> {
    if let Some(secret) = &state.config.provider.callback_secret {
        let signature = headers.get(webhook::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !webhook::verify_callback_signature(secret, &raw, signature) {
            return Err(ApiError::Forbidden(format!(
                "Missing or invalid {} (HMAC-SHA256 of the body with provider.callback_secret)",
                webhook::SIGNATURE_HEADER
            )));
        }
    }
    let body: CallbackBody = parse_json(&raw)?;
    let input = parse_callback(body)?;
    let reply = state.writer.request(|reply| Command::Callback { input, reply }).await?;
    Ok(Json(callback_answer(&reply)))
}

/// Calls as the API shows them, with their campaigns looked up once per page.
fn views(state: &AppState, r: &Reader, calls: &[Call]) -> Result<Vec<api::Call>, StoreError> {
    let mut campaigns: std::collections::HashMap<CampaignId, Option<Campaign>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let campaign = match campaigns.entry(call.campaign_id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(r.campaign(call.campaign_id)?),
        };
        let campaign = campaign.as_ref();
        let zone = phones::callee_zone(state, call.timezone.as_deref(), &call.phone_number, campaign);
        out.push(call_view(call, campaign, &zone));
    }
    Ok(out)
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>, params: Params) -> Result<Json<api::Call>, ApiError> {
    params.only(&[])?;
    let call_id = CallId::parse(&id).ok_or_else(|| ApiError::NotFound("Call not found".into()))?;
    let view_state = state.clone();
    let view = read(&state, move |r| {
        let call = r.call(call_id)?.ok_or_else(|| ApiError::NotFound("Call not found".into()))?;
        Ok(views(&view_state, r, std::slice::from_ref(&call))?.remove(0))
    })
    .await?;
    Ok(Json(view))
}

fn filter_from(params: &Params) -> Result<CallFilter, ApiError> {
    Ok(CallFilter {
        campaign_id: params.id("campaign_id")?,
        status: params
            .text("status")
            .map(|s| Status::parse(&s.to_ascii_uppercase()).ok_or_else(|| ApiError::field("status", format!("Unknown status `{s}`"))))
            .transpose()?,
        phone_number: params.text("phone_number").map(|p| phones::lookup("phone_number", p)).transpose()?,
        ..CallFilter::default()
    })
}

pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<api::Page<api::Call>>, ApiError> {
    params.only(&["campaign_id", "status", "phone_number", "limit", "cursor"])?;
    let filter = filter_from(&params)?;
    let limit = params.limit(&state)?;
    let after = params.text("cursor").map(|c| CallId::parse(c).ok_or_else(|| ApiError::field("cursor", "cursor is not one this API gave out"))).transpose()?;
    let scan_max = state.config.limits.list_scan_max;
    let view_state = state.clone();
    let page = read(&state, move |r| {
        let page = r.calls(&filter, after, limit, scan_max)?;
        Ok(api::Page { results: views(&view_state, r, &page.items)?, next_cursor: page.next.map(|c| c.to_string()) })
    })
    .await?;
    Ok(Json(page))
}

const EXPORT_COLUMNS: [&str; 14] = [
    "call_id",
    "campaign_id",
    "phone_number",
    "status",
    "last_outcome",
    "attempt_count",
    "max_attempts",
    "created_at",
    "updated_at",
    "last_attempt_at",
    "next_retry_at",
    "total_call_time",
    "external_call_id",
    "error_message",
];

/// With `?attempts=true`: the attempt's columns after the call's, one row per attempt.
const EXPORT_ATTEMPT_COLUMNS: [&str; 9] = [
    "attempt",
    "attempt_dialled_at",
    "attempt_provider_answered_at",
    "attempt_external_call_id",
    "attempt_provider_status",
    "attempt_outcome",
    "attempt_call_duration",
    "attempt_ended_at",
    "attempt_error",
];

/// A call's export columns.
fn export_record(c: &Call) -> [String; 14] {
    [
        c.call_id.to_string(),
        c.campaign_id.to_string(),
        c.phone_number.clone(),
        c.status().as_str().to_string(),
        c.last_outcome().map(|o| o.as_str()).unwrap_or("").to_string(),
        c.attempt_count.to_string(),
        c.max_attempts.to_string(),
        rfc3339(c.created_at),
        rfc3339(c.updated_at),
        c.last_attempt_at().map(rfc3339).unwrap_or_default(),
        c.next_retry_at().map(rfc3339).unwrap_or_default(),
        c.total_call_time.to_string(),
        c.external_call_id().unwrap_or_default().to_string(),
        c.error_message.clone().unwrap_or_default(),
    ]
}

/// An attempt's export columns (all empty for a call never dialled).
fn attempt_record(a: Option<&crate::core::model::Attempt>) -> [String; 9] {
    let Some(a) = a else { return Default::default() };
    [
        a.attempt.to_string(),
        rfc3339(a.dialled_at),
        a.provider_answered_at.map(rfc3339).unwrap_or_default(),
        a.external_call_id.clone().unwrap_or_default(),
        a.provider_status.clone().unwrap_or_default(),
        a.outcome.map(|o| o.as_str().to_string()).unwrap_or_default(),
        a.call_duration.map(|d| d.to_string()).unwrap_or_default(),
        a.ended_at.map(rfc3339).unwrap_or_default(),
        a.error.clone().unwrap_or_default(),
    ]
}

/// An RFC 3339 instant given as query parameter `name`, in ms since the epoch.
fn instant_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .text(name)
        .map(|text| {
            text.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|_| ApiError::field(name, format!("{name} `{text}` is not an RFC 3339 instant such as 2026-11-21T15:07:23Z")))
        })
        .transpose()
}

/// One piece of an export on its way to the connection.
enum ExportPiece {
    Rows(Vec<u8>),
    /// The last rows: the export is complete.
    Last(Vec<u8>),
    /// The store failed mid-export.
    Failed,
}

/// What became of a piece handed to the connection.
enum Delivery {
    Taken,
    ClientGone,
    /// The client took nothing for `limits.export_stall_timeout`.
    Stalled,
}

/// Streams every matching call as CSV: a thread of its own walks one snapshot and hands chunks
/// to the connection through a small bounded channel, so memory stays constant at any size.
/// At most `limits.exports_max` run at once (beyond: 503), on their own threads, so exports
/// never take the blocking pool that ordinary reads use; one whose client takes nothing for
/// `limits.export_stall_timeout` is abandoned, which frees its thread, snapshot and slot, and
/// its answer ends without the final chunk, so the client cannot take it for complete.
pub async fn export(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.only(&["campaign_id", "status", "phone_number", "since", "until", "attempts"])?;
    let mut filter = filter_from(&params)?;
    filter.updated_since = instant_param(&params, "since")?;
    filter.updated_until = instant_param(&params, "until")?;
    let with_attempts = match params.text("attempts") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::field("attempts", format!("attempts `{other}` must be true or false"))),
    };
    let limits = &state.config.limits;
    let slot = state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable(format!("{} exports are already running (limits.exports_max); retry later", limits.exports_max)))?;
    let stall_timeout = limits.export_stall_timeout;
    let reader = state.store.read()?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ExportPiece>(EXPORT_CHANNEL_CHUNKS);
    // The connection says "room again" after each piece it takes; the thread waits for that
    // with a deadline, which a tokio channel's blocking send cannot do.
    let (room_tx, room_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let deliver = move |mut piece: ExportPiece| -> Delivery {
        let deadline = std::time::Instant::now() + stall_timeout;
        loop {
            match tx.try_send(piece) {
                Ok(()) => return Delivery::Taken,
                Err(TrySendError::Closed(_)) => return Delivery::ClientGone,
                Err(TrySendError::Full(back)) => piece = back,
            }
            match room_rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => return Delivery::Stalled,
                Err(RecvTimeoutError::Disconnected) => return Delivery::ClientGone,
            }
        }
    };
    let producer = move || {
        let _slot = slot;
        let new_chunk = || csv::Writer::from_writer(Vec::with_capacity(EXPORT_CHUNK_ROWS * 160));
        let mut out = new_chunk();
        if with_attempts {
            let _ = out.write_record(EXPORT_COLUMNS.iter().chain(EXPORT_ATTEMPT_COLUMNS.iter()));
        } else {
            let _ = out.write_record(EXPORT_COLUMNS);
        }
        let mut rows = 0usize;
        let mut ended = None;
        let result = reader.scan_calls(&filter, None, &mut |_, matched, _| {
            let Some(c) = matched else { return true };
            let record = export_record(&c);
            if with_attempts {
                let attempts: Vec<Option<&crate::core::model::Attempt>> =
                    if c.attempts.is_empty() { vec![None] } else { c.attempts.iter().map(Some).collect() };
                for attempt in attempts {
                    let _ = out.write_record(record.iter().chain(attempt_record(attempt).iter()));
                }
            } else {
                let _ = out.write_record(&record);
            }
            rows += 1;
            if rows.is_multiple_of(EXPORT_CHUNK_ROWS) {
                let chunk = std::mem::replace(&mut out, new_chunk()).into_inner().unwrap_or_default();
                match deliver(ExportPiece::Rows(chunk)) {
                    Delivery::Taken => {}
                    other => {
                        ended = Some(other);
                        return false;
                    }
                }
            }
            true
        });
        match (ended, result) {
            (Some(Delivery::Stalled), _) => {
                tracing::warn!(rows, "export abandoned: its client took nothing for {}", fmt_duration(stall_timeout));
            }
            (Some(_), _) => {}
            (None, Ok(())) => {
                if let Delivery::Stalled = deliver(ExportPiece::Last(out.into_inner().unwrap_or_default())) {
                    tracing::warn!(rows, "export abandoned at its last chunk: its client took nothing for {}", fmt_duration(stall_timeout));
                }
            }
            (None, Err(error)) => {
                tracing::error!(%error, "export failed");
                let _ = deliver(ExportPiece::Failed);
            }
        }
    };
    std::thread::Builder::new().name("callmgr-export".into()).spawn(producer).map_err(|error| {
        tracing::error!(%error, "cannot start an export thread");
        ApiError::Unavailable("Cannot start an export now; retry later".into())
    })?;
    let stream = futures_util::stream::unfold(Some((rx, room_tx, false)), |state| async move {
        let (mut rx, room_tx, complete) = state?;
        let piece = rx.recv().await;
        let _ = room_tx.try_send(());
        match piece {
            Some(ExportPiece::Rows(bytes)) => Some((Ok(bytes), Some((rx, room_tx, false)))),
            Some(ExportPiece::Last(bytes)) => Some((Ok(bytes), Some((rx, room_tx, true)))),
            Some(ExportPiece::Failed) => Some((Err(std::io::Error::other("export failed")), None)),
            None if complete => None,
            None => Some((Err(std::io::Error::other("export abandoned")), None)),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(header::CONTENT_DISPOSITION, "attachment; filename=\"calls.csv\"")
        .body(Body::from_stream(stream))
        .expect("static headers are valid"))
}
