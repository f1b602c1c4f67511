//! The API's JSON on both sides of the service: request bodies as received (strict: an unknown
//! field is refused, except in the provider's callback, where providers add fields freely) and
//! the wire types of `protocol::api` built from stored records.

use serde::{Deserialize, Deserializer};

use crate::core::callee_zone::CalleeZone;
use crate::core::model::{Attempt, Call, Campaign, CampaignStatus, DeadLetter, DncEntry, NumberEntry, Status, rfc3339};
use crate::protocol::api;

/// A call as the API shows it. `campaign` is the call's campaign (for the paused hold) and
/// `zone` the callee's resolved timezone.
pub fn call_view(call: &Call, campaign: Option<&Campaign>, zone: &CalleeZone) -> api::Call {
    let hold = call.hold();
    let held_reason = match hold {
        Some(hold) => Some(hold.reason.as_str().to_string()),
        None if call.status() == Status::Initiated && campaign.is_some_and(|c| c.status == CampaignStatus::Paused) => Some("paused".to_string()),
        None => None,
    };
    api::Call {
        call_id: call.call_id.to_string(),
        campaign_id: call.campaign_id,
        phone_number: call.phone_number.clone(),
        status: call.status().as_str().to_string(),
        last_outcome: call.last_outcome().map(|o| o.as_str().to_string()),
        attempt_count: call.attempt_count,
        max_attempts: call.max_attempts,
        created_at: rfc3339(call.created_at),
        updated_at: rfc3339(call.updated_at),
        last_attempt_at: call.last_attempt_at().map(rfc3339),
        next_retry_at: call.next_retry_at().map(rfc3339),
        total_call_time: call.total_call_time,
        external_call_id: call.external_call_id().map(str::to_string),
        error_message: call.error_message.clone(),
        timezone: zone.name(),
        timezone_source: zone.source.as_str().to_string(),
        held_reason,
        next_dial_at: hold.map(|h| rfc3339(h.until)),
        attempts: call.attempts.iter().map(attempt_view).collect(),
    }
}

fn attempt_view(a: &Attempt) -> api::Attempt {
    api::Attempt {
        attempt: a.attempt,
        dialled_at: rfc3339(a.dialled_at),
        provider_answered_at: a.provider_answered_at.map(rfc3339),
        external_call_id: a.external_call_id.clone(),
        provider_status: a.provider_status.clone(),
        outcome: a.outcome.map(|o| o.as_str().to_string()),
        call_duration: a.call_duration,
        ended_at: a.ended_at.map(rfc3339),
        error: a.error.clone(),
    }
}

pub fn campaign_view(c: &Campaign) -> api::Campaign {
    api::Campaign {
        id: c.id,
        name: c.name.clone(),
        description: c.description.clone(),
        is_active: c.is_active(),
        status: c.status.as_str().to_string(),
        timezone: c.timezone.clone(),
        max_attempts: c.max_attempts,
        max_concurrent_calls: c.max_concurrent_calls,
        default_region: c.default_region.clone(),
        caller_id: c.caller_id.clone(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        stats: None,
    }
}

pub fn number_view(e164: String, entry: &NumberEntry, zone: &CalleeZone) -> api::Number {
    api::Number { phone_number: e164, timezone: zone.name(), timezone_source: zone.source.as_str().to_string(), added_at: rfc3339(entry.added_at) }
}

pub fn dead_letter_view(d: &DeadLetter) -> api::DeadLetter {
    api::DeadLetter {
        id: d.id,
        call_id: d.call_id.to_string(),
        campaign_id: d.campaign_id,
        phone_number: d.phone_number.clone(),
        attempt: d.attempt,
        error: d.error.clone(),
        created_at: rfc3339(d.created_at),
        replayed_at: d.replayed_at.map(rfc3339),
    }
}

pub fn dnc_view(scope: u64, e164: String, entry: &DncEntry) -> api::DncEntry {
    api::DncEntry { phone_number: e164, campaign_id: (scope != 0).then_some(scope), reason: entry.reason.clone(), added_at: rfc3339(entry.added_at) }
}

/// An id given as a JSON number or as a numeric string (the reference system's clients send both).
#[derive(Clone, Copy, Debug)]
pub struct Id(pub u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Id, E> {
                if n > 0 { Ok(Id(n)) } else { Err(E::custom("must be a positive integer")) }
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Id, E> {
                u64::try_from(n).map_err(|_| E::custom("must be a positive integer")).and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Id, E> {
                text.trim().parse::<u64>().map_err(|_| E::custom("must be a positive integer")).and_then(|n| self.visit_u64(n))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`) in PATCH bodies.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    #[serde(default)]
    pub default_region: Option<String>,
    #[serde(default)]
    pub caller_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchCampaignBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub timezone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_attempts: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_concurrent_calls: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    pub default_region: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub caller_id: Option<Option<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumbersBody {
    pub campaign_id: Id,
    pub phone_numbers: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiateCallBody {
    pub phone_number: String,
    pub campaign_id: Id,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    pub campaign_id: Id,
    #[serde(default)]
    pub phone_numbers: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub use_campaign_numbers: Option<bool>,
}

#[derive(Deserialize)]
/// Not strict: providers add fields of their own to callbacks.
pub struct CallbackBody {
    pub call_id: serde_json::Value,
    pub status: serde_json::Value,
    #[serde(default)]
    pub call_duration: Option<serde_json::Value>,
    #[serde(default)]
    pub external_call_id: Option<serde_json::Value>,
    #[serde(default)]
    pub attempt: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DncBody {
    pub phone_numbers: Vec<serde_json::Value>,
    #[serde(default)]
    pub campaign_id: Option<Id>,
    #[serde(default)]
    pub reason: Option<String>,
}
