//! The stored encoding of records: one format-version byte, then the record in postcard.
//!
//! A release that changes a record keeps the old shape here as `…V1`, bumps `RECORD_FORMAT`,
//! and converts on decode, so an upgraded binary reads every record an earlier one wrote
//! (`tests/it/store_format.rs` opens a committed file of every earlier format). Records are
//! rewritten in the current format the next time they change. Pure: no I/O.
//!
//! Formats:
//! * 1 — the first release: a call was a status plus independent optional fields and kept only
//!   its last attempt; a campaign had no `default_region` or `caller_id`.
//! * 2 — a call is a state enum with its attempt history; campaigns gained two optional fields.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::model::{
    Attempt, AttemptResult, Call, CallId, CallState, Campaign, CampaignId, CampaignStatus, CancelReason, DeadLetter, DncEntry, Millis, NumberEntry, Outcome,
    Status,
};

/// The record format this build writes.
pub const RECORD_FORMAT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("record format {0} is newer than this build understands (max {RECORD_FORMAT})")]
    UnknownFormat(u8),
    #[error("record does not decode: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error("record is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// A stored record type: how each known format decodes into today's shape.
pub trait Record: Serialize + DeserializeOwned {
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, CodecError>;
}

pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT];
    // Encoding plain in-memory structs into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).expect("records always encode"));
    out
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&format, body)) if (1..=RECORD_FORMAT).contains(&format) => T::decode_format(format, body),
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

/// Records whose shape has not changed since format 1.
macro_rules! unchanged_record {
    ($($t:ty),*) => {$(
        impl Record for $t {
            fn decode_format(_format: u8, body: &[u8]) -> Result<Self, CodecError> {
                Ok(postcard::from_bytes(body)?)
            }
        }
    )*};
}
unchanged_record!(NumberEntry, DeadLetter, DncEntry);

impl Record for Campaign {
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, CodecError> {
        if format == 1 {
            let v1: CampaignV1 = postcard::from_bytes(body)?;
            return Ok(Campaign {
                id: v1.id,
                name: v1.name,
                description: v1.description,
                status: v1.status,
                timezone: v1.timezone,
                max_attempts: v1.max_attempts,
                max_concurrent_calls: v1.max_concurrent_calls,
                default_region: None,
                caller_id: None,
                created_at: v1.created_at,
                updated_at: v1.updated_at,
            });
        }
        Ok(postcard::from_bytes(body)?)
    }
}

impl Record for Call {
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, CodecError> {
        if format == 1 {
            return postcard::from_bytes::<CallV1>(body)?.upgrade();
        }
        Ok(postcard::from_bytes(body)?)
    }
}

/// A campaign as format 1 stored it.
#[derive(serde::Deserialize, Serialize)]
pub struct CampaignV1 {
    pub id: CampaignId,
    pub name: String,
    pub description: String,
    pub status: CampaignStatus,
    pub timezone: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What format 1 kept of the last callback, for idempotent repeats.
#[derive(serde::Deserialize, Serialize, Clone)]
pub struct AppliedOutcomeV1 {
    pub attempt: u32,
    pub outcome: Outcome,
    pub resulting_status: Status,
    pub next_retry_at: Option<Millis>,
}

/// A call as format 1 stored it: a status plus fields that were valid only in some statuses.
#[derive(serde::Deserialize, Serialize)]
pub struct CallV1 {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub phone_number: String,
    pub timezone: Option<String>,
    pub status: Status,
    pub last_outcome: Option<Outcome>,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_attempt_at: Option<Millis>,
    pub next_retry_at: Option<Millis>,
    pub total_call_time: u64,
    pub external_call_id: Option<String>,
    pub error_message: Option<String>,
    pub queue_seq: Option<u64>,
    pub callback_deadline: Option<Millis>,
    pub last_applied: Option<AppliedOutcomeV1>,
}

impl CallV1 {
    /// Today's shape. Format 1 kept only the latest attempt, so the history starts with it.
    pub fn upgrade(self) -> Result<Call, CodecError> {
        let state = match self.status {
            Status::Initiated => {
                CallState::Initiated { queue_seq: self.queue_seq.ok_or(CodecError::Inconsistent("queued call without a queue position"))?, hold: None }
            }
            Status::Processing => {
                CallState::Processing { deadline: self.callback_deadline.ok_or(CodecError::Inconsistent("call in flight without a deadline"))? }
            }
            Status::Retrying => CallState::Retrying { next_retry_at: self.next_retry_at.ok_or(CodecError::Inconsistent("retrying call without a due time"))? },
            Status::Picked => CallState::Picked,
            Status::Failed => CallState::Failed,
            Status::Cancelled => CallState::Cancelled { reason: CancelReason::CampaignStopped },
        };
        let mut attempts = Vec::new();
        if let Some(dialled_at) = self.last_attempt_at {
            // A queued call was re-queued after its last dialled attempt; otherwise the current
            // attempt is the last dialled one.
            let attempt = if self.status == Status::Initiated { self.attempt_count.saturating_sub(1).max(1) } else { self.attempt_count };
            let applied = self.last_applied.filter(|a| a.attempt == attempt);
            let ended = self.status != Status::Processing;
            attempts.push(Attempt {
                attempt,
                dialled_at,
                provider_answered_at: None,
                external_call_id: self.external_call_id,
                provider_status: None,
                outcome: applied.as_ref().map(|a| a.outcome).or(if ended { self.last_outcome } else { None }),
                call_duration: None,
                ended_at: ended.then_some(self.updated_at),
                error: None,
                result: applied.map(|a| AttemptResult { status: a.resulting_status, next_retry_at: a.next_retry_at }),
            });
        }
        Ok(Call {
            call_id: self.call_id,
            campaign_id: self.campaign_id,
            phone_number: self.phone_number,
            timezone: self.timezone,
            state,
            attempt_count: self.attempt_count,
            max_attempts: self.max_attempts,
            created_at: self.created_at,
            updated_at: self.updated_at,
            total_call_time: self.total_call_time,
            error_message: self.error_message,
            attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_call(status: Status) -> CallV1 {
        CallV1 {
            call_id: CallId(9),
            campaign_id: 1,
            phone_number: "+14155550101".into(),
            timezone: None,
            status,
            last_outcome: Some(Outcome::Rnr),
            attempt_count: 2,
            max_attempts: 3,
            created_at: 10,
            updated_at: 20,
            last_attempt_at: Some(15),
            next_retry_at: Some(99),
            total_call_time: 0,
            external_call_id: Some("ext-2".into()),
            error_message: None,
            queue_seq: Some(4),
            callback_deadline: Some(50),
            last_applied: Some(AppliedOutcomeV1 { attempt: 2, outcome: Outcome::Rnr, resulting_status: Status::Retrying, next_retry_at: Some(99) }),
        }
    }

    fn as_v1(value: &impl Serialize) -> Vec<u8> {
        let mut bytes = vec![1];
        bytes.extend(postcard::to_allocvec(value).unwrap());
        bytes
    }

    #[test]
    fn format_1_calls_become_states_with_their_last_attempt() {
        let call: Call = decode(&as_v1(&v1_call(Status::Retrying))).unwrap();
        assert_eq!(call.state, CallState::Retrying { next_retry_at: 99 });
        assert_eq!(call.attempts.len(), 1);
        let attempt = &call.attempts[0];
        assert_eq!((attempt.attempt, attempt.dialled_at, attempt.outcome, attempt.external_call_id.as_deref()), (2, 15, Some(Outcome::Rnr), Some("ext-2")));
        assert_eq!(attempt.result, Some(AttemptResult { status: Status::Retrying, next_retry_at: Some(99) }));

        let call: Call = decode(&as_v1(&v1_call(Status::Processing))).unwrap();
        assert_eq!(call.state, CallState::Processing { deadline: 50 });
        let call: Call = decode(&as_v1(&v1_call(Status::Initiated))).unwrap();
        assert_eq!((call.state.clone(), call.attempts[0].attempt), (CallState::Initiated { queue_seq: 4, hold: None }, 1));
        let call: Call = decode(&as_v1(&v1_call(Status::Cancelled))).unwrap();
        assert_eq!(call.state, CallState::Cancelled { reason: CancelReason::CampaignStopped });

        let mut broken = v1_call(Status::Processing);
        broken.callback_deadline = None;
        assert!(matches!(decode::<Call>(&as_v1(&broken)), Err(CodecError::Inconsistent(_))));
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
            default_region: Some("GB".into()),
            caller_id: None,
            created_at: 1,
            updated_at: 2,
        };
        let bytes = encode(&campaign);
        assert_eq!(decode::<Campaign>(&bytes).unwrap(), campaign);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(decode::<Campaign>(&future), Err(CodecError::UnknownFormat(9))));
        assert!(decode::<Campaign>(&[]).is_err());
        let v1 = CampaignV1 {
            id: 7,
            name: "Q1".into(),
            description: String::new(),
            status: CampaignStatus::Paused,
            timezone: None,
            max_attempts: None,
            max_concurrent_calls: Some(3),
            created_at: 1,
            updated_at: 2,
        };
        let upgraded: Campaign = decode(&as_v1(&v1)).unwrap();
        assert_eq!((upgraded.max_concurrent_calls, upgraded.default_region), (Some(3), None));
    }
}
