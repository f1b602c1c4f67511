//! What goes over the wire: the HTTP API's JSON, and, for each `provider.kind`, the request and
//! answer shapes, status names, URLs and signatures of the provider protocol. Pure values and
//! functions: no HTTP client, no server, no clock, no store. The sending and the receiving live
//! elsewhere.
//!
//! Arrows: `service` (dispatch, the callback routes) → `protocol` → `core::model`;
//! `tools` (the mock provider plays the provider's side) → `protocol`. This layer depends on
//! nothing else in the crate, so both sides of a conversation are built from one definition.
//!
//! * [`api`]: the JSON the HTTP API answers with (the dashboard, importer and bench read it).
//! * [`webhook`]: callmgr's own JSON protocol (dial request, `external_call_id` answer, the
//!   callback body and its optional `X-Callmgr-Signature`).
//! * [`twilio`]: the Twilio Programmable Voice REST API (also spoken by SignalWire's LaML API and
//!   Somleng): the dial form, the call resource, error answers, the status callback form, the
//!   `X-Twilio-Signature`, and how a final call status becomes an [`Outcome`](crate::core::model::Outcome).

pub mod api;
pub mod twilio;
pub mod webhook;

/// Lowercase hexadecimal of `bytes`.
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    out
}

/// The bytes written as hexadecimal (either case), or `None` if `text` is not hexadecimal.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks_exact(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex_decode("000fa0ff"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(hex_decode("000FA0FF"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }
}
