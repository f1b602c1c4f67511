//! The `webhook` provider client: callmgr's own JSON dial request with its `Idempotency-Key`
//! (the same for every resend of one attempt, so any failed send may be repeated safely), and
//! how each answer is sorted for the worker.

use std::time::Duration;

use super::{SendOutcome, agent, classify_error, excerpt, read_answer, retry_after};
use crate::protocol::webhook::{self, DialRequest};
use crate::service::events::DialJob;

pub struct WebhookClient {
    agent: ureq::Agent,
    url: String,
    api_key: Option<String>,
}

impl WebhookClient {
    pub fn new(url: String, api_key: Option<String>, timeout: Duration, connections_max: usize) -> WebhookClient {
        WebhookClient { agent: agent(timeout, connections_max), url, api_key }
    }

    pub fn send(&self, job: &DialJob) -> SendOutcome {
        let body = serde_json::to_string(&DialRequest {
            call_id: job.call_id.to_string(),
            phone_number: job.phone_number.clone(),
            campaign_id: job.campaign_id,
            campaign_name: job.campaign_name.to_string(),
            attempt: job.attempt,
            callback_url: job.callback_url.to_string(),
        })
        .expect("the dial request serialises");
        let key = webhook::idempotency_key(&job.call_id.to_string(), job.attempt);
        let mut request = self.agent.post(&self.url).header(webhook::IDEMPOTENCY_KEY_HEADER, &key).content_type("application/json");
        if let Some(api_key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {api_key}"));
        }
        match request.send(&body) {
            Ok(response) => sort_answer(read_answer(response)),
            Err(error) => classify_error(&error),
        }
    }
}

/// 2xx accepted; 429 and 503 throttling; 408 and other 5xx transport failures; other 4xx refusals.
fn sort_answer((status, headers, text): (u16, ureq::http::HeaderMap, String)) -> SendOutcome {
    match status {
        200..=299 => SendOutcome::Accepted(webhook::parse_dial_answer(&text)),
        429 | 503 => SendOutcome::Throttled { retry_after: retry_after(&headers), reason: format!("HTTP {status}: {}", excerpt(&text)) },
        408 => SendOutcome::Ambiguous(format!("HTTP {status}: {}", excerpt(&text))),
        400..=499 => SendOutcome::Refused(format!("HTTP {status}: {}", excerpt(&text))),
        _ => SendOutcome::Ambiguous(format!("HTTP {status}: {}", excerpt(&text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> SendOutcome {
        let mut headers = ureq::http::HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert("retry-after", value.parse().unwrap());
        }
        sort_answer((status, headers, body.to_string()))
    }

    #[test]
    fn answers_are_sorted_by_status() {
        assert_eq!(answer(200, None, r#"{"external_call_id":"x"}"#), SendOutcome::Accepted(Some("x".into())));
        assert_eq!(
            answer(429, Some("7"), "slow down"),
            SendOutcome::Throttled { retry_after: Some(Duration::from_secs(7)), reason: "HTTP 429: slow down".into() }
        );
        assert!(matches!(answer(503, None, ""), SendOutcome::Throttled { retry_after: None, .. }));
        assert!(matches!(answer(500, None, ""), SendOutcome::Ambiguous(_)));
        assert!(matches!(answer(408, None, ""), SendOutcome::Ambiguous(_)));
        assert_eq!(answer(422, None, r#"{"to":"+14155550101"}"#), SendOutcome::Refused(r#"HTTP 422: {"to":"+1415*****01"}"#.into()));
    }
}
