//! The do-not-call list endpoints: add numbers (globally or for one campaign), list them, and
//! remove one. Listing a number cancels its waiting calls (the writer does it in chunks).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::AppState;
use super::campaigns::{campaign_region, check_batch_size};
use super::error::ApiError;
use super::extract::{JsonBody, Params, read};
use super::phones;
use super::views::*;
use crate::protocol::api;
use crate::service::writer::{Command, DncScope};

/// The longest `reason` kept with an entry.
const REASON_MAX_CHARS: usize = 500;

fn scope_of(campaign_id: Option<u64>) -> DncScope {
    campaign_id.map_or(DncScope::Global, DncScope::Campaign)
}

pub async fn add(State(state): State<AppState>, JsonBody(body): JsonBody<DncBody>) -> Result<impl IntoResponse, ApiError> {
    check_batch_size(&state, body.phone_numbers.len())?;
    if body.phone_numbers.is_empty() {
        return Err(ApiError::field("phone_numbers", "phone_numbers must not be empty"));
    }
    let reason = body.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > REASON_MAX_CHARS) {
        return Err(ApiError::field("reason", format!("reason must have at most {REASON_MAX_CHARS} characters")));
    }
    let campaign_id = body.campaign_id.map(|id| id.0);
    let region = match campaign_id {
        Some(id) => campaign_region(&state, id, body.phone_numbers.iter().filter_map(|v| v.as_str())).await?,
        None => None,
    };
    let mut numbers = Vec::with_capacity(body.phone_numbers.len());
    let mut errors = Vec::new();
    for (index, item) in body.phone_numbers.iter().enumerate() {
        let parsed = match item.as_str() {
            Some(raw) => phones::parse(&state, raw, region.as_deref()).map_err(|reason| (raw.to_string(), reason)),
            None => Err((item.to_string(), "must be a phone number string".to_string())),
        };
        match parsed {
            Ok(e164) => numbers.push(e164),
            Err((phone_number, reason)) => errors.push(api::RefusedNumber { index, phone_number, reason }),
        }
    }
    if numbers.is_empty() {
        // Nothing listable: refuse the request as a whole, naming the first item.
        let first = &errors[0];
        return Err(ApiError::field(format!("phone_numbers[{}]", first.index), format!("`{}`: {}", first.phone_number, first.reason)));
    }
    let scope = scope_of(campaign_id);
    let added = state.writer.request(|reply| Command::AddDnc { scope, numbers, reason, reply }).await?;
    Ok((StatusCode::CREATED, Json(api::DncAdded { added_count: added.added_count, already_count: added.already_count, errors })))
}

/// Cursors are `scope:E164`, as handed out.
fn parse_cursor(text: &str) -> Result<(u64, String), ApiError> {
    let bad = || ApiError::field("cursor", "cursor is not one this API gave out");
    let (scope, e164) = text.split_once(':').ok_or_else(bad)?;
    Ok((scope.parse().map_err(|_| bad())?, e164.to_string()))
}

pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<api::Page<api::DncEntry>>, ApiError> {
    params.only(&["phone_number", "campaign_id", "limit", "cursor"])?;
    let limit = params.limit(&state)?;
    let phone_number = params.text("phone_number").map(|p| phones::lookup("phone_number", p)).transpose()?;
    let scope = params.id("campaign_id")?;
    let after = params.text("cursor").map(parse_cursor).transpose()?;
    let page = read(&state, move |r| Ok(r.dnc_entries(scope, phone_number.as_deref(), after, limit)?)).await?;
    Ok(Json(api::Page {
        results: page.items.into_iter().map(|(scope, e164, entry)| dnc_view(scope, e164, &entry)).collect(),
        next_cursor: page.next.map(|(scope, e164)| format!("{scope}:{e164}")),
    }))
}

pub async fn remove(State(state): State<AppState>, Path(number): Path<String>, params: Params) -> Result<StatusCode, ApiError> {
    params.only(&["campaign_id"])?;
    let phone_number = phones::lookup("phone_number", &number)?;
    let scope = scope_of(params.id("campaign_id")?);
    state.writer.request(|reply| Command::RemoveDnc { scope, phone_number, reply }).await?;
    Ok(StatusCode::NO_CONTENT)
}
