//! Retry windows end to end: the real binary, a scripted provider, short intervals, and rules
//! built relative to the current time.

use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::json;

fn rnr(call_id: &str, attempt: u64) -> serde_json::Value {
    json!({"call_id": call_id, "status": "RNR", "attempt": attempt})
}

#[test]
fn rnr_retries_after_the_interval_until_attempts_run_out() {
    let provider = FakeProvider::start();
    let server =
        Server::start(Options { provider_url: provider.url(), retry_yaml: "defaults: {max_attempts: 3, retry_interval: 2s}\n".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "retries"}));
    let id = server.initiate(campaign, "+14155550101")["call_id"].as_str().unwrap().to_string();
    for attempt in 1..=3u64 {
        let dialled = provider.wait_count(attempt as usize);
        let this = &dialled[attempt as usize - 1];
        assert_eq!((this.attempt, this.idempotency_key.clone()), (attempt, format!("{id}:{attempt}")));
        if attempt > 1 {
            let gap = this.at - dialled[attempt as usize - 2].at;
            assert!(gap >= Duration::from_millis(1900), "retry {attempt} came after {gap:?}, before the 2 s interval");
        }
        server.wait_status(&id, "PROCESSING");
        let sent = Instant::now();
        let (code, answer) = server.callback(rnr(&id, attempt));
        assert_eq!(code, 200, "{answer}");
        if attempt < 3 {
            assert_eq!(answer["status"], "RETRYING");
            let call = server.call(&id);
            assert_eq!((call["status"].as_str(), call["last_outcome"].as_str()), (Some("RETRYING"), Some("RNR")));
            let next = provider.wait_count(attempt as usize + 1);
            // Fires within a second of next_retry_at, not on a polling period.
            let waited = next[attempt as usize].at.duration_since(sent);
            assert!(waited < Duration::from_millis(3500), "retry took {waited:?} for a 2 s interval");
        } else {
            assert_eq!(answer["status"], "FAILED");
            assert_eq!(answer["retry_scheduled"], false);
        }
    }
    let call = server.call(&id);
    assert_eq!(call["error_message"], "Max retry attempts reached (3)");
    assert_eq!(call["attempt_count"], 3);
    let today = &server.metrics()["recent_metrics"][0];
    assert_eq!((today["total_calls_rnr"].as_u64(), today["total_retries"].as_u64()), (Some(3), Some(2)));
}

/// `HH:MM` of a UTC instant.
fn hhmm(t: jiff::Timestamp) -> String {
    t.strftime("%H:%M").to_string()
}

#[test]
fn a_closed_window_moves_the_retry_to_its_opening() {
    // One slot every day, opening two hours from now (whole minutes), half an hour long.
    let now = jiff::Timestamp::now();
    let mut opens = now.checked_add(jiff::SignedDuration::from_hours(2)).unwrap();
    opens = jiff::Timestamp::from_second(opens.as_second() - opens.as_second().rem_euclid(60)).unwrap();
    let mut start = hhmm(opens);
    let mut end = hhmm(opens.checked_add(jiff::SignedDuration::from_mins(30)).unwrap());
    if end < start {
        // The half hour would cross midnight: open at midnight instead.
        start = "00:00".into();
        end = "00:30".into();
        let tomorrow = now.to_zoned(jiff::tz::TimeZone::UTC).date().tomorrow().unwrap();
        opens = tomorrow.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
    }
    let retry_yaml = format!(
        "timezone: UTC\ndefaults: {{max_attempts: 3, retry_interval: 1m}}\nglobal_rules:\n  - name: soon\n    days: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]\n    time_slots: [{{start_time: \"{start}\", end_time: \"{end}\"}}]\n"
    );
    let provider = FakeProvider::start();
    let server = Server::start(Options { provider_url: provider.url(), retry_yaml, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "window"}));
    // A number whose timezone cannot be inferred (+1 555): the rules file's zone (UTC) applies.
    let id = server.initiate(campaign, &phone(101))["call_id"].as_str().unwrap().to_string();
    provider.wait_count(1);
    server.wait_status(&id, "PROCESSING");
    let (_, answer) = server.callback(rnr(&id, 1));
    let next: jiff::Timestamp = answer["next_retry_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, opens, "the retry waits for the window's opening");
    assert_eq!(server.call(&id)["next_retry_at"], answer["next_retry_at"]);

    // retry-plan, from the same code, explains the same instant.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_callmgr"))
        .args(["retry-plan", "--config", server.config_path.to_str().unwrap(), "--campaign", &campaign.to_string()])
        .args(["--at", answer["next_retry_at"].as_str().unwrap(), "--status", "RNR", "--attempt", "1"])
        .args(["--url", &server.url(""), "--token", TOKEN])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&format!("campaign {campaign} read from")), "{text}");
    assert!(text.contains("\"soon\""), "names the rule: {text}");
}

#[test]
fn the_callee_timezone_decides_the_window() {
    // 09:00-17:00 every day in the callee's zone; one number in Kolkata, the campaign in New York.
    let retry_yaml = "defaults: {max_attempts: 3, retry_interval: 1m}\nglobal_rules:\n  - name: office\n    days: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]\n    time_slots: [{start_time: \"09:00\", end_time: \"17:00\"}]\n";
    let provider = FakeProvider::start();
    let server = Server::start(Options { provider_url: provider.url(), retry_yaml: retry_yaml.into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "zones", "timezone": "America/New_York"}));
    server.post("/api/v1/phone-numbers/", json!({"campaign_id": campaign, "phone_numbers": [{"phone_number": "+919876543210", "timezone": "Asia/Kolkata"}]}));
    let kolkata = server.initiate(campaign, "+919876543210")["call_id"].as_str().unwrap().to_string();
    let new_york = server.initiate(campaign, "+12125550101")["call_id"].as_str().unwrap().to_string();
    provider.wait_count(2);
    for (id, zone) in [(&kolkata, "Asia/Kolkata"), (&new_york, "America/New_York")] {
        server.wait_status(id, "PROCESSING");
        let (_, answer) = server.callback(rnr(id, 1));
        let next: jiff::Timestamp = answer["next_retry_at"].as_str().unwrap().parse().unwrap();
        let local = next.to_zoned(jiff::tz::TimeZone::get(zone).unwrap());
        let minutes = local.hour() as i32 * 60 + local.minute() as i32;
        assert!((9 * 60..17 * 60).contains(&minutes), "{zone}: retry at {local} is outside 09:00-17:00 local");
    }
}

#[test]
fn pending_retries_survive_sigkill_and_fire_after_restart() {
    let provider = FakeProvider::start();
    let mut server = Server::start(Options {
        provider_url: provider.url(),
        retry_yaml: "defaults: {max_attempts: 3, retry_interval: 8s}\n".into(),
        duplicate_window: "0s".into(),
        ..Options::default()
    });
    let campaign = server.create_campaign(json!({"name": "durable retries"}));
    let ids: Vec<String> = (0..3).map(|n| server.initiate(campaign, &phone(n))["call_id"].as_str().unwrap().to_string()).collect();
    provider.wait_count(3);
    for id in &ids {
        server.wait_status(id, "PROCESSING");
        assert_eq!(server.callback(rnr(id, 1)).0, 200);
    }
    // The gauge follows the scheduler, which hears of the commits just after they answer.
    wait_until("three retries pending", Duration::from_secs(5), || (server.metrics()["retrying"] == 3).then_some(()));
    server.kill();
    server.launch();
    assert_eq!(server.metrics()["retrying"], 3, "the wheel is rebuilt from the store before /readyz");
    let dialled = provider.wait_count(6);
    let mut second: Vec<String> = dialled[3..].iter().map(|d| d.idempotency_key.clone()).collect();
    second.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}:2")).collect();
    expected.sort();
    assert_eq!(second, expected);
}
