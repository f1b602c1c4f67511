//! JSON shapes of the API: request bodies as received and records as shown (RFC 3339 UTC
//! timestamps, normalised numbers). Field names are the reference system's.

use serde::{Deserialize, Deserializer, Serialize};

use crate::core::model::{Call, Campaign, DeadLetter, NumberEntry, Status, rfc3339};

#[derive(Serialize)]
pub struct CallView {
    pub call_id: String,
    pub campaign_id: u64,
    pub phone_number: String,
    pub status: &'static str,
    pub last_outcome: Option<&'static str>,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    pub last_attempt_at: Option<String>,
    pub next_retry_at: Option<String>,
    pub total_call_time: u64,
    pub external_call_id: Option<String>,
    pub error_message: Option<String>,
}

impl From<&Call> for CallView {
    fn from(c: &Call) -> Self {
        CallView {
            call_id: c.call_id.to_string(),
            campaign_id: c.campaign_id,
            phone_number: c.phone_number.clone(),
            status: c.status.as_str(),
            last_outcome: c.last_outcome.map(|o| o.as_str()),
            attempt_count: c.attempt_count,
            max_attempts: c.max_attempts,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            last_attempt_at: c.last_attempt_at.map(rfc3339),
            next_retry_at: c.next_retry_at.map(rfc3339),
            total_call_time: c.total_call_time,
            external_call_id: c.external_call_id.clone(),
            error_message: c.error_message.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct CampaignView {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub status: &'static str,
    pub timezone: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<CampaignStats>,
}

#[derive(Serialize)]
pub struct CampaignStats {
    pub calls_by_status: std::collections::BTreeMap<&'static str, u64>,
    pub total_calls: u64,
    pub phone_count: u64,
    /// Calls holding a slot right now.
    pub in_flight: u32,
}

impl From<&Campaign> for CampaignView {
    fn from(c: &Campaign) -> Self {
        CampaignView {
            id: c.id,
            name: c.name.clone(),
            description: c.description.clone(),
            is_active: c.is_active(),
            status: c.status.as_str(),
            timezone: c.timezone.clone(),
            max_attempts: c.max_attempts,
            max_concurrent_calls: c.max_concurrent_calls,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            stats: None,
        }
    }
}

pub fn campaign_stats(counts: &[(Status, u64)], phone_count: u64, in_flight: u32) -> CampaignStats {
    CampaignStats {
        calls_by_status: counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        total_calls: counts.iter().map(|(_, n)| n).sum(),
        phone_count,
        in_flight,
    }
}

#[derive(Serialize)]
pub struct NumberView {
    pub phone_number: String,
    pub timezone: Option<String>,
    pub added_at: String,
}

impl NumberView {
    pub fn new(e164: String, entry: &NumberEntry) -> Self {
        NumberView { phone_number: e164, timezone: entry.timezone.clone(), added_at: rfc3339(entry.added_at) }
    }
}

#[derive(Serialize)]
pub struct DeadLetterView {
    pub id: u64,
    pub call_id: String,
    pub campaign_id: u64,
    pub phone_number: String,
    pub attempt: u32,
    pub error: String,
    pub created_at: String,
    pub replayed_at: Option<String>,
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(d: &DeadLetter) -> Self {
        DeadLetterView {
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
}

/// `{results, next_cursor}`: every list endpoint's page.
#[derive(Serialize)]
pub struct PageView<T> {
    pub results: Vec<T>,
    pub next_cursor: Option<String>,
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
}

#[derive(Deserialize)]
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
}

#[derive(Deserialize)]
pub struct PhoneNumbersBody {
    pub campaign_id: Id,
    pub phone_numbers: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
pub struct InitiateCallBody {
    pub phone_number: String,
    pub campaign_id: Id,
}

#[derive(Deserialize)]
pub struct BulkBody {
    pub campaign_id: Id,
    #[serde(default)]
    pub phone_numbers: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub use_campaign_numbers: Option<bool>,
}

#[derive(Deserialize)]
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
