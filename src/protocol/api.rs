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
    pub timezone: String,
    /// `given`, `inferred`, `ambiguous`, `campaign` or `default`.
    pub timezone_source: String,
    /// Why a queued call is not dialled: `paused`, `outside_calling_hours` or `contact_cap`.
    pub held_reason: Option<String>,
    /// When a held call becomes dialable again (absent for a paused campaign: at its resume).
    pub next_dial_at: Option<String>,
    /// Every dialled attempt, oldest first.
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
    pub held: Held,
    /// Queued calls waiting only for a slot or the dial pace.
    pub queued: u64,
    pub retrying: u64,
    /// The earliest instant a held call becomes dialable.
    pub next_dial_at: Option<String>,
    /// Calls cancelled because their number is on the do-not-call list.
    pub cancelled_dnc: u64,
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
