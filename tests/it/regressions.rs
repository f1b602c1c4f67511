//! Regression tests, each named after what it protects, each failing on the build before its fix
//! (run them against an older binary with `TEST_CALLMGR_BINARY=path cargo test --test it regressions`).

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::json;

use crate::harness::*;

/// Retries allowed 10:00–12:00 local on every day; the rules file's own zone is UTC.
const NARROW_WINDOW: &str = "timezone: UTC\n\
    defaults: {max_attempts: 3, retry_interval_minutes: 60}\n\
    global_rules:\n  - name: late morning\n    days: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]\n    time_slots: [{start_time: \"10:00\", end_time: \"12:00\"}]\n";

fn local_hour(rfc3339: &str, zone: &str) -> i8 {
    let at: Timestamp = rfc3339.parse().unwrap();
    at.to_zoned(TimeZone::get(zone).unwrap()).hour()
}

/// A call recovered in flight after a restart times out, and its retry is computed in its
/// campaign's timezone. (Before, the campaign came from a cache that was empty at boot, and the
/// retry landed in the rules file's zone: 01:00 in Los Angeles.)
#[test]
fn retry_after_a_restart_uses_the_campaigns_timezone() {
    let provider = FakeProvider::start();
    let mut server =
        Server::start(Options { provider_url: provider.url(), callback_timeout: "2s".into(), retry_yaml: NARROW_WINDOW.into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "LA", "timezone": "America/Los_Angeles"}));
    let call = server.initiate(campaign, &phone(1));
    let call_id = call["call_id"].as_str().unwrap().to_string();
    server.wait_status(&call_id, "PROCESSING");
    // Crash while the call waits for its outcome; nothing touches the campaign after the restart.
    server.kill();
    server.launch();
    let retrying = wait_until("the callback timeout after the restart", Duration::from_secs(30), || {
        let call = server.call(&call_id);
        (call["status"] == "RETRYING").then_some(call)
    });
    let hour = local_hour(retrying["next_retry_at"].as_str().unwrap(), "America/Los_Angeles");
    assert!((10..12).contains(&hour), "next_retry_at {} is {hour}:xx in Los Angeles, outside 10:00-12:00", retrying["next_retry_at"]);
}

/// A call in flight when its campaign is stopped ends when its outcome arrives, instead of
/// being scheduled for a retry that can never run. (Before, it became RETRYING, then INITIATED
/// attempt 2, and waited forever.)
#[test]
fn stopping_a_campaign_while_a_call_is_in_flight_ends_the_call() {
    let provider = FakeProvider::start();
    let server = Server::start(Options { provider_url: provider.url(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "stop me"}));
    let call = server.initiate(campaign, &phone(2));
    let call_id = call["call_id"].as_str().unwrap().to_string();
    server.wait_status(&call_id, "PROCESSING");
    let (status, _) = server.post(&format!("/api/v1/campaigns/{campaign}/stop/"), json!({}));
    assert_eq!(status, 200);
    let (status, answer) = server.callback(json!({"call_id": call_id, "status": "RNR"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["retry_scheduled"].as_bool()), (Some("CANCELLED"), Some(false)), "{answer}");
    let stored = server.call(&call_id);
    assert_eq!((stored["status"].as_str(), stored["error_message"].as_str()), (Some("CANCELLED"), Some("Campaign stopped")), "{stored}");
    assert_eq!(provider.count(), 1, "never dialled again");
}
