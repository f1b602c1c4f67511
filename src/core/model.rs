//! Domain types (calls, campaigns, numbers, dead letters) and their versioned storage encoding.
//! This module knows nothing about HTTP, threads or redb tables: it only defines values.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Milliseconds since the Unix epoch, UTC. Every stored instant uses this unit.
pub type Millis = i64;

/// Campaign ids are small sequential integers, as in the reference system.
pub type CampaignId = u64;

/// A call's id: a UUID version 7 (time-ordered, so new calls land on the same storage pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub u128);

impl CallId {
    pub fn as_uuid(self) -> Uuid {
        Uuid::from_u128(self.0)
    }
    pub fn parse(text: &str) -> Option<CallId> {
        Uuid::parse_str(text).ok().map(|uuid| CallId(uuid.as_u128()))
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_uuid().hyphenated().fmt(f)
    }
}

/// What the provider said about one attempt (the callback `status` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Picked,
    Disconnected,
    Rnr,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Picked, Outcome::Disconnected, Outcome::Rnr, Outcome::Failed];
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Picked => "PICKED",
            Outcome::Disconnected => "DISCONNECTED",
            Outcome::Rnr => "RNR",
            Outcome::Failed => "FAILED",
        }
    }
    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// A call's lifecycle state (DESIGN §2). The numeric codes are stored in index keys: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Initiated = 1,
    Processing = 2,
    Retrying = 3,
    Picked = 4,
    Failed = 5,
    Cancelled = 6,
}

impl Status {
    pub const ALL: [Status; 6] = [Status::Initiated, Status::Processing, Status::Retrying, Status::Picked, Status::Failed, Status::Cancelled];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initiated => "INITIATED",
            Status::Processing => "PROCESSING",
            Status::Retrying => "RETRYING",
            Status::Picked => "PICKED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }
    /// Final states never change again (except a dead-letter replay of a FAILED call).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Picked | Status::Failed | Status::Cancelled)
    }
}

/// The outcome that was applied to an attempt, kept so that a repeated callback answers the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedOutcome {
    pub attempt: u32,
    pub outcome: Outcome,
    pub resulting_status: Status,
    pub next_retry_at: Option<Millis>,
}

/// One call: one phone number dialled up to `max_attempts` times until it is answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    /// Normalised E.164.
    pub phone_number: String,
    /// The callee's own IANA timezone, copied from the campaign's number list at creation.
    pub timezone: Option<String>,
    pub status: Status,
    /// The provider's last reported outcome, kept across retries.
    pub last_outcome: Option<Outcome>,
    /// The current attempt, 1-based: it is the attempt in flight while PROCESSING.
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_attempt_at: Option<Millis>,
    pub next_retry_at: Option<Millis>,
    /// Sum of `call_duration` over all attempts, in seconds.
    pub total_call_time: u64,
    pub external_call_id: Option<String>,
    pub error_message: Option<String>,
    /// Position in the ready queue while INITIATED (assigned by the store).
    pub queue_seq: Option<u64>,
    /// When the callback timeout fires while PROCESSING.
    pub callback_deadline: Option<Millis>,
    /// What the last callback did, for idempotent repeats.
    pub last_applied: Option<AppliedOutcome>,
}

/// A campaign's dialling state. `is_active` in the API is `status == Active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    /// Dials its queued calls.
    Active,
    /// Accepts calls but holds them: nothing is dialled until it is resumed.
    Paused,
    /// Final: refuses new calls; its queued and retrying calls were cancelled.
    Stopped,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub description: String,
    pub status: CampaignStatus,
    /// IANA name; the retry file's timezone applies when absent.
    pub timezone: Option<String>,
    /// The attempt budget given to each new call; the retry file's default when absent.
    pub max_attempts: Option<u32>,
    /// This campaign's own cap on calls in flight (the global cap always applies too).
    pub max_concurrent_calls: Option<u32>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Campaign {
    pub fn is_active(&self) -> bool {
        self.status == CampaignStatus::Active
    }
}

/// A number in a campaign's list (the key is `(campaign_id, e164)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberEntry {
    pub timezone: Option<String>,
    pub added_at: Millis,
}

/// An attempt whose provider request never got through, kept for the operator to inspect and replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: u64,
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub phone_number: String,
    pub attempt: u32,
    /// The provider's last answer or the transport error.
    pub error: String,
    pub created_at: Millis,
    pub replayed_at: Option<Millis>,
}

/// Converts a stored instant to a timestamp (saturating on absurd values rather than panicking).
pub fn to_timestamp(ms: Millis) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// RFC 3339 UTC text of a stored instant.
pub fn rfc3339(ms: Millis) -> String {
    to_timestamp(ms).to_string()
}

/// Record encoding: one format-version byte, then the record in postcard.
///
/// A later release that changes a record keeps the old struct as `…V1`, bumps the version, and
/// converts on decode; `tests/store_format.rs` opens a file written by every earlier format.
pub mod codec {
    use serde::{Serialize, de::DeserializeOwned};

    /// The record format this build writes.
    pub const RECORD_FORMAT: u8 = 1;

    #[derive(Debug, thiserror::Error)]
    pub enum CodecError {
        #[error("empty record")]
        Empty,
        #[error("record format {0} is newer than this build understands (max {RECORD_FORMAT})")]
        UnknownFormat(u8),
        #[error("record does not decode: {0}")]
        Corrupt(#[from] postcard::Error),
    }

    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT];
        // Encoding plain in-memory structs into a Vec cannot fail.
        out.extend(postcard::to_allocvec(value).expect("records always encode"));
        out
    }

    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        match bytes.split_first() {
            None => Err(CodecError::Empty),
            Some((&RECORD_FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip_and_names_parse() {
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("picked"), None);
    }

    #[test]
    fn records_round_trip_and_reject_unknown_formats() {
        let campaign = Campaign {
            id: 7,
            name: "Q1".into(),
            description: String::new(),
            status: CampaignStatus::Paused,
            timezone: Some("Europe/London".into()),
            max_attempts: Some(4),
            max_concurrent_calls: None,
            created_at: 1,
            updated_at: 2,
        };
        let bytes = codec::encode(&campaign);
        assert_eq!(codec::decode::<Campaign>(&bytes).unwrap(), campaign);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(codec::decode::<Campaign>(&future), Err(codec::CodecError::UnknownFormat(9))));
        assert!(codec::decode::<Campaign>(&[]).is_err());
    }
}
