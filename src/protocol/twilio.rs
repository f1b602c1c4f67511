//! The Twilio Programmable Voice REST API, as callmgr speaks it (SignalWire's LaML API and
//! Somleng speak it too): the dial form, the call resource and error answers, the status callback
//! form, the `X-Twilio-Signature`, the URLs, and how a final call status becomes an [`Outcome`].
//! Pure values and functions; it must not send, receive, read the clock or touch the store.
//!
//! The conversation, and which item serves each step:
//!
//! 1. Dial: `POST` [`calls_url`] with the form [`DialForm::to_form`], header
//!    [`basic_authorization`]. `201` → [`CallResource::parse`] (its `sid` is the attempt's
//!    `external_call_id`); `4xx` → [`TwilioError::parse`] (the refusal's reason is its `Display`).
//! 2. Status callback: Twilio `POST`s a form to the `StatusCallback` URL built by
//!    [`status_callback_url`]. Read the raw body with [`parse_form`], check
//!    [`SIGNATURE_HEADER`] with [`verify`] against that same URL, then
//!    [`StatusCallback::parse`] and [`OutcomeMap::outcome`].
//! 3. Reconciliation: `GET` [`call_url`] → [`CallResource::parse`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::model::{CallId, Outcome};

/// The header that carries Twilio's request signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The REST API version in every path.
pub const API_VERSION: &str = "2010-04-01";

/// The path (under `public_url`) of callmgr's status callback route.
pub const STATUS_CALLBACK_PATH: &str = "/api/v1/providers/twilio/status";

/// Twilio rings for at most this long, whatever `Timeout` asks.
pub const RING_TIMEOUT_SECONDS_MAX: u32 = 600;

/// The call progress events callmgr asks Twilio to report (`StatusCallbackEvent`).
///
/// Only `completed`: it is the one event that carries the outcome (`CallStatus` completed, busy,
/// no-answer, failed or canceled, with `CallDuration` and `AnsweredBy`). `initiated`, `ringing`
/// and `answered` would each cost one more signed HTTP request and one more writer commit per
/// call (up to 4× the callback load at 500,000 calls a day) and the attempt history has no field
/// they would fill. `completed` is also Twilio's default, but it is sent explicitly so that a
/// compatible provider with another default behaves the same.
pub const STATUS_CALLBACK_EVENTS: &[&str] = &["completed"];

// ---------------------------------------------------------------------------------------------
// Signature

/// The text Twilio signs: the full URL, then every POST parameter's name and value, sorted by name
/// (a repeated name contributes each of its values in sorted order, as Twilio's helper libraries do).
fn signed_text(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut text = Vec::with_capacity(url.len() + params.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>());
    text.extend_from_slice(url.as_bytes());
    for (name, value) in sorted {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(value.as_bytes());
    }
    text
}

fn signing_key(auth_token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes())
}

/// Twilio's request signature: base64 of HMAC-SHA1, keyed by the auth token, of `url` followed by
/// every POST parameter name and value sorted by name. `url` is the exact URL requested, query
/// string included (callmgr's status callback URL carries `call_id` and `attempt` there).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(hmac::sign(&signing_key(auth_token), &signed_text(url, params)).as_ref())
}

/// Whether `header_value` (the [`SIGNATURE_HEADER`]) is the signature of this request, compared
/// in constant time. A header that is not base64 is simply not valid.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], header_value: &str) -> bool {
    let Ok(tag) = BASE64.decode(header_value.trim()) else { return false };
    hmac::verify(&signing_key(auth_token), &signed_text(url, params), &tag).is_ok()
}

/// `Authorization` header value for HTTP Basic auth with `account_sid:auth_token`.
pub fn basic_authorization(account_sid: &str, auth_token: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{account_sid}:{auth_token}")))
}

/// The name/value pairs of a form-encoded body (`application/x-www-form-urlencoded`), in order.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

// ---------------------------------------------------------------------------------------------
// URLs

/// `{base_url}/2010-04-01/Accounts/{account_sid}/Calls.json`: where calls are created.
pub fn calls_url(base_url: &str, account_sid: &str) -> String {
    format!("{}/{API_VERSION}/Accounts/{account_sid}/Calls.json", base_url.trim_end_matches('/'))
}

/// `{base_url}/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json`: one call's resource.
pub fn call_url(base_url: &str, account_sid: &str, call_sid: &str) -> String {
    format!("{}/{API_VERSION}/Accounts/{account_sid}/Calls/{call_sid}.json", base_url.trim_end_matches('/'))
}

/// `{public_url}/api/v1/providers/twilio/status?call_id={id}&attempt={n}`: the `StatusCallback` of
/// one attempt. The callback route should rebuild the URL it verifies with this same function
/// from the `call_id` and `attempt` it parsed (rather than from the request line, which a reverse
/// proxy may have rewritten), so that it checks the signature over the URL Twilio was given.
pub fn status_callback_url(public_url: &str, call_id: CallId, attempt: u32) -> String {
    format!("{}{STATUS_CALLBACK_PATH}?call_id={call_id}&attempt={attempt}", public_url.trim_end_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Call status and outcomes

/// A call's status as Twilio names it, in the call resource and in status callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];

    /// Twilio's name: `queued`, `initiated`, `ringing`, `in-progress`, `completed`, `busy`,
    /// `no-answer`, `failed`, `canceled`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    /// Twilio's exact (lowercase) name; anything else is `None`.
    pub fn parse(text: &str) -> Option<CallStatus> {
        CallStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the call has ended: `completed`, `busy`, `no-answer`, `failed` or `canceled`.
    pub fn is_final(self) -> bool {
        matches!(self, CallStatus::Completed | CallStatus::Busy | CallStatus::NoAnswer | CallStatus::Failed | CallStatus::Canceled)
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether Twilio's `AnsweredBy` says a machine (or a fax) took the call: `machine_start`,
/// `machine_end_beep`, `machine_end_silence`, `machine_end_other`, `fax`. `human` and `unknown`
/// (detection could not tell) are not.
pub fn answered_by_machine(answered_by: &str) -> bool {
    answered_by.starts_with("machine_") || answered_by.starts_with("fax")
}

/// Which outcome each final Twilio status counts as (`provider.outcomes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeMap {
    /// `completed`, answered by a person (or by nobody that detection could name).
    pub completed: Outcome,
    pub busy: Outcome,
    pub no_answer: Outcome,
    pub failed: Outcome,
    pub canceled: Outcome,
    /// `completed` with `AnsweredBy` `machine_…` or `fax` (answering machine detection on).
    pub machine: Outcome,
}

impl Default for OutcomeMap {
    /// `{completed: PICKED, busy: RNR, no-answer: RNR, failed: FAILED, canceled: FAILED, machine: RNR}`.
    fn default() -> Self {
        OutcomeMap {
            completed: Outcome::Picked,
            busy: Outcome::Rnr,
            no_answer: Outcome::Rnr,
            failed: Outcome::Failed,
            canceled: Outcome::Failed,
            machine: Outcome::Rnr,
        }
    }
}

/// A `provider.outcomes` entry that cannot be used; `key` is the entry's key as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {problem}")]
pub struct OutcomeMapError {
    pub key: String,
    pub problem: String,
}

impl OutcomeMap {
    /// The keys, as written in the configuration (`no_answer` is accepted for `no-answer`).
    pub const KEYS: [&'static str; 6] = ["completed", "busy", "no-answer", "failed", "canceled", "machine"];

    /// Builds the map from configuration entries; keys not given keep their default. Values are
    /// outcome names in any case (`PICKED`, `rnr`, …). Errors name the key: an unknown key, a key
    /// given twice (`no-answer` and `no_answer`), or a value that is not an outcome.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(entries: impl IntoIterator<Item = (K, V)>) -> Result<OutcomeMap, OutcomeMapError> {
        let mut map = OutcomeMap::default();
        let mut seen = [false; 6];
        for (key, value) in entries {
            let (key, value) = (key.as_ref(), value.as_ref());
            let error = |problem: String| OutcomeMapError { key: key.to_string(), problem };
            let canonical = if key == "no_answer" { "no-answer" } else { key };
            let index = OutcomeMap::KEYS
                .iter()
                .position(|k| *k == canonical)
                .ok_or_else(|| error(format!("not a final Twilio call status; the keys are {}", OutcomeMap::KEYS.join(", "))))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(error("given twice".into()));
            }
            let outcome = Outcome::parse(&value.trim().to_ascii_uppercase())
                .ok_or_else(|| error(format!("`{value}` is not an outcome (PICKED, DISCONNECTED, RNR or FAILED)")))?;
            *map.slot(index) = outcome;
        }
        Ok(map)
    }

    fn slot(&mut self, index: usize) -> &mut Outcome {
        match index {
            0 => &mut self.completed,
            1 => &mut self.busy,
            2 => &mut self.no_answer,
            3 => &mut self.failed,
            4 => &mut self.canceled,
            _ => &mut self.machine,
        }
    }

    /// Every key with its outcome, in [`OutcomeMap::KEYS`] order (for `check-config`).
    pub fn entries(&self) -> [(&'static str, Outcome); 6] {
        let values = [self.completed, self.busy, self.no_answer, self.failed, self.canceled, self.machine];
        std::array::from_fn(|i| (OutcomeMap::KEYS[i], values[i]))
    }

    /// The outcome of a final status, `None` for a status that is not final (`queued`,
    /// `initiated`, `ringing`, `in-progress`). `completed` uses `machine` when `answered_by`
    /// names a machine or a fax ([`answered_by_machine`]).
    pub fn outcome(&self, status: CallStatus, answered_by: Option<&str>) -> Option<Outcome> {
        match status {
            CallStatus::Completed if answered_by.is_some_and(answered_by_machine) => Some(self.machine),
            CallStatus::Completed => Some(self.completed),
            CallStatus::Busy => Some(self.busy),
            CallStatus::NoAnswer => Some(self.no_answer),
            CallStatus::Failed => Some(self.failed),
            CallStatus::Canceled => Some(self.canceled),
            CallStatus::Queued | CallStatus::Initiated | CallStatus::Ringing | CallStatus::InProgress => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The dial request

/// What the call does once answered: inline TwiML (`Twiml`) or a URL that returns it (`Url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFlow {
    Twiml(String),
    Url(String),
}

/// Answering machine detection (`MachineDetection`). Off is `None` where it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineDetection {
    /// Returns as soon as it knows who answered (`AnsweredBy` `human`, `machine_start`, `fax`, `unknown`).
    Enable,
    /// Waits for the end of a machine's greeting (`machine_end_beep`, `machine_end_silence`, …).
    DetectMessageEnd,
}

impl MachineDetection {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineDetection::Enable => "Enable",
            MachineDetection::DetectMessageEnd => "DetectMessageEnd",
        }
    }

    /// `off` (or empty) → `None`; `Enable`, `DetectMessageEnd` in any case → on.
    pub fn parse(text: &str) -> Result<Option<MachineDetection>, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "off" => Ok(None),
            "enable" => Ok(Some(MachineDetection::Enable)),
            "detectmessageend" => Ok(Some(MachineDetection::DetectMessageEnd)),
            _ => Err(format!("`{text}` must be off, Enable or DetectMessageEnd")),
        }
    }
}

/// One attempt's create-call request (`POST` [`calls_url`], form-encoded, Basic auth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialForm {
    /// The callee, E.164.
    pub to: String,
    /// The caller id, E.164 (a Twilio number or a verified caller id of the account).
    pub from: String,
    pub call_flow: CallFlow,
    /// The attempt's [`status_callback_url`].
    pub status_callback: String,
    /// How long Twilio lets it ring before `no-answer` (at most [`RING_TIMEOUT_SECONDS_MAX`]).
    pub ring_timeout_seconds: u32,
    pub machine_detection: Option<MachineDetection>,
}

impl DialForm {
    /// The form fields with Twilio's names: `To`, `From`, `Twiml` or `Url`, `StatusCallback`,
    /// `StatusCallbackMethod=POST`, one `StatusCallbackEvent` per [`STATUS_CALLBACK_EVENTS`],
    /// `Timeout`, and `MachineDetection` only when it is on.
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut form = vec![("To".to_string(), self.to.clone()), ("From".to_string(), self.from.clone())];
        form.push(match &self.call_flow {
            CallFlow::Twiml(twiml) => ("Twiml".to_string(), twiml.clone()),
            CallFlow::Url(url) => ("Url".to_string(), url.clone()),
        });
        form.push(("StatusCallback".to_string(), self.status_callback.clone()));
        form.push(("StatusCallbackMethod".to_string(), "POST".to_string()));
        form.extend(STATUS_CALLBACK_EVENTS.iter().map(|event| ("StatusCallbackEvent".to_string(), event.to_string())));
        form.push(("Timeout".to_string(), self.ring_timeout_seconds.to_string()));
        if let Some(detection) = self.machine_detection {
            form.push(("MachineDetection".to_string(), detection.as_str().to_string()));
        }
        form
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// A call resource (the `201` answer to a dial, and the answer to `GET` [`call_url`]). Only the
/// fields callmgr reads; Twilio's other fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallResource {
    /// `CA` and 32 hex digits: the attempt's `external_call_id`.
    pub sid: String,
    pub status: CallStatus,
    /// Seconds, once the call has ended. Twilio writes it as a string (`"15"`), SignalWire as a
    /// number: both are read; it is written as a string, like Twilio.
    #[serde(default, deserialize_with = "seconds_from_string_or_number", serialize_with = "seconds_as_string")]
    pub duration: Option<u64>,
    #[serde(default)]
    pub answered_by: Option<String>,
    #[serde(default)]
    pub account_sid: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    /// RFC 2822 instants, as Twilio writes them (`Tue, 10 Aug 2010 08:02:17 +0000`).
    #[serde(default)]
    pub date_created: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
}

impl CallResource {
    /// Reads Twilio's call JSON; the error says what is missing or malformed.
    pub fn parse(body: &str) -> Result<CallResource, String> {
        serde_json::from_str(body).map_err(|e| format!("not a Twilio call resource: {e}"))
    }
}

fn seconds_from_string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    match Option::<Seconds>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Seconds::Number(n)) => Ok(Some(n)),
        Some(Seconds::Text(text)) if text.trim().is_empty() => Ok(None),
        Some(Seconds::Text(text)) => {
            text.trim().parse().map(Some).map_err(|_| serde::de::Error::custom(format!("duration `{text}` is not a whole number of seconds")))
        }
    }
}

fn seconds_as_string<S: Serializer>(seconds: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match seconds {
        Some(n) => serializer.serialize_str(&n.to_string()),
        None => serializer.serialize_none(),
    }
}

/// Twilio's error answer: `{"code": 21211, "message": "…", "more_info": "https://…", "status": 400}`
/// (authentication errors add `detail`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwilioError {
    #[serde(default)]
    pub code: Option<u64>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default)]
    pub more_info: Option<String>,
    /// The HTTP status, repeated in the body.
    #[serde(default)]
    pub status: Option<u16>,
}

impl TwilioError {
    /// An error with Twilio's documentation link for `code`.
    pub fn new(code: u64, status: u16, message: impl Into<String>) -> TwilioError {
        TwilioError {
            code: Some(code),
            message: message.into(),
            detail: None,
            more_info: Some(format!("https://www.twilio.com/docs/errors/{code}")),
            status: Some(status),
        }
    }

    /// The error in an answer body, or `None` when the body is not Twilio's error JSON (a proxy's
    /// HTML page, an empty body): the caller then reports the status and an excerpt instead.
    pub fn parse(body: &str) -> Option<TwilioError> {
        serde_json::from_str::<TwilioError>(body).ok().filter(|e| !e.message.trim().is_empty())
    }
}

impl fmt::Display for TwilioError {
    /// `Twilio error 21211: The 'To' number 5551234567 is not a valid phone number.`, with
    /// ` (detail)` when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "Twilio error {code}: {}", self.message)?,
            None => write!(f, "Twilio error: {}", self.message)?,
        }
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The status callback

/// A form field of a status callback that is missing or malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FormFieldError {
    /// Twilio's field name (`CallSid`, `CallStatus`, …).
    pub field: &'static str,
    pub problem: String,
}

/// What callmgr reads from a status callback form; Twilio's other fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCallback {
    pub call_sid: String,
    pub call_status: CallStatus,
    /// `CallDuration`, seconds: sent with the `completed` event (0 when nobody answered).
    pub call_duration: Option<u64>,
    /// `AnsweredBy`, only with answering machine detection.
    pub answered_by: Option<String>,
    /// `SequenceNumber`: the order Twilio sent this call's callbacks in, from 0. Callbacks can
    /// arrive out of order; a non-final status after the final one must change nothing.
    pub sequence_number: Option<u64>,
    /// `Timestamp`, RFC 2822, as Twilio wrote it.
    pub timestamp: Option<String>,
}

impl StatusCallback {
    /// Reads the form pairs (from [`parse_form`]). `CallSid` and `CallStatus` are required;
    /// empty optional fields count as absent; a field given twice is refused.
    pub fn parse(params: &[(String, String)]) -> Result<StatusCallback, FormFieldError> {
        let field = |name: &'static str| -> Result<Option<&str>, FormFieldError> {
            let mut values = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.trim());
            let first = values.next();
            if values.next().is_some() {
                return Err(FormFieldError { field: name, problem: "given more than once".into() });
            }
            Ok(first.filter(|v| !v.is_empty()))
        };
        let number = |name: &'static str| -> Result<Option<u64>, FormFieldError> {
            field(name)?.map(|v| v.parse::<u64>().map_err(|_| FormFieldError { field: name, problem: format!("`{v}` is not a whole number") })).transpose()
        };
        let call_sid = field("CallSid")?.ok_or(FormFieldError { field: "CallSid", problem: "missing".into() })?.to_string();
        let status_text = field("CallStatus")?.ok_or(FormFieldError { field: "CallStatus", problem: "missing".into() })?;
        let call_status = CallStatus::parse(status_text)
            .ok_or_else(|| FormFieldError { field: "CallStatus", problem: format!("`{status_text}` is not a Twilio call status") })?;
        Ok(StatusCallback {
            call_sid,
            call_status,
            call_duration: number("CallDuration")?,
            answered_by: field("AnsweredBy")?.map(str::to_string),
            sequence_number: number("SequenceNumber")?,
            timestamp: field("Timestamp")?.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// Twilio's published example (its webhook security guide).
    fn published_example() -> (&'static str, Vec<(String, String)>) {
        let params =
            pairs(&[("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"), ("From", "+12349013030"), ("To", "+18005551212")]);
        ("https://mycompany.com/myapp.php?foo=1&bar=2", params)
    }

    #[test]
    fn signature_matches_twilios_published_example() {
        let (url, params) = published_example();
        assert_eq!(signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        // The order the fields arrive in does not matter: they are sorted by name.
        let mut reversed = params.clone();
        reversed.reverse();
        assert_eq!(signature("12345", url, &reversed), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn verify_accepts_the_signature_and_refuses_any_change() {
        let (url, params) = published_example();
        assert!(verify("12345", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify("12346", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), "another token");
        assert!(!verify("12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), "another URL");
        let mut changed = params.clone();
        changed[2].1 = "1235".into();
        assert!(!verify("12345", url, &changed, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), "another value");
        let mut added = params.clone();
        added.push(("CallStatus".into(), "completed".into()));
        assert!(!verify("12345", url, &added, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="), "an added field");
        assert!(!verify("12345", url, &params, ""), "empty header");
        assert!(!verify("12345", url, &params, "not base64!"), "garbage header");
        assert!(!verify("12345", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDg"), "truncated");
    }

    proptest::proptest! {
        /// Any request verifies against its own signature, whatever order its fields arrive in,
        /// and stops verifying when the URL changes.
        #[test]
        fn signature_verifies_in_any_field_order(
            token in "[ -~]{1,40}",
            url in "https?://[a-z]{1,10}\\.com/[a-z?=&]{0,20}",
            params in proptest::collection::vec(("[A-Za-z]{1,12}", "[ -~]{0,20}"), 0..8),
            rotation in 0usize..8,
        ) {
            let expected = signature(&token, &url, &params);
            proptest::prop_assert!(verify(&token, &url, &params, &expected));
            let mut reordered = params.clone();
            if !reordered.is_empty() {
                let by = rotation % reordered.len();
                reordered.rotate_left(by);
                let last = reordered.len() - 1;
                reordered.swap(0, last);
            }
            proptest::prop_assert_eq!(signature(&token, &url, &reordered), expected.clone());
            let other_url = format!("{url}x");
            proptest::prop_assert!(!verify(&token, &other_url, &params, &expected));
        }
    }

    #[test]
    fn form_round_trips_through_percent_encoding() {
        let form = parse_form(b"To=%2B14155550100&Twiml=%3CResponse%3E%3CSay%3EHi+there%3C%2FSay%3E%3C%2FResponse%3E&Empty=");
        assert_eq!(form, pairs(&[("To", "+14155550100"), ("Twiml", "<Response><Say>Hi there</Say></Response>"), ("Empty", "")]));
    }

    #[test]
    fn basic_authorization_is_base64_of_sid_colon_token() {
        // "AC123:secret" in base64.
        assert_eq!(basic_authorization("AC123", "secret"), "Basic QUMxMjM6c2VjcmV0");
    }

    #[test]
    fn urls() {
        assert_eq!(calls_url("https://api.twilio.com/", "AC1"), "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json");
        assert_eq!(calls_url("https://x.signalwire.com/api/laml", "AC1"), "https://x.signalwire.com/api/laml/2010-04-01/Accounts/AC1/Calls.json");
        assert_eq!(call_url("https://api.twilio.com", "AC1", "CA9"), "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls/CA9.json");
        let id = CallId::parse("0190a5c4-0000-7000-8000-000000000001").unwrap();
        assert_eq!(
            status_callback_url("https://dialer.example.com/", id, 2),
            "https://dialer.example.com/api/v1/providers/twilio/status?call_id=0190a5c4-0000-7000-8000-000000000001&attempt=2"
        );
    }

    #[test]
    fn call_status_names_round_trip_and_finality() {
        for status in CallStatus::ALL {
            assert_eq!(CallStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(CallStatus::parse("in-progress"), Some(CallStatus::InProgress));
        assert_eq!(CallStatus::parse("no-answer"), Some(CallStatus::NoAnswer));
        assert_eq!(CallStatus::parse("Completed"), None);
        assert_eq!(CallStatus::parse("no_answer"), None);
        let finals: Vec<_> = CallStatus::ALL.into_iter().filter(|s| s.is_final()).map(CallStatus::as_str).collect();
        assert_eq!(finals, ["completed", "busy", "no-answer", "failed", "canceled"]);
    }

    #[test]
    fn default_outcome_map() {
        let map = OutcomeMap::default();
        let expected = [
            (CallStatus::Completed, Some(Outcome::Picked)),
            (CallStatus::Busy, Some(Outcome::Rnr)),
            (CallStatus::NoAnswer, Some(Outcome::Rnr)),
            (CallStatus::Failed, Some(Outcome::Failed)),
            (CallStatus::Canceled, Some(Outcome::Failed)),
            (CallStatus::Queued, None),
            (CallStatus::Initiated, None),
            (CallStatus::Ringing, None),
            (CallStatus::InProgress, None),
        ];
        for (status, outcome) in expected {
            assert_eq!(map.outcome(status, None), outcome, "{status}");
        }
    }

    #[test]
    fn answered_by_a_machine_uses_the_machine_entry() {
        let map = OutcomeMap { machine: Outcome::Disconnected, ..OutcomeMap::default() };
        for machine in ["machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"] {
            assert_eq!(map.outcome(CallStatus::Completed, Some(machine)), Some(Outcome::Disconnected), "{machine}");
        }
        for person in ["human", "unknown", ""] {
            assert_eq!(map.outcome(CallStatus::Completed, Some(person)), Some(Outcome::Picked), "{person}");
        }
        // Only `completed` looks at AnsweredBy.
        assert_eq!(map.outcome(CallStatus::Busy, Some("machine_start")), Some(Outcome::Rnr));
    }

    #[test]
    fn outcome_map_parses_and_names_the_bad_key() {
        let map = OutcomeMap::parse([("busy", "disconnected"), ("no_answer", "FAILED"), ("machine", "PICKED")]).unwrap();
        assert_eq!(map, OutcomeMap { busy: Outcome::Disconnected, no_answer: Outcome::Failed, machine: Outcome::Picked, ..OutcomeMap::default() });
        assert_eq!(OutcomeMap::parse(Vec::<(String, String)>::new()).unwrap(), OutcomeMap::default());
        let all: std::collections::BTreeMap<String, String> = OutcomeMap::KEYS.iter().map(|k| (k.to_string(), "FAILED".to_string())).collect();
        assert!(OutcomeMap::parse(&all).unwrap().entries().iter().all(|(_, o)| *o == Outcome::Failed));

        let error = OutcomeMap::parse([("ringing", "RNR")]).unwrap_err();
        assert_eq!(error.key, "ringing");
        assert!(error.to_string().starts_with("`ringing`: not a final Twilio call status"), "{error}");
        let error = OutcomeMap::parse([("busy", "MAYBE")]).unwrap_err();
        assert_eq!(error.key, "busy");
        assert_eq!(error.to_string(), "`busy`: `MAYBE` is not an outcome (PICKED, DISCONNECTED, RNR or FAILED)");
        let error = OutcomeMap::parse([("no-answer", "RNR"), ("no_answer", "RNR")]).unwrap_err();
        assert_eq!((error.key.as_str(), error.problem.as_str()), ("no_answer", "given twice"));
    }

    #[test]
    fn outcome_map_entries_list_every_key() {
        let entries = OutcomeMap::default().entries();
        assert_eq!(entries.map(|(k, _)| k), OutcomeMap::KEYS);
        assert_eq!(entries[0], ("completed", Outcome::Picked));
        assert_eq!(entries[5], ("machine", Outcome::Rnr));
    }

    #[test]
    fn dial_form_uses_twilios_names() {
        let form = DialForm {
            to: "+14155550100".into(),
            from: "+14155550000".into(),
            call_flow: CallFlow::Twiml("<Response><Say>Hello</Say></Response>".into()),
            status_callback: "https://d.example.com/api/v1/providers/twilio/status?call_id=x&attempt=1".into(),
            ring_timeout_seconds: 30,
            machine_detection: None,
        };
        assert_eq!(
            form.to_form(),
            pairs(&[
                ("To", "+14155550100"),
                ("From", "+14155550000"),
                ("Twiml", "<Response><Say>Hello</Say></Response>"),
                ("StatusCallback", "https://d.example.com/api/v1/providers/twilio/status?call_id=x&attempt=1"),
                ("StatusCallbackMethod", "POST"),
                ("StatusCallbackEvent", "completed"),
                ("Timeout", "30"),
            ])
        );
        let with_url =
            DialForm { call_flow: CallFlow::Url("https://d.example.com/flow.xml".into()), machine_detection: Some(MachineDetection::DetectMessageEnd), ..form }
                .to_form();
        assert!(with_url.contains(&("Url".into(), "https://d.example.com/flow.xml".into())));
        assert!(!with_url.iter().any(|(n, _)| n == "Twiml"));
        assert_eq!(with_url.last().unwrap(), &("MachineDetection".to_string(), "DetectMessageEnd".to_string()));
    }

    #[test]
    fn machine_detection_parses() {
        assert_eq!(MachineDetection::parse("off"), Ok(None));
        assert_eq!(MachineDetection::parse(""), Ok(None));
        assert_eq!(MachineDetection::parse("Enable"), Ok(Some(MachineDetection::Enable)));
        assert_eq!(MachineDetection::parse("detectmessageend"), Ok(Some(MachineDetection::DetectMessageEnd)));
        assert!(MachineDetection::parse("on").unwrap_err().contains("`on`"));
    }

    #[test]
    fn call_resource_reads_twilios_json_and_ignores_the_rest() {
        // Trimmed from Twilio's documented example, with its string duration and extra fields.
        let body = r#"{
            "account_sid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "annotation": null, "answered_by": null,
            "api_version": "2010-04-01", "caller_name": null, "date_created": "Tue, 31 Aug 2010 20:36:28 +0000",
            "date_updated": "Tue, 31 Aug 2010 20:36:44 +0000", "direction": "outbound-api", "duration": "15",
            "end_time": "Tue, 31 Aug 2010 20:36:44 +0000", "forwarded_from": "+141586753093", "from": "+14158675308",
            "from_formatted": "(415) 867-5308", "group_sid": null, "parent_call_sid": null, "phone_number_sid": "PNXXXXXXXX",
            "price": "-0.03000", "price_unit": "USD", "sid": "CAe1644a7eed5088b159577c5802d8be38", "start_time": "Tue, 31 Aug 2010 20:36:29 +0000",
            "status": "completed", "subresource_uris": {"notifications": "/x.json"}, "to": "+14158675309",
            "to_formatted": "(415) 867-5309", "trunk_sid": null, "uri": "/2010-04-01/Accounts/AC/Calls/CA.json", "queue_time": "1000"
        }"#;
        let call = CallResource::parse(body).unwrap();
        assert_eq!(call.sid, "CAe1644a7eed5088b159577c5802d8be38");
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.duration, Some(15));
        assert_eq!(call.answered_by, None);
        assert_eq!(call.to.as_deref(), Some("+14158675309"));
        // A queued call has no duration yet; SignalWire writes the duration as a number.
        assert_eq!(CallResource::parse(r#"{"sid":"CA1","status":"queued","duration":null}"#).unwrap().duration, None);
        assert_eq!(CallResource::parse(r#"{"sid":"CA1","status":"queued"}"#).unwrap().duration, None);
        assert_eq!(CallResource::parse(r#"{"sid":"CA1","status":"completed","duration":20}"#).unwrap().duration, Some(20));
        assert_eq!(CallResource::parse(r#"{"sid":"CA1","status":"completed","duration":""}"#).unwrap().duration, None);
        assert!(CallResource::parse(r#"{"sid":"CA1","status":"completed","duration":"ten"}"#).unwrap_err().contains("ten"));
        assert!(CallResource::parse(r#"{"sid":"CA1","status":"dialling"}"#).is_err());
        assert!(CallResource::parse(r#"{"status":"queued"}"#).unwrap_err().contains("sid"));
        // Written back with a string duration, as Twilio does, and read again.
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["duration"], "15");
        assert_eq!(CallResource::parse(&json.to_string()).unwrap(), call);
    }

    #[test]
    fn twilio_error_parses_and_displays() {
        let body = r#"{"code": 21211, "message": "The 'To' number 5551234567 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        let error = TwilioError::parse(body).unwrap();
        assert_eq!(error, TwilioError::new(21211, 400, "The 'To' number 5551234567 is not a valid phone number."));
        assert_eq!(error.to_string(), "Twilio error 21211: The 'To' number 5551234567 is not a valid phone number.");
        let auth = r#"{"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.", "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#;
        assert_eq!(TwilioError::parse(auth).unwrap().to_string(), "Twilio error 20003: Authenticate (Your AccountSid or AuthToken was incorrect.)");
        assert_eq!(TwilioError::parse(r#"{"message": "Busy"}"#).unwrap().to_string(), "Twilio error: Busy");
        assert_eq!(TwilioError::parse("<html>Bad gateway</html>"), None);
        assert_eq!(TwilioError::parse(""), None);
        assert_eq!(TwilioError::parse(r#"{"code": 1}"#), None);
        assert_eq!(TwilioError::parse(r#"{"code": 1, "message": " "}"#), None);
    }

    #[test]
    fn status_callback_parses_the_fields_it_needs() {
        let form = pairs(&[
            ("AccountSid", "AC1"),
            ("CallSid", "CA0123"),
            ("CallStatus", "completed"),
            ("CallDuration", "42"),
            ("AnsweredBy", "human"),
            ("SequenceNumber", "3"),
            ("Timestamp", "Tue, 31 Aug 2010 20:36:44 +0000"),
            ("CallbackSource", "call-progress-events"),
        ]);
        let callback = StatusCallback::parse(&form).unwrap();
        assert_eq!(
            callback,
            StatusCallback {
                call_sid: "CA0123".into(),
                call_status: CallStatus::Completed,
                call_duration: Some(42),
                answered_by: Some("human".into()),
                sequence_number: Some(3),
                timestamp: Some("Tue, 31 Aug 2010 20:36:44 +0000".into()),
            }
        );
        let ringing = StatusCallback::parse(&pairs(&[("CallSid", "CA0123"), ("CallStatus", "ringing"), ("AnsweredBy", "")])).unwrap();
        assert_eq!((ringing.call_status, ringing.call_duration, ringing.answered_by), (CallStatus::Ringing, None, None));
    }

    #[test]
    fn status_callback_errors_name_the_field() {
        let check = |form: &[(&str, &str)], field: &str, problem: &str| {
            let error = StatusCallback::parse(&pairs(form)).unwrap_err();
            assert_eq!(error.field, field);
            assert!(error.problem.contains(problem), "{error}");
        };
        check(&[("CallStatus", "completed")], "CallSid", "missing");
        check(&[("CallSid", ""), ("CallStatus", "completed")], "CallSid", "missing");
        check(&[("CallSid", "CA1")], "CallStatus", "missing");
        check(&[("CallSid", "CA1"), ("CallStatus", "answered")], "CallStatus", "`answered` is not a Twilio call status");
        check(&[("CallSid", "CA1"), ("CallStatus", "completed"), ("CallDuration", "1.5")], "CallDuration", "`1.5` is not a whole number");
        check(&[("CallSid", "CA1"), ("CallStatus", "completed"), ("SequenceNumber", "-1")], "SequenceNumber", "whole number");
        check(&[("CallSid", "CA1"), ("CallStatus", "ringing"), ("CallStatus", "completed")], "CallStatus", "more than once");
        assert_eq!(StatusCallback::parse(&pairs(&[("CallStatus", "completed")])).unwrap_err().to_string(), "CallSid: missing");
    }
}
