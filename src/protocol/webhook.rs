//! callmgr's own provider protocol (`provider.kind: webhook`): the JSON dial request and its
//! answer, the outcome callback body, and the optional `X-Callmgr-Signature` on callbacks.
//! Pure values and functions; it must not send, receive, read the clock or touch the store.
//!
//! The conversation: callmgr `POST`s a [`DialRequest`] to `provider.url` with
//! [`IDEMPOTENCY_KEY_HEADER`] = [`idempotency_key`]; a 2xx answer may name the provider's id
//! ([`parse_dial_answer`]). Later the provider `PUT`s a [`Callback`] to the request's
//! `callback_url`, with a `provider`-role token and, when `provider.callback_secret` is set,
//! [`SIGNATURE_HEADER`] = [`callback_signature`] of the raw body.

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::core::model::{CampaignId, Outcome};

/// The header that makes resends of one attempt recognisable: [`idempotency_key`].
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The header that signs a callback's raw body: [`callback_signature`].
pub const SIGNATURE_HEADER: &str = "X-Callmgr-Signature";

/// `{call_id}:{attempt}`: the same for every resend of one attempt, different for each attempt.
pub fn idempotency_key(call_id: &str, attempt: u32) -> String {
    format!("{call_id}:{attempt}")
}

/// The dial request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialRequest {
    /// The call's UUID, hyphenated.
    pub call_id: String,
    /// The callee, E.164.
    pub phone_number: String,
    pub campaign_id: CampaignId,
    pub campaign_name: String,
    /// 1 for the first dial of the call.
    pub attempt: u32,
    /// Where the provider sends the outcome ([`Callback`], by `PUT`).
    pub callback_url: String,
}

#[derive(Deserialize)]
struct DialAnswer {
    #[serde(default)]
    external_call_id: Option<serde_json::Value>,
}

/// The provider's id for the call from a 2xx answer body `{"external_call_id": …}`: a non-empty
/// string, or a number written as its decimal text. `None` when the body has none (an empty body
/// or other JSON is a valid answer that simply names no id).
pub fn parse_dial_answer(body: &str) -> Option<String> {
    match serde_json::from_str::<DialAnswer>(body).ok()?.external_call_id? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The outcome callback body the provider sends (`PUT callback_url`). The API reads it
/// field by field to name a bad field in its error; this type is the shape a provider writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub call_id: String,
    pub status: Outcome,
    /// Seconds of conversation (0 when nobody answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_call_id: Option<String>,
    /// The attempt this outcome is for, from the dial request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

fn callback_key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// `sha256=` and the lowercase hex HMAC-SHA256, keyed by `secret`, of the raw callback body.
pub fn callback_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", super::hex_lower(hmac::sign(&callback_key(secret), body).as_ref()))
}

/// Whether `header` (the [`SIGNATURE_HEADER`]) signs `body`, compared in constant time. The
/// `sha256=` prefix is required; the hex digits may be in either case.
pub fn verify_callback_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else { return false };
    let Some(tag) = super::hex_decode(hex) else { return false };
    hmac::verify(&callback_key(secret), body, &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_signature_matches_a_known_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(callback_signature("Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn verify_callback_signature_accepts_only_the_right_signature() {
        let body = br#"{"call_id":"c","status":"PICKED"}"#;
        let header = callback_signature("s3cret", body);
        assert!(verify_callback_signature("s3cret", body, &header));
        assert!(verify_callback_signature("s3cret", body, &header.to_ascii_uppercase().replace("SHA256=", "sha256=")));
        assert!(!verify_callback_signature("other", body, &header), "another secret");
        assert!(!verify_callback_signature("s3cret", br#"{"call_id":"c","status":"RNR"}"#, &header), "another body");
        assert!(!verify_callback_signature("s3cret", body, header.trim_start_matches("sha256=")), "no prefix");
        assert!(!verify_callback_signature("s3cret", body, &header[..header.len() - 2]), "truncated");
        assert!(!verify_callback_signature("s3cret", body, "sha256=zz"), "not hex");
        assert!(!verify_callback_signature("s3cret", body, ""), "empty");
    }

    #[test]
    fn dial_answer_names_the_external_id() {
        assert_eq!(parse_dial_answer(r#"{"external_call_id": "ext-1"}"#), Some("ext-1".into()));
        assert_eq!(parse_dial_answer(r#"{"external_call_id": 12345, "other": true}"#), Some("12345".into()));
        assert_eq!(parse_dial_answer(r#"{"external_call_id": ""}"#), None);
        assert_eq!(parse_dial_answer(r#"{"external_call_id": null}"#), None);
        assert_eq!(parse_dial_answer(r#"{"ok": true}"#), None);
        assert_eq!(parse_dial_answer(""), None);
        assert_eq!(parse_dial_answer("accepted"), None);
    }

    #[test]
    fn dial_request_and_callback_shapes() {
        let request = DialRequest {
            call_id: "0190a5c4-0000-7000-8000-000000000001".into(),
            phone_number: "+14155550100".into(),
            campaign_id: 7,
            campaign_name: "Spring".into(),
            attempt: 2,
            callback_url: "http://127.0.0.1:8000/api/v1/callback/".into(),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"call_id": "0190a5c4-0000-7000-8000-000000000001", "phone_number": "+14155550100",
                "campaign_id": 7, "campaign_name": "Spring", "attempt": 2, "callback_url": "http://127.0.0.1:8000/api/v1/callback/"})
        );
        assert_eq!(idempotency_key(&request.call_id, request.attempt), "0190a5c4-0000-7000-8000-000000000001:2");
        let callback = Callback { call_id: "c".into(), status: Outcome::Rnr, call_duration: Some(0), external_call_id: None, attempt: Some(2) };
        assert_eq!(serde_json::to_value(&callback).unwrap(), serde_json::json!({"call_id": "c", "status": "RNR", "call_duration": 0, "attempt": 2}));
    }
}
