//! The mock's Twilio side: `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` checks HTTP Basic
//! auth and the form like Twilio (answering Twilio's error JSON), answers `201` with a queued call
//! resource, then sends the status callbacks the request asked for, form-encoded and signed with
//! `X-Twilio-Signature`; `GET …/Calls/{CallSid}.json` answers the call's resource as it stands.
//! Twilio has no idempotency key, so every create request is a new call, as with Twilio.
//!
//! A call's drawn outcome becomes a final Twilio status ([`twilio_final_status`]): PICKED →
//! `completed` (with `CallDuration`, and `AnsweredBy=human` when `MachineDetection` was asked),
//! RNR → `no-answer`, DISCONNECTED → `busy`, FAILED → `failed`. Twilio has no "disconnected":
//! with the default `provider.outcomes` a `busy` comes back as RNR, so DISCONNECTED in the mix
//! reaches callmgr as RNR unless `outcomes.busy` is set to DISCONNECTED.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{Delivery, MockProvider, Protocol, Shared};
use crate::core::model::Outcome;
use crate::protocol::twilio::{self as wire, CallResource, CallStatus, TwilioError};

/// Calls kept for `GET …/Calls/{sid}.json`; the oldest is forgotten first (then it answers 404).
const CALL_RECORDS_MAX: usize = 100_000;

/// The final Twilio status the mock reports for an outcome drawn from the mix.
pub fn twilio_final_status(outcome: Outcome) -> CallStatus {
    match outcome {
        Outcome::Picked => CallStatus::Completed,
        Outcome::Rnr => CallStatus::NoAnswer,
        Outcome::Disconnected => CallStatus::Busy,
        Outcome::Failed => CallStatus::Failed,
    }
}

/// An instant as Twilio writes it: `Tue, 31 Aug 2010 20:36:28 +0000`.
pub(super) fn rfc2822(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// One created call, with its whole drawn timeline; its status at any moment follows from it.
struct MockCall {
    account_sid: String,
    to: String,
    from: String,
    created_at: jiff::Timestamp,
    created: Instant,
    /// From creation to the answer (picked calls only).
    answered_after: Option<Duration>,
    /// From creation to the end of the call.
    ended_after: Duration,
    final_status: CallStatus,
    talk_seconds: u64,
    machine_detection: bool,
}

impl MockCall {
    fn status_at(&self, elapsed: Duration) -> CallStatus {
        if elapsed >= self.ended_after {
            self.final_status
        } else if self.answered_after.is_some_and(|answered| elapsed >= answered) {
            CallStatus::InProgress
        } else {
            CallStatus::Ringing
        }
    }

    fn resource(&self, sid: &str, now: Instant) -> CallResource {
        let elapsed = now.saturating_duration_since(self.created);
        let status = self.status_at(elapsed);
        let at = |offset: Duration| rfc2822(self.created_at + jiff::SignedDuration::try_from(offset).unwrap_or_default());
        let answered = self.answered_after.is_some_and(|answered| elapsed >= answered);
        CallResource {
            sid: sid.to_string(),
            status,
            // Twilio leaves the duration empty for busy, failed, unanswered and ongoing calls.
            duration: (status == CallStatus::Completed).then_some(self.talk_seconds),
            answered_by: (self.machine_detection && answered).then(|| "human".to_string()),
            account_sid: Some(self.account_sid.clone()),
            to: Some(self.to.clone()),
            from: Some(self.from.clone()),
            direction: Some("outbound-api".to_string()),
            date_created: Some(at(Duration::ZERO)),
            start_time: Some(at(Duration::ZERO)),
            end_time: status.is_final().then(|| at(self.ended_after)),
        }
    }

    /// The fields every status callback of this call carries.
    fn callback_params(&self, sid: &str, sequence_number: u64, status: CallStatus) -> Vec<(String, String)> {
        [
            ("CallSid", sid),
            ("AccountSid", &self.account_sid),
            ("From", &self.from),
            ("To", &self.to),
            ("Direction", "outbound-api"),
            ("ApiVersion", wire::API_VERSION),
            ("CallbackSource", "call-progress-events"),
            ("SequenceNumber", &sequence_number.to_string()),
            ("CallStatus", status.as_str()),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }
}

/// The calls created, bounded: the oldest is forgotten first.
#[derive(Default)]
pub(super) struct CallRecords {
    by_sid: HashMap<String, MockCall>,
    order: VecDeque<String>,
}

impl CallRecords {
    fn insert(&mut self, sid: String, call: MockCall) {
        if self.order.len() >= CALL_RECORDS_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_sid.remove(&oldest);
        }
        self.order.push_back(sid.clone());
        self.by_sid.insert(sid, call);
    }
}

/// Twilio's error answer.
fn error_response(error: TwilioError) -> Response {
    let status = error.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(&error)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Twilio API\""));
    }
    response
}

fn refuse(shared: &Shared, code: u64, status: u16, message: impl Into<String>) -> Response {
    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
    error_response(TwilioError::new(code, status, message))
}

/// Checks HTTP Basic auth (`account_sid:auth_token`, compared in constant time) and that the
/// path names that account.
fn authorize(shared: &Shared, headers: &HeaderMap, path_account_sid: &str, path: &str) -> Result<(), TwilioError> {
    let Protocol::Twilio { account_sid, auth_token } = &shared.settings.protocol else {
        return Err(TwilioError::new(20404, 404, "The mock provider is not in Twilio mode"));
    };
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic")).map(|(_, encoded)| encoded.trim().to_string()))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let valid = credentials.as_deref().and_then(|c| c.split_once(':')).is_some_and(|(user, password)| {
        // Both halves are compared, whatever the first gives, so the time says nothing.
        let user_ok = user.as_bytes().ct_eq(account_sid.as_bytes());
        let password_ok = password.as_bytes().ct_eq(auth_token.as_bytes());
        bool::from(user_ok & password_ok)
    });
    if !valid {
        let mut error = TwilioError::new(20003, 401, "Authenticate");
        error.detail = Some("Your AccountSid or AuthToken was incorrect.".into());
        return Err(error);
    }
    if path_account_sid != account_sid {
        return Err(TwilioError::new(20404, 404, format!("The requested resource {path} was not found")));
    }
    Ok(())
}

/// `+` and 8 to 15 digits, the first not 0: what the mock accepts as a phone number.
fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'))
}

fn is_absolute_http_url(text: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| text.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')))
}

/// The events a create request asked for: `StatusCallbackEvent` repeated, or space-separated as
/// in TwiML. Twilio's default, when none is given, is `completed` only.
fn requested_events(form: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut events = Vec::new();
    for (_, value) in form.iter().filter(|(n, _)| n == "StatusCallbackEvent") {
        for event in value.split_whitespace() {
            let event = event.to_ascii_lowercase();
            if !["initiated", "ringing", "answered", "completed"].contains(&event.as_str()) {
                return Err(event);
            }
            events.push(event);
        }
    }
    if events.is_empty() {
        events.push("completed".to_string());
    }
    Ok(events)
}

pub(super) async fn create_call(State(mock): State<MockProvider>, Path(path_account_sid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let shared = &*mock.0;
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let path = format!("/{}/Accounts/{path_account_sid}/Calls.json", wire::API_VERSION);
    if let Err(error) = authorize(shared, &headers, &path_account_sid, &path) {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        return error_response(error);
    }
    let form = wire::parse_form(&body);
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());

    let Some(to) = field("To") else { return refuse(shared, 21201, 400, "No 'To' number is specified") };
    if !is_e164(to) {
        return refuse(shared, 21211, 400, format!("The 'To' number {to} is not a valid phone number."));
    }
    let Some(from) = field("From") else { return refuse(shared, 21213, 400, "No 'From' number is specified") };
    if !is_e164(from) {
        return refuse(shared, 21212, 400, format!("The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."));
    }
    match (field("Twiml"), field("Url")) {
        (None, None) => return refuse(shared, 21205, 400, "Url parameter is required."),
        (None, Some(url)) if !is_absolute_http_url(url) => return refuse(shared, 21205, 400, format!("Url is not a valid URL: {url}")),
        _ => {}
    }
    let status_callback = field("StatusCallback");
    if let Some(url) = status_callback
        && !is_absolute_http_url(url)
    {
        return refuse(shared, 21609, 400, format!("The StatusCallback URL {url} is not a valid URL."));
    }
    if let Some(method) = field("StatusCallbackMethod")
        && !method.eq_ignore_ascii_case("POST")
    {
        // Twilio also takes GET; the mock sends status callbacks by POST only.
        return refuse(shared, 21200, 400, format!("StatusCallbackMethod {method}: the mock provider supports POST only"));
    }
    let events = match requested_events(&form) {
        Ok(events) => events,
        Err(event) => return refuse(shared, 21626, 400, format!("Invalid 'StatusCallbackEvent': {event}")),
    };
    if let Some(timeout) = field("Timeout")
        && timeout.parse::<u32>().is_err()
    {
        return refuse(shared, 21200, 400, format!("Timeout {timeout} is not a whole number of seconds"));
    }
    let machine_detection = match field("MachineDetection").map(wire::MachineDetection::parse) {
        None => false,
        Some(Ok(detection)) => detection.is_some(),
        Some(Err(problem)) => return refuse(shared, 21200, 400, format!("MachineDetection {problem}")),
    };
    if shared.full() {
        return refuse(shared, 20429, 429, "Too Many Requests");
    }

    let (sid, draw) = {
        let mut dice = shared.dice.lock().unwrap();
        let sid = format!("CA{:016x}{:016x}", dice.next(), dice.next());
        (sid, shared.draw(&mut dice))
    };
    let created = Instant::now();
    let call = MockCall {
        account_sid: path_account_sid.clone(),
        to: to.to_string(),
        from: from.to_string(),
        created_at: jiff::Timestamp::now(),
        created,
        answered_after: (draw.outcome == Outcome::Picked).then(|| draw.ring_and_talk.saturating_sub(Duration::from_secs(draw.talk_seconds))),
        ended_after: draw.ring_and_talk,
        final_status: twilio_final_status(draw.outcome),
        talk_seconds: draw.talk_seconds,
        machine_detection,
    };
    // The answer describes the call as just created, whatever its drawn timeline says.
    let queued = CallResource { status: CallStatus::Queued, duration: None, answered_by: None, end_time: None, ..call.resource(&sid, created) };
    let mut answer = serde_json::to_value(queued).expect("a call resource serialises");
    answer["api_version"] = wire::API_VERSION.into();
    answer["uri"] = format!("/{}/Accounts/{path_account_sid}/Calls/{sid}.json", wire::API_VERSION).into();

    shared.active.lock().unwrap().insert(sid.clone(), to.to_string());
    let url = shared.settings.callback_url.as_deref().or(status_callback).map(str::to_string);
    schedule_callbacks(shared, &sid, &call, &events, url);
    shared.twilio_calls.lock().unwrap().insert(sid, call);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// Queues the status callbacks `events` asked for, in Twilio's order, numbered from 0. Without a
/// callback URL only the bookkeeping of the call's end is queued.
fn schedule_callbacks(shared: &Shared, sid: &str, call: &MockCall, events: &[String], url: Option<String>) {
    let Some(url) = url else {
        shared.enqueue(call.created + call.ended_after, sid, true, Delivery::Nothing);
        return;
    };
    let wants = |event: &str| events.iter().any(|e| e == event);
    let mut sequence_number = 0;
    let mut queue = |offset: Duration, status: CallStatus, is_final: bool, extra: Vec<(String, String)>| {
        let mut params = call.callback_params(sid, sequence_number, status);
        params.extend(extra);
        sequence_number += 1;
        shared.enqueue(call.created + offset, sid, is_final, Delivery::Twilio { url: url.clone(), params });
    };
    let answered_by = || if call.machine_detection { vec![("AnsweredBy".to_string(), "human".to_string())] } else { Vec::new() };
    if wants("initiated") {
        queue(Duration::ZERO, CallStatus::Initiated, false, Vec::new());
    }
    if wants("ringing") {
        queue(Duration::ZERO, CallStatus::Ringing, false, Vec::new());
    }
    if let Some(answered) = call.answered_after
        && wants("answered")
    {
        queue(answered, CallStatus::InProgress, false, answered_by());
    }
    if wants("completed") {
        let mut extra = vec![("CallDuration".to_string(), call.talk_seconds.to_string())];
        if call.final_status == CallStatus::Completed {
            extra.extend(answered_by());
        }
        queue(call.ended_after, call.final_status, true, extra);
    } else {
        shared.enqueue(call.created + call.ended_after, sid, true, Delivery::Nothing);
    }
}

pub(super) async fn fetch_call(State(mock): State<MockProvider>, Path((path_account_sid, call_file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let shared = &*mock.0;
    let path = format!("/{}/Accounts/{path_account_sid}/Calls/{call_file}", wire::API_VERSION);
    if let Err(error) = authorize(shared, &headers, &path_account_sid, &path) {
        return error_response(error);
    }
    let resource =
        call_file.strip_suffix(".json").and_then(|sid| shared.twilio_calls.lock().unwrap().by_sid.get(sid).map(|call| call.resource(sid, Instant::now())));
    match resource {
        Some(resource) => (StatusCode::OK, axum::Json(resource)).into_response(),
        None => error_response(TwilioError::new(20404, 404, format!("The requested resource {path} was not found"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_and_url_checks() {
        assert!(is_e164("+14155550100"));
        assert!(!is_e164("14155550100"));
        assert!(!is_e164("+0415555010"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1415555010012345"));
        assert!(!is_e164("+1415-555-0100"));
        assert!(is_absolute_http_url("http://127.0.0.1:9/x?y=1"));
        assert!(is_absolute_http_url("https://d.example.com"));
        assert!(!is_absolute_http_url("/api/v1/providers/twilio/status"));
        assert!(!is_absolute_http_url("ftp://d.example.com/x"));
        assert!(!is_absolute_http_url("http://"));
    }

    #[test]
    fn requested_events_default_to_completed() {
        let form = |values: &[&str]| values.iter().map(|v| ("StatusCallbackEvent".to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(requested_events(&[]).unwrap(), ["completed"]);
        assert_eq!(requested_events(&form(&["ringing", "completed"])).unwrap(), ["ringing", "completed"]);
        assert_eq!(requested_events(&form(&["initiated ringing Answered"])).unwrap(), ["initiated", "ringing", "answered"]);
        assert_eq!(requested_events(&form(&["hangup"])).unwrap_err(), "hangup");
    }

    #[test]
    fn every_mix_outcome_round_trips_through_the_default_outcome_map() {
        let map = wire::OutcomeMap::default();
        let back = |outcome| map.outcome(twilio_final_status(outcome), None);
        assert_eq!(back(Outcome::Picked), Some(Outcome::Picked));
        assert_eq!(back(Outcome::Rnr), Some(Outcome::Rnr));
        assert_eq!(back(Outcome::Failed), Some(Outcome::Failed));
        // Twilio has no "disconnected": it is reported as busy, which the default map reads as RNR.
        assert_eq!(back(Outcome::Disconnected), Some(Outcome::Rnr));
        assert!(Outcome::ALL.iter().all(|o| twilio_final_status(*o).is_final()));
    }

    #[test]
    fn rfc2822_is_twilios_format() {
        let at: jiff::Timestamp = "2010-08-31T20:36:28Z".parse().unwrap();
        assert_eq!(rfc2822(at), "Tue, 31 Aug 2010 20:36:28 +0000");
    }
}
