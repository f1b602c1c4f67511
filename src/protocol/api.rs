//! The JSON the HTTP API answers with, as owned, (de)serializable types: the service builds
//! them from its records, the tools (dashboard, importer, retry-plan, bench) read them. Field
//! names are the reference system's, plus what this system adds. Timestamps are RFC 3339 UTC
//! text with millisecond precision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{results, next_cursor}`: every list endpoint's page.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Page<T> {
    pub results: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One dialled attempt of a call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: u32,
    pub dialled_at: String,
    pub provider_answered_at: Option<String>,
    pub external_call_id: Option<String>,
    /// The provider's last progress report before the outcome (e.g. `ringing`).
    pub provider_status: Option<String>,
    pub outcome: Option<String>,
    pub call_duration: Option<u64>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Call {
    pub call_id: String,
    pub campaign_id: u64,
    pub phone_number: String,
    pub status: String,
    pub last_outcome: Option<String>,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    pub last_attempt_at: Option<String>,
    pub next_retry_at: Option<String>,
    pub total_call_time: u64,
    pub external_call_id: Option<String>,
    pub error_message: Option<String>,
    /// The callee's timezone(s) used for calling hours and retry windows (`A|B` when ambiguous).
    #[serde(default)]
    pub timezone: String,
    /// `given`, `inferred`, `ambiguous`, `campaign` or `default`.
    #[serde(default)]
    pub timezone_source: String,
    /// Why a queued call is not dialled: `paused`, `outside_calling_hours` or `contact_cap`.
    pub held_reason: Option<String>,
    /// When a held call becomes dialable again (absent for a paused campaign: at its resume).
    pub next_dial_at: Option<String>,
    /// Every dialled attempt, oldest first.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// Queued calls that are not dialled, by reason.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Held {
    pub paused: u64,
    pub outside_calling_hours: u64,
    pub contact_cap: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CampaignStats {
    pub calls_by_status: BTreeMap<String, u64>,
    pub total_calls: u64,
    pub phone_count: u64,
    /// Calls holding a slot right now.
    pub in_flight: u32,
    // The fields from here on default when absent, so the tools still read an older service.
    #[serde(default)]
    pub held: Held,
    /// Queued calls waiting only for a slot or the dial pace.
    #[serde(default)]
    pub queued: u64,
    #[serde(default)]
    pub retrying: u64,
    /// The earliest instant a held call becomes dialable.
    #[serde(default)]
    pub next_dial_at: Option<String>,
    /// Calls cancelled because their number is on the do-not-call list.
    #[serde(default)]
    pub cancelled_dnc: u64,
    /// Calls deleted by retention. `calls_by_status` and `total_calls` count them too (they are
    /// lifetime counts); the stored calls are the difference.
    #[serde(default)]
    pub purged: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Campaign {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    /// `active`, `paused` or `stopped`.
    pub status: String,
    pub timezone: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
    pub default_region: Option<String>,
    pub caller_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<CampaignStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Number {
    pub phone_number: String,
    pub timezone: String,
    pub timezone_source: String,
    pub added_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: u64,
    pub call_id: String,
    pub campaign_id: u64,
    pub phone_number: String,
    pub attempt: u32,
    pub error: String,
    pub created_at: String,
    pub replayed_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DncEntry {
    pub phone_number: String,
    /// Absent for a global entry.
    pub campaign_id: Option<u64>,
    pub reason: Option<String>,
    pub added_at: String,
}

/// A number a request refused, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefusedNumber {
    pub index: usize,
    pub phone_number: String,
    pub reason: String,
}

/// `POST phone-numbers/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NumbersAdded {
    pub campaign_id: u64,
    pub created_count: u64,
    pub duplicate_count: u64,
    pub created_numbers: Vec<String>,
    pub errors: Vec<RefusedNumber>,
}

/// `POST dnc/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DncAdded {
    pub added_count: u64,
    pub already_count: u64,
    pub errors: Vec<RefusedNumber>,
}

/// `POST campaigns/{id}/start/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Started {
    pub campaign_id: u64,
    pub queued: u64,
    pub skipped_duplicates: u64,
    pub skipped_dnc: u64,
}

/// `PUT callback/` and the provider status routes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallbackProcessed {
    pub message: String,
    pub call_id: String,
    pub status: String,
    pub retry_scheduled: bool,
    pub next_retry_at: Option<String>,
}

/// The answer to a non-final Twilio status (`ringing`, …): noted in the attempt's history only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderProgress {
    /// `Progress recorded`.
    pub message: String,
    pub call_id: String,
    /// Twilio's `CallStatus` as sent.
    pub provider_status: String,
}

/// `GET /healthz` (`ok`) and `GET /readyz` (`ready`; not ready is a 503 error).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    pub status: String,
}

/// A number refused by `bulk-initiate-calls/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedNumber {
    pub phone_number: String,
    pub reason: String,
}

/// `POST bulk-initiate-calls/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BulkAccepted {
    pub success: bool,
    pub campaign_id: u64,
    pub total_requested: u64,
    pub immediate_processed: u64,
    pub queued_for_later: u64,
    pub failed: u64,
    pub call_ids: Vec<String>,
    pub failed_numbers: Vec<FailedNumber>,
}

/// `GET metrics/`: the reference system's fields (`current_concurrent_calls`,
/// `max_concurrent_calls`, `system_status`, `recent_metrics`, …) plus what the dashboard shows.
/// Every field past the first three defaults when absent, so the dashboard reads older services.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub current_concurrent_calls: u64,
    pub max_concurrent_calls: u64,
    /// `healthy`, `at_capacity` or `degraded`.
    pub system_status: String,
    /// `INITIATED` calls waiting for a slot.
    #[serde(default)]
    pub queue_depth: u64,
    /// Older name of `held.paused`, kept for the clients that read it.
    #[serde(default)]
    pub held_by_paused_campaigns: u64,
    /// Queued calls that are not dialled, by reason.
    #[serde(default)]
    pub held: Held,
    /// Calls cancelled because their number is on the do-not-call list.
    #[serde(default)]
    pub cancelled_dnc: u64,
    #[serde(default)]
    pub retrying: u64,
    /// Calls per status over the store's life: stored calls plus those retention purged.
    #[serde(default)]
    pub calls_by_status: BTreeMap<String, u64>,
    /// Calls deleted by retention (included in `calls_by_status`).
    #[serde(default)]
    pub purged: u64,
    /// Retention's progress; absent when `retention.final_calls` is not configured.
    #[serde(default)]
    pub retention: Option<RetentionMetrics>,
    /// The last 7 days, newest (today) first.
    #[serde(default)]
    pub recent_metrics: Vec<DayMetrics>,
    #[serde(default)]
    pub rates: Rates,
    #[serde(default)]
    pub series: Series,
    #[serde(default)]
    pub provider: ProviderMetrics,
    /// Dead letters stored.
    #[serde(default)]
    pub dead_letters: u64,
    /// Commands waiting for the writer.
    #[serde(default)]
    pub writer_queue: u64,
    #[serde(default)]
    pub uptime_seconds: u64,
    /// Attempts in flight waiting for their outcome, and how long the oldest has waited.
    #[serde(default)]
    pub awaiting_outcome: AwaitingOutcome,
    /// Why `system_status` is `degraded`, in words (empty otherwise).
    #[serde(default)]
    pub degraded_reasons: Vec<String>,
    #[serde(default)]
    pub disk: DiskMetrics,
}

/// The data disk's free space and the guard's limit.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DiskMetrics {
    pub free_mb: u64,
    pub min_free_mb: u64,
    /// Below the limit: new calls and numbers are refused.
    pub low: bool,
}

/// Retention: what it keeps, what it purged, what it is doing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RetentionMetrics {
    /// Final calls older than this (by `updated_at`) are purged, e.g. `180d`.
    pub final_calls: String,
    /// Where purged chunks are archived first; absent: purged without an archive.
    pub archive_dir: Option<String>,
    /// Calls purged over the store's life.
    pub purged_total: u64,
    /// A run is purging right now.
    pub running: bool,
    /// When the last run that purged something ended, and how many it purged.
    pub last_run_at: Option<String>,
    pub last_run_purged: u64,
    /// When retention last looked for calls to purge.
    pub last_check_at: Option<String>,
    /// Archive files written over the store's life (the committed chunks).
    pub archive_files: u64,
    /// Why the last run stopped early, if it did (e.g. the archive folder is not writable).
    pub last_error: Option<String>,
}

/// `POST admin/backup/`: where to write the backup; relative paths are inside the service's
/// `data_dir`. Absent: `{data_dir}/backups/callmgr-{timestamp}.redb`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
}

/// The answer to `POST admin/backup/`: a consistent snapshot written on the service's disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Backup {
    /// The backup file, on the service's machine.
    pub path: String,
    pub size_bytes: u64,
    /// Calls and campaigns in the snapshot.
    pub calls: u64,
    pub campaigns: u64,
    /// Entries over every table.
    pub entries: u64,
    /// Every change acknowledged before this instant is in the backup.
    pub snapshot_at: String,
    pub duration_ms: u64,
}

/// Attempts handed to the provider that have no outcome yet: each holds a slot until its
/// callback, a status lookup, or its callback timeout.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AwaitingOutcome {
    pub count: u64,
    /// Seconds the oldest of them has waited (0 when there is none).
    pub oldest_seconds: u64,
    /// Of them, the calls that were already in flight when the service started (their outcome
    /// comes from the provider's callback, a status lookup, or the callback timeout).
    pub recovered: u64,
}

/// One day of `recent_metrics` (days are UTC).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DayMetrics {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub total_calls_initiated: u64,
    pub total_calls_dialled: u64,
    pub total_calls_picked: u64,
    pub total_calls_disconnected: u64,
    pub total_calls_rnr: u64,
    pub total_calls_failed: u64,
    pub total_retries: u64,
    pub peak_concurrent_calls: u64,
    pub total_call_duration: u64,
    /// Seconds per picked call, to one decimal.
    pub avg_call_duration: f64,
    pub dlq_entries_created: u64,
}

/// Averages per second over the last `window_seconds`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Rates {
    pub window_seconds: u64,
    pub accepted_per_second: f64,
    pub dials_per_second: f64,
    pub outcomes_per_second: f64,
    /// Calls that reached `PICKED` or `FAILED`: a stopped campaign's cancelled calls are not
    /// completions (older services counted them here).
    pub completions_per_second: f64,
    /// Calls cancelled (campaign stopped, number put on the do-not-call list).
    pub cancellations_per_second: f64,
}

/// Per-second counts, oldest first, the current second last.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Series {
    pub seconds: u64,
    pub dials: Vec<u64>,
    pub completions: Vec<u64>,
    pub cancellations: Vec<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ProviderMetrics {
    /// `None` until the first dial request.
    pub latency_ms_p50: Option<u32>,
    pub latency_ms_p99: Option<u32>,
    pub transport_errors: u64,
    pub refusals: u64,
    /// Newest first.
    pub recent_errors: Vec<ProviderError>,
    /// The circuit breaker: `closed`, `open` (no dial starts) or `half_open` (one probe).
    pub breaker: String,
    /// Transport failures in a row, as the breaker counts them.
    pub consecutive_failures: u32,
    /// When an open breaker lets its probe through.
    pub breaker_probe_at: Option<String>,
    /// Sends the provider answered 429 or 503 (not failures: resent after the wait).
    pub throttled: u64,
    /// Dial requests whose fate was unknown and that were left to the status callback (Twilio).
    pub ambiguous: u64,
    /// Dials handed back to the queue unsent, their attempt not used up (breaker open, throttled).
    pub not_sent: u64,
    /// The dial pace in force, calls per second × 1000 (lowered while the provider throttles).
    pub dial_pace_milli_per_second: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ProviderError {
    pub at: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Request bodies the tools send.

/// `POST campaigns/` (the fields a client sets; the service refuses unknown ones).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewCampaign {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
}

/// `PATCH campaigns/{id}/`: only the fields present change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CampaignPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
}

/// One item of `phone_numbers` in `POST phone-numbers/`: the number as written (the service
/// parses it), with its IANA timezone when known.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NumberItem {
    Plain(String),
    WithTimezone { phone_number: String, timezone: String },
}

/// `POST phone-numbers/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddNumbers {
    pub campaign_id: u64,
    pub phone_numbers: Vec<NumberItem>,
}

/// `POST dnc/`: without `campaign_id` the entries are global.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddDnc {
    pub phone_numbers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST bulk-initiate-calls/` with a list of numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BulkInitiate {
    pub campaign_id: u64,
    pub phone_numbers: Vec<String>,
}

/// `POST initiate-call/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitiateCall {
    pub phone_number: String,
    pub campaign_id: u64,
}

/// `POST dlq/replay/`: replay every dead letter that matches (all of them when empty).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayDeadLetters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The answer to `POST dlq/replay/`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeadLettersReplayed {
    /// Dead letters put back in the queue.
    #[serde(default)]
    pub replayed_count: u64,
    /// Matching dead letters not replayed by this request: already replayed, or no longer
    /// replayable (their call is not FAILED any more, their campaign is stopped, …).
    #[serde(default)]
    pub skipped_count: u64,
    /// Matching dead letters still waiting beyond this request's bound: send it again.
    #[serde(default)]
    pub remaining: u64,
}

/// The one error shape: `{"error": {"code", "message", "details"}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}
