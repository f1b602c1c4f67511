//! Operational endpoints: the JSON metrics (and the store snapshot `/metrics` shares with them),
//! dead letters, health and readiness.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::extract::{Params, parse_id, read};
use super::views::*;
use crate::core::counters::{Counter, day_of};
use crate::core::model::{Status, rfc3339};
use crate::protocol::api;
use crate::service::stats::SecondCounts;
use crate::service::store::tables::CountKey;
use crate::service::writer::Command;

/// Days of `recent_metrics`.
const RECENT_DAYS: u32 = 7;
/// Seconds of per-second series in `metrics/` (the dashboard's sparklines).
const SERIES_SECONDS: usize = 120;
/// A scheduler heartbeat older than this marks the system degraded.
const SCHEDULER_STALL_MS: i64 = 5_000;

pub(super) struct Snapshot {
    /// Stored calls per status.
    pub by_status: Vec<(Status, u64)>,
    /// Purged calls per final status.
    pub purged: Vec<(Status, u64)>,
    archive_seq: u64,
    pub held_hours: u64,
    pub held_cap: u64,
    cancelled_dnc: u64,
    days: Vec<(u32, Vec<(Counter, u64)>)>,
    pub dead_letters: u64,
}

pub(super) async fn snapshot(state: &AppState) -> Result<Snapshot, ApiError> {
    let today = day_of(state.clock.now_ms());
    read(state, move |r| {
        let days = (0..RECENT_DAYS).filter_map(|back| today.checked_sub(back)).map(|day| r.daily(day).map(|c| (day, c))).collect::<Result<_, _>>()?;
        Ok(Snapshot {
            by_status: r.status_counts(0)?,
            purged: r.purged_counts(0)?,
            archive_seq: r.archive_seq()?,
            held_hours: r.counted(0, CountKey::HeldOutsideCallingHours)?,
            held_cap: r.counted(0, CountKey::HeldContactCap)?,
            cancelled_dnc: r.counted(0, CountKey::CancelledDoNotCall)? + r.counted(0, CountKey::PurgedCancelledDoNotCall)?,
            days,
            dead_letters: r.dead_letter_count()?,
        })
    })
    .await
}

impl Snapshot {
    fn purged_total(&self) -> u64 {
        self.purged.iter().map(|(_, n)| n).sum()
    }

    /// Calls per status over the store's life: stored plus purged.
    fn lifetime_by_status(&self) -> Vec<(Status, u64)> {
        self.by_status.iter().map(|(s, n)| (*s, n + self.purged.iter().find(|(p, _)| p == s).map(|(_, p)| *p).unwrap_or(0))).collect()
    }
}

/// A retention period as operators write it: `180d` rather than `5months 28days 6h`.
fn retention_text(period: std::time::Duration) -> String {
    const DAY_SECONDS: u64 = 86_400;
    if period.subsec_nanos() == 0 && period.as_secs().is_multiple_of(DAY_SECONDS) {
        format!("{}d", period.as_secs() / DAY_SECONDS)
    } else {
        crate::config::fmt_duration(period)
    }
}

pub(super) fn retention_metrics(state: &AppState, snap: &Snapshot) -> Option<api::RetentionMetrics> {
    let status = &state.retention;
    if !status.enabled.load(Ordering::Relaxed) {
        return None;
    }
    let runs = status.runs();
    let config = &state.config.retention;
    Some(api::RetentionMetrics {
        final_calls: config.final_calls.map(retention_text).unwrap_or_default(),
        archive_dir: config.archive_dir.as_ref().map(|d| d.display().to_string()),
        purged_total: snap.purged_total(),
        running: status.running.load(Ordering::Relaxed),
        last_run_at: runs.last_run_at.map(rfc3339),
        last_run_purged: runs.last_run_purged,
        last_check_at: runs.last_check_at.map(rfc3339),
        archive_files: snap.archive_seq.saturating_sub(1),
        last_error: runs.last_error,
    })
}

/// Whether the provider's throttling still holds the dial pace below `max_calls_per_second`.
pub(super) fn pace_lowered(state: &AppState) -> bool {
    state.provider_health.pace_per_second() + 0.001 < state.config.max_calls_per_second
}

/// Why the system is degraded, in words; empty when it is not.
pub(super) fn degraded_reasons(state: &AppState, now: i64) -> Vec<String> {
    let g = &state.gauges;
    let health = &state.provider_health;
    let mut reasons = Vec::new();
    if !g.scheduler_alive(now, SCHEDULER_STALL_MS) {
        reasons.push("the scheduler has not looped for over 5 s".to_string());
    }
    if state.writer.queued() * 10 >= state.config.limits.writer_inbox_max * 9 {
        reasons.push("the writer's inbox is over 90% full".to_string());
    }
    let breaker = health.breaker();
    match breaker.state {
        "open" => reasons.push(format!(
            "provider unreachable: circuit breaker open after {} consecutive transport failures; no new dial until the probe at {}",
            breaker.consecutive_failures,
            breaker.probe_at.map(rfc3339).unwrap_or_default()
        )),
        "half_open" => reasons.push("provider unreachable: circuit breaker half-open, one probe dial decides".to_string()),
        _ => {}
    }
    if let Some(reason) = state.disk.refusal() {
        reasons.push(reason);
    }
    let paused_until = health.paused_until_ms();
    if paused_until > now {
        reasons.push(format!("provider throttling: no new dial until {} (its Retry-After)", rfc3339(paused_until)));
    } else if pace_lowered(state) {
        reasons.push(format!(
            "provider throttling: dial pace lowered to {:.1}/s (max_calls_per_second {}), recovering",
            health.pace_per_second(),
            state.config.max_calls_per_second
        ));
    }
    reasons
}

fn system_status(state: &AppState, reasons: &[String]) -> &'static str {
    let g = &state.gauges;
    if !reasons.is_empty() {
        "degraded"
    } else if g.in_flight.load(Ordering::Relaxed) >= g.max_concurrent_calls.load(Ordering::Relaxed) {
        "at_capacity"
    } else {
        "healthy"
    }
}

fn per_second(series: &[SecondCounts], pick: fn(&SecondCounts) -> u64) -> f64 {
    let last_minute = &series[series.len().saturating_sub(60)..];
    last_minute.iter().map(pick).sum::<u64>() as f64 / last_minute.len().max(1) as f64
}

pub async fn metrics(State(state): State<AppState>) -> Result<Json<api::Metrics>, ApiError> {
    let snap = snapshot(&state).await?;
    let now = state.clock.now_ms();
    let g = &state.gauges;
    let stats = &state.stats;
    let recent = snap
        .days
        .iter()
        .map(|(day, counters)| {
            let get = |c: Counter| counters.iter().find(|(k, _)| *k == c).map(|(_, v)| *v).unwrap_or(0);
            let picked = get(Counter::Picked);
            let duration = get(Counter::CallDurationSeconds);
            let date = jiff::Timestamp::from_second(*day as i64 * 86_400).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default();
            api::DayMetrics {
                date,
                total_calls_initiated: get(Counter::Initiated),
                total_calls_dialled: get(Counter::Dialled),
                total_calls_picked: picked,
                total_calls_disconnected: get(Counter::Disconnected),
                total_calls_rnr: get(Counter::Rnr),
                total_calls_failed: get(Counter::Failed),
                total_retries: get(Counter::Retries),
                peak_concurrent_calls: get(Counter::PeakConcurrent),
                total_call_duration: duration,
                avg_call_duration: if picked == 0 { 0.0 } else { ((duration as f64 / picked as f64) * 10.0).round() / 10.0 },
                dlq_entries_created: get(Counter::DeadLetters),
            }
        })
        .collect();
    let series = stats.series(now, SERIES_SECONDS);
    let latency = stats.recent_latency_percentiles();
    let held_paused = g.held_paused.load(Ordering::Relaxed);
    let reasons = degraded_reasons(&state, now);
    let health = &state.provider_health;
    let breaker = health.breaker();
    Ok(Json(api::Metrics {
        current_concurrent_calls: g.in_flight.load(Ordering::Relaxed),
        max_concurrent_calls: g.max_concurrent_calls.load(Ordering::Relaxed),
        system_status: system_status(&state, &reasons).to_string(),
        queue_depth: g.queue_depth.load(Ordering::Relaxed),
        held_by_paused_campaigns: held_paused,
        held: api::Held { paused: held_paused, outside_calling_hours: snap.held_hours, contact_cap: snap.held_cap },
        cancelled_dnc: snap.cancelled_dnc,
        retrying: g.retrying.load(Ordering::Relaxed),
        calls_by_status: snap.lifetime_by_status().iter().map(|(s, n)| (s.as_str().to_string(), *n)).collect(),
        purged: snap.purged_total(),
        retention: retention_metrics(&state, &snap),
        recent_metrics: recent,
        rates: api::Rates {
            window_seconds: 60,
            accepted_per_second: per_second(&series, |s| s.accepted),
            dials_per_second: per_second(&series, |s| s.dials),
            outcomes_per_second: per_second(&series, |s| s.outcomes),
            completions_per_second: per_second(&series, |s| s.finals),
            cancellations_per_second: per_second(&series, |s| s.cancelled),
        },
        series: api::Series {
            seconds: SERIES_SECONDS as u64,
            dials: series.iter().map(|s| s.dials).collect(),
            completions: series.iter().map(|s| s.finals).collect(),
            cancellations: series.iter().map(|s| s.cancelled).collect(),
        },
        provider: api::ProviderMetrics {
            latency_ms_p50: latency.map(|l| l.0),
            latency_ms_p99: latency.map(|l| l.1),
            transport_errors: stats.provider_transport_errors.load(Ordering::Relaxed),
            refusals: stats.provider_refusals.load(Ordering::Relaxed),
            recent_errors: stats.recent_errors().iter().map(|e| api::ProviderError { at: rfc3339(e.at), message: e.message.clone() }).collect(),
            breaker: breaker.state.to_string(),
            consecutive_failures: breaker.consecutive_failures,
            breaker_probe_at: breaker.probe_at.map(rfc3339),
            throttled: health.throttled.load(Ordering::Relaxed),
            ambiguous: health.ambiguous.load(Ordering::Relaxed),
            not_sent: health.not_sent.load(Ordering::Relaxed),
            dial_pace_milli_per_second: (health.pace_per_second() * 1000.0).round() as u64,
        },
        dead_letters: snap.dead_letters,
        writer_queue: state.writer.queued() as u64,
        uptime_seconds: ((now - stats.started_at).max(0) / 1000) as u64,
        awaiting_outcome: api::AwaitingOutcome {
            count: g.awaiting_outcome.load(Ordering::Relaxed),
            oldest_seconds: g.awaiting_oldest_seconds(now),
            recovered: g.recovered_in_flight.load(Ordering::Relaxed),
        },
        degraded_reasons: reasons,
        disk: api::DiskMetrics { free_mb: state.disk.free_mb(), min_free_mb: state.disk.min_free_mb(), low: state.disk.is_low() },
    }))
}

pub async fn dead_letters(State(state): State<AppState>, params: Params) -> Result<Json<api::Page<api::DeadLetter>>, ApiError> {
    params.only(&["limit", "cursor"])?;
    let limit = params.limit(&state)?;
    let after = params.text("cursor").map(|c| parse_id("cursor", c)).transpose()?;
    let page = read(&state, move |r| Ok(r.dead_letters(after, limit)?)).await?;
    Ok(Json(api::Page { results: page.items.iter().map(dead_letter_view).collect(), next_cursor: page.next.map(|n| n.to_string()) }))
}

pub async fn replay(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<api::Call>, ApiError> {
    let id = parse_id("id", &id).map_err(|_| ApiError::NotFound("Dead letter not found".into()))?;
    let call = state.writer.request(|reply| Command::ReplayDeadLetter { id, reply }).await?;
    let zone = super::phones::callee_zone(&state, call.timezone.as_deref(), &call.phone_number, None);
    Ok(Json(call_view(&call, None, &zone)))
}

/// Dead letters replayed by one `POST dlq/replay/` at most (each is a commit's worth of work);
/// `remaining` says how many more match.
const REPLAY_PER_REQUEST_MAX: usize = 1000;
/// Dead letters read per page while choosing what to replay.
const REPLAY_SCAN_PAGE: usize = 1000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayManyBody {
    #[serde(default)]
    campaign_id: Option<Id>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

/// `POST dlq/replay/ {campaign_id?, since?, until?}`: replays the matching dead letters (by
/// `created_at`, `since` inclusive, `until` exclusive), oldest first, at most
/// `REPLAY_PER_REQUEST_MAX` per request. Idempotent: letters already replayed are skipped, and so
/// are those whose call can no longer be replayed.
pub async fn replay_many(
    State(state): State<AppState>,
    super::extract::JsonBody(body): super::extract::JsonBody<ReplayManyBody>,
) -> Result<Json<api::DeadLettersReplayed>, ApiError> {
    let instant = |field: &str, text: &Option<String>| -> Result<Option<i64>, ApiError> {
        text.as_deref()
            .map(|t| {
                t.trim()
                    .parse::<jiff::Timestamp>()
                    .map(|ts| ts.as_millisecond())
                    .map_err(|_| ApiError::field(field, format!("{field} must be an RFC 3339 instant")))
            })
            .transpose()
    };
    let since = instant("since", &body.since)?;
    let until = instant("until", &body.until)?;
    let campaign_id = body.campaign_id.map(|c| c.0);
    // Choose from a snapshot, off the writer; the writer checks each one again as it replays.
    let (ids, mut skipped, remaining) = read(&state, move |r| {
        let mut ids = Vec::new();
        let (mut skipped, mut remaining) = (0u64, 0u64);
        let mut after = None;
        loop {
            let page = r.dead_letters(after, REPLAY_SCAN_PAGE)?;
            for letter in &page.items {
                let matches = campaign_id.is_none_or(|c| letter.campaign_id == c)
                    && since.is_none_or(|s| letter.created_at >= s)
                    && until.is_none_or(|u| letter.created_at < u);
                if !matches {
                    continue;
                }
                let replayable = letter.replayed_at.is_none()
                    && r.call(letter.call_id)?.is_some_and(|c| c.status() == Status::Failed)
                    && r.campaign(letter.campaign_id)?.is_some_and(|c| c.status != crate::core::model::CampaignStatus::Stopped);
                if !replayable {
                    skipped += 1;
                } else if ids.len() < REPLAY_PER_REQUEST_MAX {
                    ids.push(letter.id);
                } else {
                    remaining += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok((ids, skipped, remaining))
    })
    .await?;
    let summary = if ids.is_empty() { Default::default() } else { state.writer.request(|reply| Command::ReplayDeadLetters { ids, reply }).await? };
    skipped += summary.skipped;
    tracing::info!(replayed = summary.replayed, skipped, remaining, "dead letters replayed");
    Ok(Json(api::DeadLettersReplayed { replayed_count: summary.replayed, skipped_count: skipped, remaining }))
}

pub async fn healthz() -> Json<api::Probe> {
    Json(api::Probe { status: "ok".into() })
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let now = state.clock.now_ms();
    let ready = state.gauges.ready.load(Ordering::Acquire);
    let scheduler = state.gauges.scheduler_alive(now, SCHEDULER_STALL_MS);
    let disk = state.disk.refusal();
    if ready && scheduler && disk.is_none() {
        (StatusCode::OK, Json(api::Probe { status: "ready".into() })).into_response()
    } else {
        let reason = if !ready {
            "recovering".to_string()
        } else if !scheduler {
            "scheduler stalled".to_string()
        } else {
            disk.unwrap_or_default()
        };
        ApiError::Unavailable(format!("Not ready: {reason}")).into_response()
    }
}
