//! Campaign endpoints: create, list, get with stats, patch, pause/resume/stop/start, and the
//! campaign's number list (`phone-numbers/`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, Params, parse_id, read};
use super::views::*;
use crate::core::model::CampaignId;
use crate::core::phone;
use crate::service::writer::{CampaignAction, CampaignPatch, Command, NewCampaign};

const NAME_MAX_CHARS: usize = 200;
const DESCRIPTION_MAX_CHARS: usize = 2000;
const MAX_ATTEMPTS_MAX: u32 = 50;

pub fn validate_timezone(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    jiff::tz::TimeZone::get(name)
        .map(|_| name.to_string())
        .map_err(|_| ApiError::field(field, format!("Unknown timezone `{name}`; use an IANA name such as America/New_York")))
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
        return Err(ApiError::field("name", format!("name must have 1 to {NAME_MAX_CHARS} characters")));
    }
    Ok(name.to_string())
}

fn validate_description(description: &str) -> Result<String, ApiError> {
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(ApiError::field("description", format!("description must have at most {DESCRIPTION_MAX_CHARS} characters")));
    }
    Ok(description.to_string())
}

fn validate_max_attempts(n: u32) -> Result<u32, ApiError> {
    if (1..=MAX_ATTEMPTS_MAX).contains(&n) { Ok(n) } else { Err(ApiError::field("max_attempts", format!("max_attempts must be from 1 to {MAX_ATTEMPTS_MAX}"))) }
}

fn validate_cap(n: u32) -> Result<u32, ApiError> {
    if n >= 1 { Ok(n) } else { Err(ApiError::field("max_concurrent_calls", "max_concurrent_calls must be at least 1")) }
}

pub fn campaign_id_from_path(text: &str) -> Result<CampaignId, ApiError> {
    parse_id("id", text).map_err(|_| ApiError::NotFound("Campaign not found".into()))
}

pub async fn create(State(state): State<AppState>, JsonBody(body): JsonBody<CreateCampaignBody>) -> Result<impl IntoResponse, ApiError> {
    let input = NewCampaign {
        name: validate_name(&body.name)?,
        description: validate_description(body.description.as_deref().unwrap_or(""))?,
        is_active: body.is_active.unwrap_or(true),
        timezone: body.timezone.as_deref().map(|tz| validate_timezone("timezone", tz)).transpose()?,
        max_attempts: body.max_attempts.map(validate_max_attempts).transpose()?,
        max_concurrent_calls: body.max_concurrent_calls.map(validate_cap).transpose()?,
    };
    let campaign = state.writer.request(|reply| Command::CreateCampaign { input, reply }).await?;
    tracing::info!(campaign_id = campaign.id, name = %campaign.name, "campaign created");
    Ok((StatusCode::CREATED, Json(CampaignView::from(&campaign))))
}

pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<PageView<CampaignView>>, ApiError> {
    let limit = params.limit(&state)?;
    let after = params.text("cursor").map(|c| parse_id("cursor", c)).transpose()?;
    let page = read(&state, move |r| Ok(r.campaigns(after, limit)?)).await?;
    Ok(Json(PageView { results: page.items.iter().map(CampaignView::from).collect(), next_cursor: page.next.map(|n| n.to_string()) }))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let (campaign, counts, phone_count) = read(&state, move |r| {
        let campaign = r.campaign(id)?.ok_or_else(|| ApiError::NotFound("Campaign not found".into()))?;
        Ok((campaign, r.status_counts(id)?, r.number_count(id)?))
    })
    .await?;
    let mut view = CampaignView::from(&campaign);
    view.stats = Some(campaign_stats(&counts, phone_count, state.gauges.campaign_in_flight(id)));
    Ok(Json(view))
}

pub async fn patch(State(state): State<AppState>, Path(id): Path<String>, JsonBody(body): JsonBody<PatchCampaignBody>) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let patch = CampaignPatch {
        name: body.name.as_deref().map(validate_name).transpose()?,
        description: body.description.as_deref().map(validate_description).transpose()?,
        is_active: body.is_active,
        timezone: body.timezone.map(|tz| tz.map(|t| validate_timezone("timezone", &t)).transpose()).transpose()?,
        max_attempts: body.max_attempts.map(|n| n.map(validate_max_attempts).transpose()).transpose()?,
        max_concurrent_calls: body.max_concurrent_calls.map(|n| n.map(validate_cap).transpose()).transpose()?,
    };
    let campaign = state.writer.request(|reply| Command::UpdateCampaign { id, patch, reply }).await?;
    Ok(Json(CampaignView::from(&campaign)))
}

async fn change(state: AppState, id: String, action: CampaignAction) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let campaign = state.writer.request(|reply| Command::ChangeCampaign { id, action, reply }).await?;
    Ok(Json(CampaignView::from(&campaign)))
}

pub async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CampaignView>, ApiError> {
    change(state, id, CampaignAction::Pause).await
}

pub async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CampaignView>, ApiError> {
    change(state, id, CampaignAction::Resume).await
}

pub async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CampaignView>, ApiError> {
    change(state, id, CampaignAction::Stop).await
}

pub async fn start(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let summary = state.writer.request(|reply| Command::StartCampaign { id, reply }).await?;
    Ok((StatusCode::CREATED, Json(json!({"campaign_id": id, "queued": summary.queued, "skipped_duplicates": summary.skipped_duplicates}))))
}

/// One item of a number list: `"+1…"` or `{"phone_number": "+1…", "timezone": "…"}`.
/// `Err` carries the text to report and the reason.
pub fn parse_number_item(item: &Value) -> Result<(String, Option<String>), (String, String)> {
    let (raw, timezone) = match item {
        Value::String(s) => (s.as_str(), None),
        Value::Object(map) => match map.get("phone_number") {
            Some(Value::String(s)) => (s.as_str(), map.get("timezone")),
            _ => return Err((item.to_string(), "phone_number must be a string".into())),
        },
        other => return Err((other.to_string(), "must be a phone number string or an object with phone_number".into())),
    };
    let e164 = phone::normalize(raw).map_err(|reason| (raw.to_string(), reason.to_string()))?;
    let timezone = match timezone {
        None | Some(Value::Null) => None,
        Some(Value::String(tz)) => Some(validate_timezone("timezone", tz).map_err(|_| (raw.to_string(), format!("Unknown timezone `{tz}`")))?),
        Some(_) => return Err((raw.to_string(), "timezone must be a string".into())),
    };
    Ok((e164, timezone))
}

pub fn check_batch_size(state: &AppState, count: usize) -> Result<(), ApiError> {
    let max = state.config.limits.batch_max;
    if count > max {
        return Err(ApiError::PayloadTooLarge(format!("phone_numbers has {count} items; at most {max} (limits.batch_max) per request")));
    }
    Ok(())
}

pub async fn add_numbers(State(state): State<AppState>, JsonBody(body): JsonBody<PhoneNumbersBody>) -> Result<impl IntoResponse, ApiError> {
    check_batch_size(&state, body.phone_numbers.len())?;
    if body.phone_numbers.is_empty() {
        return Err(ApiError::field("phone_numbers", "phone_numbers must not be empty"));
    }
    let campaign_id = body.campaign_id.0;
    let mut valid = Vec::with_capacity(body.phone_numbers.len());
    let mut errors = Vec::new();
    for (index, item) in body.phone_numbers.iter().enumerate() {
        match parse_number_item(item) {
            Ok(number) => valid.push(number),
            Err((phone_number, reason)) => errors.push(json!({"index": index, "phone_number": phone_number, "reason": reason})),
        }
    }
    let added = state.writer.request(|reply| Command::AddNumbers { campaign_id, numbers: valid, reply }).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "campaign_id": campaign_id,
            "created_count": added.created.len(),
            "duplicate_count": added.duplicate_count,
            "created_numbers": added.created,
            "errors": errors,
        })),
    ))
}

pub async fn list_numbers(State(state): State<AppState>, Path(id): Path<String>, params: Params) -> Result<Json<PageView<NumberView>>, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let limit = params.limit(&state)?;
    let after = params.text("cursor").map(str::to_string);
    let only = params.text("phone_number").map(|p| phone::normalize(p).map_err(|m| ApiError::field("phone_number", m))).transpose()?;
    let page = read(&state, move |r| {
        r.campaign(id)?.ok_or_else(|| ApiError::NotFound("Campaign not found".into()))?;
        match only {
            // One number: the page holds it, or nothing.
            Some(e164) => Ok(crate::service::store::Page { items: r.number(id, &e164)?.map(|entry| (e164, entry)).into_iter().collect(), next: None }),
            None => Ok(r.numbers(id, after.as_deref(), limit)?),
        }
    })
    .await?;
    Ok(Json(PageView { results: page.items.into_iter().map(|(n, e)| NumberView::new(n, &e)).collect(), next_cursor: page.next }))
}
