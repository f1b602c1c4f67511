//! The one place the API turns client-written numbers into E.164 (with the campaign's or the
//! config's default region for national formats, and the configured strictness), and resolves
//! a callee's timezone for display.

use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::core::callee_zone::{self, CalleeZone};
use crate::core::model::Campaign;
use crate::core::phone;

/// Does parsing `raw` need a default region (it is not written with `+country code`)?
pub fn needs_region(raw: &str) -> bool {
    !raw.trim_start().starts_with('+')
}

/// `raw` in E.164, or the reason it was refused. `campaign_region` is the campaign's own
/// default region, when it has one (it wins over the config's `default_region`).
pub fn parse(state: &AppState, raw: &str, campaign_region: Option<&str>) -> Result<String, String> {
    let campaign_region = campaign_region.and_then(|r| phone::Region::parse(r).ok());
    let region = campaign_region.as_ref().or(state.config.default_region.as_ref());
    phone::parse(raw, region, state.config.phone_validation).map_err(|e| e.to_string())
}

/// A number used to look stored data up: lenient, so numbers stored under older rules are found.
pub fn lookup(field: &str, raw: &str) -> Result<String, ApiError> {
    phone::normalize_lenient(raw).ok_or_else(|| ApiError::field(field, format!("`{raw}` is not a phone number")))
}

/// One item of a number list: `"+1…"` or `{"phone_number": "+1…", "timezone": "…"}`.
/// `Err` carries the text to report and the reason.
pub fn parse_number_item(state: &AppState, item: &Value, campaign_region: Option<&str>) -> Result<(String, Option<String>), (String, String)> {
    let (raw, timezone) = match item {
        Value::String(s) => (s.as_str(), None),
        Value::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !matches!(k.as_str(), "phone_number" | "timezone")) {
                return Err((item.to_string(), format!("unknown field `{unknown}`; an item has phone_number and optionally timezone")));
            }
            match map.get("phone_number") {
                Some(Value::String(s)) => (s.as_str(), map.get("timezone")),
                _ => return Err((item.to_string(), "phone_number must be a string".into())),
            }
        }
        other => return Err((other.to_string(), "must be a phone number string or an object with phone_number".into())),
    };
    let e164 = parse(state, raw, campaign_region).map_err(|reason| (raw.to_string(), reason))?;
    let timezone = match timezone {
        None | Some(Value::Null) => None,
        Some(Value::String(tz)) => {
            Some(super::campaigns::validate_timezone("timezone", tz).map_err(|_| (raw.to_string(), format!("Unknown timezone `{tz}`")))?)
        }
        Some(_) => return Err((raw.to_string(), "timezone must be a string".into())),
    };
    Ok((e164, timezone))
}

/// The callee's timezone as the dialling gates see it.
pub fn callee_zone(state: &AppState, given: Option<&str>, e164: &str, campaign: Option<&Campaign>) -> CalleeZone {
    callee_zone::resolve(given, e164, campaign.and_then(|c| c.timezone.as_deref()), state.live.rules().default_timezone(), state.config.timezone_max_candidates)
}
