//! Domain values: calls (a state enum with its attempt history), campaigns and their transition
//! table, numbers, do-not-call entries, dead letters. Knows nothing about HTTP, threads or
//! storage tables; the stored encoding of these values lives in `core::codec`.

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

/// A call's lifecycle status as the API shows it. The numeric codes are stored in index keys:
/// never renumber.
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

/// Why a queued call is not dialled although its turn came. (A paused campaign holds all its
/// queued calls without touching them; that reason is the campaign's, not the call's.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HoldReason {
    /// Outside calling hours in the callee's local time; dialable at the next opening.
    OutsideCallingHours,
    /// The number was dialled as often as the contact limit allows in its rolling window.
    ContactCap,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::OutsideCallingHours => "outside_calling_hours",
            HoldReason::ContactCap => "contact_cap",
        }
    }
}

/// A hold on a queued call: it keeps its queue position and becomes dialable at `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reason: HoldReason,
    pub until: Millis,
}

/// Why a call was cancelled before it was dialled (again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    CampaignStopped,
    DoNotCall,
}

impl CancelReason {
    /// The call's `error_message`.
    pub fn message(self) -> &'static str {
        match self {
            CancelReason::CampaignStopped => "Campaign stopped",
            CancelReason::DoNotCall => "Number is on the do-not-call list",
        }
    }
}

/// Where a call is in its lifecycle, with exactly the fields that state needs: a queued call has
/// a queue position, a call in flight has a callback deadline, a retrying one its due time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallState {
    /// Accepted and durable, waiting in its campaign's queue at `queue_seq` for a slot; `hold`
    /// when a dialling gate was closed at its turn.
    Initiated {
        queue_seq: u64,
        hold: Option<Hold>,
    },
    /// Attempt `attempt_count` is with the provider and holds a slot until its outcome, or until
    /// `deadline` passes without one.
    Processing {
        deadline: Millis,
    },
    /// The last attempt failed with a retryable outcome; dialled again at `next_retry_at`.
    Retrying {
        next_retry_at: Millis,
    },
    Picked,
    Failed,
    Cancelled {
        reason: CancelReason,
    },
}

impl CallState {
    pub fn status(&self) -> Status {
        match self {
            CallState::Initiated { .. } => Status::Initiated,
            CallState::Processing { .. } => Status::Processing,
            CallState::Retrying { .. } => Status::Retrying,
            CallState::Picked => Status::Picked,
            CallState::Failed => Status::Failed,
            CallState::Cancelled { .. } => Status::Cancelled,
        }
    }
}

/// One dialled attempt: the audit trail of "when exactly did you call me, and what happened".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    /// When the attempt was committed PROCESSING (the dial request is sent right after).
    pub dialled_at: Millis,
    /// When the provider accepted the dial request.
    pub provider_answered_at: Option<Millis>,
    /// The provider's id for this attempt (from its answer or its callback).
    pub external_call_id: Option<String>,
    /// The provider's last progress report before the outcome (e.g. Twilio's `ringing`).
    pub provider_status: Option<String>,
    pub outcome: Option<Outcome>,
    /// Seconds of conversation, as the provider reported it.
    pub call_duration: Option<u64>,
    /// When the outcome (or the failure that ended the attempt) was recorded.
    pub ended_at: Option<Millis>,
    /// Why the attempt ended without a provider outcome, or what the provider said when refusing.
    pub error: Option<String>,
    /// What the outcome did to the call, so that a repeated callback answers the same.
    pub result: Option<AttemptResult>,
}

/// The effect of an attempt's outcome on its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptResult {
    pub status: Status,
    pub next_retry_at: Option<Millis>,
}

impl Attempt {
    pub fn is_ended(&self) -> bool {
        self.ended_at.is_some()
    }
}

/// One call: one phone number dialled up to `max_attempts` times until it is answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    /// E.164.
    pub phone_number: String,
    /// The callee's own IANA timezone, copied from the campaign's number list at creation.
    pub timezone: Option<String>,
    pub state: CallState,
    /// The current attempt, 1-based: queued, in flight, or the last one that ended.
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Sum of `call_duration` over all attempts, in seconds.
    pub total_call_time: u64,
    pub error_message: Option<String>,
    /// Every dialled attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

impl Call {
    pub fn status(&self) -> Status {
        self.state.status()
    }

    /// The history entry of attempt `n`, if it was dialled.
    pub fn attempt(&self, n: u32) -> Option<&Attempt> {
        self.attempts.iter().rev().find(|a| a.attempt == n)
    }

    pub fn attempt_mut(&mut self, n: u32) -> Option<&mut Attempt> {
        self.attempts.iter_mut().rev().find(|a| a.attempt == n)
    }

    /// The provider's last reported outcome, kept across retries.
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.attempts.iter().rev().find_map(|a| a.outcome)
    }

    /// The provider's id of the latest attempt that has one.
    pub fn external_call_id(&self) -> Option<&str> {
        self.attempts.iter().rev().find_map(|a| a.external_call_id.as_deref())
    }

    pub fn last_attempt_at(&self) -> Option<Millis> {
        self.attempts.last().map(|a| a.dialled_at)
    }

    pub fn next_retry_at(&self) -> Option<Millis> {
        match self.state {
            CallState::Retrying { next_retry_at } => Some(next_retry_at),
            _ => None,
        }
    }

    pub fn hold(&self) -> Option<Hold> {
        match self.state {
            CallState::Initiated { hold, .. } => hold,
            _ => None,
        }
    }

    /// Where the scheduler keeps this call.
    pub fn placement(&self) -> Placement {
        match self.state {
            CallState::Initiated { queue_seq, hold: None } => Placement::Queued { seq: queue_seq },
            CallState::Initiated { queue_seq, hold: Some(hold) } => Placement::Held { seq: queue_seq, until: hold.until },
            CallState::Processing { deadline } => Placement::InFlight { deadline },
            CallState::Retrying { next_retry_at } => Placement::Waiting { at: next_retry_at },
            CallState::Picked | CallState::Failed | CallState::Cancelled { .. } => Placement::Nowhere,
        }
    }
}

/// Where a call sits in the scheduler's structures, derived from its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// New, or final: in no queue.
    Nowhere,
    /// Queued and dialable: in the ready queue at this position.
    Queued { seq: u64 },
    /// Queued but held until `until` (keeps its position `seq`).
    Held { seq: u64, until: Millis },
    /// In flight: holds a slot until the outcome or this deadline.
    InFlight { deadline: Millis },
    /// Retrying: due at this instant.
    Waiting { at: Millis },
}

/// What one committed record change means for the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallChange {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub before: Placement,
    pub after: Placement,
}

/// A campaign's dialling state. `is_active` in the API is `status == Active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    /// Dials its queued calls.
    Active,
    /// Accepts calls but holds them: nothing is dialled until it is resumed.
    Paused,
    /// Final: refuses new calls; its waiting calls are cancelled, outcomes end calls.
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

    /// The one transition table of campaigns, used by the action endpoints and by PATCH
    /// `is_active` alike. Repeating the current state is allowed; a stopped campaign stays stopped.
    pub fn apply(self, action: CampaignAction) -> Result<CampaignStatus, &'static str> {
        match (self, action) {
            (CampaignStatus::Stopped, CampaignAction::Stop) => Ok(CampaignStatus::Stopped),
            (CampaignStatus::Stopped, CampaignAction::Pause | CampaignAction::Resume) => Err("Campaign is stopped and cannot be paused or resumed"),
            (_, CampaignAction::Pause) => Ok(CampaignStatus::Paused),
            (_, CampaignAction::Resume) => Ok(CampaignStatus::Active),
            (_, CampaignAction::Stop) => Ok(CampaignStatus::Stopped),
        }
    }
}

/// What an operator can do to a campaign's dialling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignAction {
    Pause,
    Resume,
    Stop,
}

impl CampaignAction {
    /// PATCH `is_active: true|false` means resume or pause.
    pub fn from_is_active(is_active: bool) -> CampaignAction {
        if is_active { CampaignAction::Resume } else { CampaignAction::Pause }
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
    /// Region (ISO 3166 alpha-2) for numbers written in national format; the config's when absent.
    pub default_region: Option<String>,
    /// Caller id presented to callees (providers that take one); the provider config's when absent.
    pub caller_id: Option<String>,
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

/// A do-not-call entry (the key is `(scope, e164)`; scope 0 is global, else a campaign id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DncEntry {
    pub reason: Option<String>,
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

/// RFC 3339 UTC text of a stored instant, always with millisecond precision.
pub fn rfc3339(ms: Millis) -> String {
    to_timestamp(ms).strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
    fn campaign_transition_table() {
        use CampaignAction::*;
        use CampaignStatus::*;
        let table = [
            (Active, Pause, Ok(Paused)),
            (Active, Resume, Ok(Active)),
            (Active, Stop, Ok(Stopped)),
            (Paused, Pause, Ok(Paused)),
            (Paused, Resume, Ok(Active)),
            (Paused, Stop, Ok(Stopped)),
            (Stopped, Stop, Ok(Stopped)),
            (Stopped, Pause, Err(())),
            (Stopped, Resume, Err(())),
        ];
        for (from, action, expected) in table {
            assert_eq!(from.apply(action).map_err(|_| ()), expected, "{from:?} + {action:?}");
        }
        assert_eq!(CampaignAction::from_is_active(false), Pause);
    }

    #[test]
    fn timestamps_have_millisecond_precision() {
        assert_eq!(rfc3339(1_780_000_000_000), "2026-05-28T20:26:40.000Z");
        assert_eq!(rfc3339(1_780_000_000_123), "2026-05-28T20:26:40.123Z");
    }

    #[test]
    fn placement_follows_the_state() {
        let mut call = Call {
            call_id: CallId(1),
            campaign_id: 1,
            phone_number: "+14155550101".into(),
            timezone: None,
            state: CallState::Initiated { queue_seq: 7, hold: None },
            attempt_count: 1,
            max_attempts: 3,
            created_at: 0,
            updated_at: 0,
            total_call_time: 0,
            error_message: None,
            attempts: vec![],
        };
        assert_eq!(call.placement(), Placement::Queued { seq: 7 });
        call.state = CallState::Initiated { queue_seq: 7, hold: Some(Hold { reason: HoldReason::ContactCap, until: 9 }) };
        assert_eq!(call.placement(), Placement::Held { seq: 7, until: 9 });
        call.state = CallState::Processing { deadline: 5 };
        assert_eq!(call.placement(), Placement::InFlight { deadline: 5 });
        call.state = CallState::Cancelled { reason: CancelReason::DoNotCall };
        assert_eq!((call.placement(), call.status()), (Placement::Nowhere, Status::Cancelled));
    }
}
