//! The `twilio` provider client: the create-call request as Twilio documents it (form fields,
//! HTTP Basic auth, a `StatusCallback` per attempt), the call resource lookup used by status
//! reconciliation, and how each answer is sorted. Twilio has no idempotency key, so the worker
//! resends only what surely created nothing (no connection, 429, 503).

use std::sync::Arc;
use std::time::Duration;

use super::{SendOutcome, agent, classify_error, excerpt, read_answer, retry_after};
use crate::config::TwilioConfig;
use crate::core::phone::mask_numbers_in;
use crate::protocol::twilio::{self as wire, CallResource, DialForm, OutcomeMap, TwilioError};
use crate::service::events::{DialJob, LookupJob};
use crate::service::writer::LookupResult;

pub struct TwilioClient {
    agent: ureq::Agent,
    base_url: String,
    account_sid: String,
    authorization: String,
    settings: TwilioConfig,
    /// `public_url` or the bound address: the base of every `StatusCallback`.
    public_base: Arc<str>,
}

impl TwilioClient {
    /// `base_url` is where the API is reached (the configured one, or the built-in mock's).
    pub fn new(settings: TwilioConfig, base_url: String, public_base: Arc<str>, timeout: Duration, connections_max: usize) -> TwilioClient {
        TwilioClient {
            agent: agent(timeout, connections_max),
            authorization: wire::basic_authorization(&settings.account_sid, &settings.auth_token),
            account_sid: settings.account_sid.clone(),
            base_url,
            settings,
            public_base,
        }
    }

    /// The form of one attempt's create-call request.
    pub fn dial_form(&self, job: &DialJob) -> Vec<(String, String)> {
        DialForm {
            to: job.phone_number.clone(),
            from: job.caller_id.as_deref().unwrap_or(&self.settings.from).to_string(),
            call_flow: self.settings.call_flow.clone(),
            status_callback: wire::status_callback_url(&self.public_base, job.call_id, job.attempt),
            ring_timeout_seconds: self.settings.ring_timeout_seconds,
            machine_detection: self.settings.machine_detection,
        }
        .to_form()
    }

    pub fn send(&self, job: &DialJob) -> SendOutcome {
        let form = self.dial_form(job);
        let request = self.agent.post(wire::calls_url(&self.base_url, &self.account_sid)).header("Authorization", &self.authorization);
        match request.send_form(form.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            Ok(response) => sort_answer(read_answer(response)),
            Err(error) => classify_error(&error),
        }
    }

    /// Asks Twilio for the call of `job`; its final status becomes an outcome through `outcomes`.
    pub fn lookup(&self, job: &LookupJob) -> LookupResult {
        let url = wire::call_url(&self.base_url, &self.account_sid, &job.external_call_id);
        let response = match self.agent.get(&url).header("Authorization", &self.authorization).call() {
            Ok(response) => response,
            Err(error) => return LookupResult::Unknown { reason: mask_numbers_in(&error.to_string()) },
        };
        let (status, _, text) = read_answer(response);
        match status {
            200 => match CallResource::parse(&text) {
                Ok(call) => read_resource(&call, &self.settings.outcomes),
                Err(problem) => LookupResult::Unknown { reason: mask_numbers_in(&problem) },
            },
            404 => LookupResult::Unknown { reason: format!("the provider does not know call {}", job.external_call_id) },
            _ => LookupResult::Unknown { reason: format!("HTTP {status}: {}", error_text(&text)) },
        }
    }
}

fn read_resource(call: &CallResource, outcomes: &OutcomeMap) -> LookupResult {
    match outcomes.outcome(call.status, call.answered_by.as_deref()) {
        Some(outcome) => LookupResult::Final { outcome, duration_seconds: call.duration, external_call_id: call.sid.clone(), status: call.status.to_string() },
        None => LookupResult::Pending { status: call.status.to_string() },
    }
}

/// Twilio's error (`Twilio error 21211: …`) when the body is one, else an excerpt; numbers masked.
fn error_text(text: &str) -> String {
    match TwilioError::parse(text) {
        Some(error) => mask_numbers_in(&error.to_string()),
        None => excerpt(text),
    }
}

/// 201 (or any 2xx) accepted, with the call's `sid`; 429 and 503 throttling; 408 and other 5xx
/// ambiguous; other 4xx refusals with Twilio's code and message.
fn sort_answer((status, headers, text): (u16, ureq::http::HeaderMap, String)) -> SendOutcome {
    match status {
        200..=299 => SendOutcome::Accepted(CallResource::parse(&text).ok().map(|call| call.sid)),
        429 | 503 => SendOutcome::Throttled { retry_after: retry_after(&headers), reason: format!("HTTP {status}: {}", error_text(&text)) },
        408 => SendOutcome::Ambiguous(format!("HTTP {status}: {}", error_text(&text))),
        400..=499 => SendOutcome::Refused(error_text(&text)),
        _ => SendOutcome::Ambiguous(format!("HTTP {status}: {}", error_text(&text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Outcome;

    fn answer(status: u16, body: &str) -> SendOutcome {
        sort_answer((status, ureq::http::HeaderMap::new(), body.to_string()))
    }

    #[test]
    fn answers_are_sorted_with_twilios_errors() {
        assert_eq!(answer(201, r#"{"sid":"CA1","status":"queued"}"#), SendOutcome::Accepted(Some("CA1".into())));
        let refused = answer(400, r#"{"code":21211,"message":"The 'To' number 5551234567 is not a valid phone number.","status":400}"#);
        assert_eq!(refused, SendOutcome::Refused("Twilio error 21211: The 'To' number 5551****67 is not a valid phone number.".into()));
        assert!(matches!(answer(429, r#"{"code":20429,"message":"Too Many Requests"}"#), SendOutcome::Throttled { .. }));
        assert!(matches!(answer(502, "<html>bad gateway</html>"), SendOutcome::Ambiguous(_)));
    }

    #[test]
    fn a_looked_up_call_maps_through_the_outcomes() {
        let map = OutcomeMap::default();
        let call = |json: &str| read_resource(&CallResource::parse(json).unwrap(), &map);
        assert_eq!(
            call(r#"{"sid":"CA1","status":"completed","duration":"12"}"#),
            LookupResult::Final { outcome: Outcome::Picked, duration_seconds: Some(12), external_call_id: "CA1".into(), status: "completed".into() }
        );
        assert!(matches!(call(r#"{"sid":"CA1","status":"completed","answered_by":"machine_start"}"#), LookupResult::Final { outcome: Outcome::Rnr, .. }));
        assert_eq!(call(r#"{"sid":"CA1","status":"ringing"}"#), LookupResult::Pending { status: "ringing".into() });
    }
}
