//! Campaign endpoints: create, list, get with stats, patch, pause/resume/stop/start, and the
//! campaign's number list (`phone-numbers/`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, Params, parse_id, read};
use super::phones;
use super::views::*;
use crate::core::model::{CampaignAction, CampaignId, Status};
use crate::protocol::api;
use crate::service::store::tables::CountKey;
use crate::service::writer::{CampaignPatch, Command, NewCampaign};

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

fn validate_region(region: &str) -> Result<String, ApiError> {
    crate::core::phone::Region::parse(region).map(|r| r.to_string()).map_err(|problem| ApiError::field("default_region", format!("default_region: {problem}")))
}

fn validate_caller_id(state: &AppState, caller_id: &str) -> Result<String, ApiError> {
    phones::parse(state, caller_id, None).map_err(|reason| ApiError::field("caller_id", format!("caller_id: {reason}")))
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
        default_region: body.default_region.as_deref().map(validate_region).transpose()?,
        caller_id: body.caller_id.as_deref().map(|c| validate_caller_id(&state, c)).transpose()?,
    };
    let campaign = state.writer.request(|reply| Command::CreateCampaign { input, reply }).await?;
    tracing::info!(campaign_id = campaign.id, name = %campaign.name, "campaign created");
    Ok((StatusCode::CREATED, Json(campaign_view(&campaign))))
}

pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<api::Page<api::Campaign>>, ApiError> {
    params.only(&["limit", "cursor"])?;
    let limit = params.limit(&state)?;
    let after = params.text("cursor").map(|c| parse_id("cursor", c)).transpose()?;
    let page = read(&state, move |r| Ok(r.campaigns(after, limit)?)).await?;
    Ok(Json(api::Page { results: page.items.iter().map(campaign_view).collect(), next_cursor: page.next.map(|n| n.to_string()) }))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>, params: Params) -> Result<Json<api::Campaign>, ApiError> {
    params.only(&[])?;
    let id = campaign_id_from_path(&id)?;
    let in_flight = state.gauges.campaign_in_flight(id);
    let (campaign, stats) = read(&state, move |r| {
        let campaign = r.campaign(id)?.ok_or_else(|| ApiError::NotFound("Campaign not found".into()))?;
        let counts = r.status_counts(id)?;
        let lifetime = r.lifetime_status_counts(id)?;
        let purged: u64 = r.purged_counts(id)?.iter().map(|(_, n)| n).sum();
        let count = |status: Status| counts.iter().find(|(s, _)| *s == status).map(|(_, n)| *n).unwrap_or(0);
        let held_hours = r.counted(id, CountKey::HeldOutsideCallingHours)?;
        let held_cap = r.counted(id, CountKey::HeldContactCap)?;
        let waiting = count(Status::Initiated).saturating_sub(held_hours + held_cap);
        let paused = campaign.status == crate::core::model::CampaignStatus::Paused;
        let stats = api::CampaignStats {
            calls_by_status: lifetime.iter().map(|(s, n)| (s.as_str().to_string(), *n)).collect(),
            total_calls: lifetime.iter().map(|(_, n)| n).sum(),
            phone_count: r.number_count(id)?,
            in_flight,
            held: api::Held { paused: if paused { waiting } else { 0 }, outside_calling_hours: held_hours, contact_cap: held_cap },
            queued: if paused { 0 } else { waiting },
            retrying: count(Status::Retrying),
            next_dial_at: r.next_hold_end(id)?.map(crate::core::model::rfc3339),
            cancelled_dnc: r.counted(id, CountKey::CancelledDoNotCall)? + r.counted(id, CountKey::PurgedCancelledDoNotCall)?,
            purged,
        };
        Ok((campaign, stats))
    })
    .await?;
    let mut view = campaign_view(&campaign);
    view.stats = Some(stats);
    Ok(Json(view))
}

pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PatchCampaignBody>,
) -> Result<Json<api::Campaign>, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let patch = CampaignPatch {
        name: body.name.as_deref().map(validate_name).transpose()?,
        description: body.description.as_deref().map(validate_description).transpose()?,
        is_active: body.is_active,
        timezone: body.timezone.map(|tz| tz.map(|t| validate_timezone("timezone", &t)).transpose()).transpose()?,
        max_attempts: body.max_attempts.map(|n| n.map(validate_max_attempts).transpose()).transpose()?,
        max_concurrent_calls: body.max_concurrent_calls.map(|n| n.map(validate_cap).transpose()).transpose()?,
        default_region: body.default_region.map(|r| r.as_deref().map(validate_region).transpose()).transpose()?,
        caller_id: body.caller_id.map(|c| c.as_deref().map(|c| validate_caller_id(&state, c)).transpose()).transpose()?,
    };
    let campaign = state.writer.request(|reply| Command::UpdateCampaign { id, patch, reply }).await?;
    Ok(Json(campaign_view(&campaign)))
}

async fn change(state: AppState, id: String, action: CampaignAction) -> Result<Json<api::Campaign>, ApiError> {
    let id = campaign_id_from_path(&id)?;
    let campaign = state.writer.request(|reply| Command::ChangeCampaign { id, action, reply }).await?;
    Ok(Json(campaign_view(&campaign)))
}

pub async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<api::Campaign>, ApiError> {
    change(state, id, CampaignAction::Pause).await
}

pub async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<api::Campaign>, ApiError> {
    change(state, id, CampaignAction::Resume).await
}

pub async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<api::Campaign>, ApiError> {
    change(state, id, CampaignAction::Stop).await
}

pub async fn start(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    state.accepting_new_work()?;
    let id = campaign_id_from_path(&id)?;
    let summary = state.writer.request(|reply| Command::StartCampaign { id, reply }).await?;
    let started = api::Started { campaign_id: id, queued: summary.queued, skipped_duplicates: summary.skipped_duplicates, skipped_dnc: summary.skipped_dnc };
    Ok((StatusCode::CREATED, Json(started)))
}

pub fn check_batch_size(state: &AppState, count: usize) -> Result<(), ApiError> {
    let max = state.config.limits.batch_max;
    if count > max {
        return Err(ApiError::PayloadTooLarge(format!("phone_numbers has {count} items; at most {max} (limits.batch_max) per request")));
    }
    Ok(())
}

/// The campaign's own default region, read only when some number needs one.
pub async fn campaign_region(state: &AppState, campaign_id: CampaignId, raws: impl Iterator<Item = &str>) -> Result<Option<String>, ApiError> {
    let mut raws = raws;
    if !raws.any(phones::needs_region) {
        return Ok(None);
    }
    read(state, move |r| Ok(r.campaign(campaign_id)?.and_then(|c| c.default_region))).await
}

fn raw_texts(items: &[serde_json::Value]) -> impl Iterator<Item = &str> {
    items.iter().filter_map(|item| match item {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(map) => map.get("phone_number").and_then(|v| v.as_str()),
        _ => None,
    })
}

pub async fn add_numbers(State(state): State<AppState>, JsonBody(body): JsonBody<PhoneNumbersBody>) -> Result<impl IntoResponse, ApiError> {
    state.accepting_new_work()?;
    check_batch_size(&state, body.phone_numbers.len())?;
    if body.phone_numbers.is_empty() {
        return Err(ApiError::field("phone_numbers", "phone_numbers must not be empty"));
    }
    let campaign_id = body.campaign_id.0;
    let region = campaign_region(&state, campaign_id, raw_texts(&body.phone_numbers)).await?;
    let mut valid = Vec::with_capacity(body.phone_numbers.len());
    let mut errors = Vec::new();
    for (index, item) in body.phone_numbers.iter().enumerate() {
        match phones::parse_number_item(&state, item, region.as_deref()) {
            Ok(number) => valid.push(number),
            Err((phone_number, reason)) => errors.push(api::RefusedNumber { index, phone_number, reason }),
        }
    }
    let added = state.writer.request(|reply| Command::AddNumbers { campaign_id, numbers: valid, reply }).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::NumbersAdded {
            campaign_id,
            created_count: added.created.len() as u64,
            duplicate_count: added.duplicate_count,
            created_numbers: added.created,
            errors,
        }),
    ))
}

pub async fn list_numbers(State(state): State<AppState>, Path(id): Path<String>, params: Params) -> Result<Json<api::Page<api::Number>>, ApiError> {
    params.only(&["limit", "cursor", "phone_number"])?;
    let id = campaign_id_from_path(&id)?;
    let limit = params.limit(&state)?;
    let after = params.text("cursor").map(str::to_string);
    let only = params.text("phone_number").map(|p| phones::lookup("phone_number", p)).transpose()?;
    let (campaign, page) = read(&state, move |r| {
        let campaign = r.campaign(id)?.ok_or_else(|| ApiError::NotFound("Campaign not found".into()))?;
        let page = match only {
            // One number: the page holds it, or nothing.
            Some(e164) => crate::service::store::Page { items: r.number(id, &e164)?.map(|entry| (e164, entry)).into_iter().collect(), next: None },
            None => r.numbers(id, after.as_deref(), limit)?,
        };
        Ok((campaign, page))
    })
    .await?;
    let results = page
        .items
        .into_iter()
        .map(|(e164, entry)| {
            let zone = phones::callee_zone(&state, entry.timezone.as_deref(), &e164, Some(&campaign));
            number_view(e164, &entry, &zone)
        })
        .collect();
    Ok(Json(api::Page { results, next_cursor: page.next }))
}
