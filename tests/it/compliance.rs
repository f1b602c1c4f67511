//! Calling hours, the do-not-call list and the callee's timezone against the real binary.
//! Calling hours open a few seconds after the test starts, so "outside" and "at the opening"
//! both happen within the test, at any hour of the day.

use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use serde_json::json;

use crate::harness::*;

const ALL_DAYS: &str = "[monday, tuesday, wednesday, thursday, friday, saturday, sunday]";

/// Rules whose calling hours open `lead` from now (UTC, every day) for up to an hour; returns
/// the rules and the opening instant.
fn hours_opening_in(lead: Duration) -> (String, Timestamp) {
    let opening = Timestamp::now().checked_add(lead).unwrap();
    let opening = Timestamp::from_second(opening.as_second() + 1).unwrap();
    let start = opening.strftime("%H:%M:%S").to_string();
    let end_instant = opening.checked_add(1.hour()).unwrap();
    let same_day = end_instant.strftime("%Y-%m-%d").to_string() == opening.strftime("%Y-%m-%d").to_string();
    let end = if same_day { end_instant.strftime("%H:%M:%S").to_string() } else { "24:00".to_string() };
    let rules = format!(
        "timezone: UTC\ndefaults: {{max_attempts: 3, retry_interval_minutes: 60}}\ncalling_hours: {{days: {ALL_DAYS}, start_time: \"{start}\", end_time: \"{end}\"}}\n"
    );
    (rules, opening)
}

fn add_number_in_utc(server: &Server, campaign: u64, phone: &str) {
    let (status, body) = server.post("/api/v1/phone-numbers/", json!({"campaign_id": campaign, "phone_numbers": [{"phone_number": phone, "timezone": "UTC"}]}));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn a_call_outside_calling_hours_is_held_and_dialled_at_the_opening() {
    let provider = FakeProvider::start();
    let (rules, opening) = hours_opening_in(Duration::from_secs(5));
    let server = Server::start(Options { provider_url: provider.url(), retry_yaml: rules, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "hours"}));
    add_number_in_utc(&server, campaign, &phone(1));
    let call = server.initiate(campaign, &phone(1));
    let id = call["call_id"].as_str().unwrap();
    let held = wait_until("the call to be held", Duration::from_secs(10), || {
        let call = server.call(id);
        (call["held_reason"] == "outside_calling_hours").then_some(call)
    });
    let next_dial_at: Timestamp = held["next_dial_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(next_dial_at, opening, "{held}");
    let stats = server.get(&format!("/api/v1/campaigns/{campaign}/"))["stats"].clone();
    assert_eq!(stats["held"]["outside_calling_hours"], 1, "{stats}");
    assert_eq!(stats["next_dial_at"], held["next_dial_at"]);
    assert_eq!(provider.count(), 0, "not dialled before the opening");
    // The opening as an `Instant`, to compare with when the provider saw the dial.
    let opening_instant = Instant::now() + Timestamp::now().duration_until(opening).unsigned_abs();
    let dialled = provider.wait_count(1);
    assert!(dialled[0].at + Duration::from_millis(5) >= opening_instant, "dialled before the opening");
    let late = dialled[0].at.saturating_duration_since(opening_instant);
    assert!(late < Duration::from_secs(1), "dialled {late:?} after the opening");
}

#[test]
fn a_held_call_survives_a_crash_and_is_dialled_at_the_opening() {
    let provider = FakeProvider::start();
    let (rules, opening) = hours_opening_in(Duration::from_secs(6));
    let mut server = Server::start(Options { provider_url: provider.url(), retry_yaml: rules, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "hours"}));
    add_number_in_utc(&server, campaign, &phone(2));
    let id = server.initiate(campaign, &phone(2))["call_id"].as_str().unwrap().to_string();
    wait_until("the call to be held", Duration::from_secs(10), || (server.call(&id)["held_reason"] == "outside_calling_hours").then_some(()));
    server.kill();
    server.launch();
    assert_eq!(server.call(&id)["held_reason"], "outside_calling_hours", "still held after the restart");
    let dialled = provider.wait_count(1);
    assert_eq!(dialled[0].call_id, id);
    assert!(Timestamp::now() >= opening, "dialled before the opening");
}

#[test]
fn a_number_listed_while_its_call_waits_is_never_dialled() {
    let provider = FakeProvider::start();
    let (rules, opening) = hours_opening_in(Duration::from_secs(5));
    let server = Server::start(Options { provider_url: provider.url(), retry_yaml: rules, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "dnc"}));
    add_number_in_utc(&server, campaign, &phone(3));
    add_number_in_utc(&server, campaign, &phone(4));
    let listed = server.initiate(campaign, &phone(3))["call_id"].as_str().unwrap().to_string();
    let other = server.initiate(campaign, &phone(4))["call_id"].as_str().unwrap().to_string();
    wait_until("both calls to be held", Duration::from_secs(10), || (server.call(&other)["held_reason"] == "outside_calling_hours").then_some(()));
    let (status, body) = server.post("/api/v1/dnc/", json!({"phone_numbers": [phone(3)], "reason": "asked not to be called"}));
    assert_eq!((status, body["added_count"].as_u64()), (201, Some(1)), "{body}");
    let cancelled = server.wait_status(&listed, "CANCELLED");
    assert_eq!(cancelled["error_message"], "Number is on the do-not-call list");
    // After the opening the other call is dialled; the listed one never is.
    provider.wait_count(1);
    assert!(Timestamp::now() >= opening);
    let dialled: Vec<String> = provider.dialled().into_iter().map(|d| d.call_id).collect();
    assert_eq!(dialled, vec![other]);
    let (status, body) = server.post("/api/v1/initiate-call/", json!({"phone_number": phone(3), "campaign_id": campaign}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("do_not_call")), "{body}");
    assert_eq!(body["error"]["details"]["phone_number"], phone(3));
    let stats = server.get(&format!("/api/v1/campaigns/{campaign}/"))["stats"].clone();
    assert_eq!(stats["cancelled_dnc"], 1, "{stats}");
}

#[test]
fn bad_compliance_input_is_refused_and_changes_nothing() {
    let server = Server::start(Options::default());
    let (status, body) = server.post("/api/v1/campaigns/", json!({"name": "x", "timezone": "Mars/Olympus"}));
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (400, Some("timezone")), "{body}");
    let campaign = server.create_campaign(json!({"name": "y"}));
    let (status, body) =
        server.post("/api/v1/phone-numbers/", json!({"campaign_id": campaign, "phone_numbers": [{"phone_number": phone(5), "timezone": "Nowhere/City"}]}));
    assert_eq!((status, body["created_count"].as_u64()), (201, Some(0)), "{body}");
    assert!(body["errors"][0]["reason"].as_str().unwrap().contains("Nowhere/City"), "{body}");
    let (status, body) = server.post("/api/v1/dnc/", json!({"phone_numbers": ["not a number"]}));
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (400, Some("phone_numbers[0]")), "{body}");
    assert!(server.get("/api/v1/dnc/")["results"].as_array().unwrap().is_empty());
    let (status, body) = server.post("/api/v1/dnc/", json!({"phone_numbers": [phone(6)], "surprise": true}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("surprise"), "{body}");

    // The rules file: a calling-hours slot ending before it starts, and an empty day list.
    for (rules, expected) in [
        ("calling_hours: {days: [monday], start_time: \"21:00\", end_time: \"08:00\"}\n", "end_time 08:00 is before start_time 21:00"),
        ("calling_hours: {days: [], start_time: \"08:00\", end_time: \"21:00\"}\n", "days is empty"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let retry = dir.path().join("retry.yaml");
        std::fs::write(&retry, rules).unwrap();
        let config = dir.path().join("callmgr.yaml");
        std::fs::write(&config, format!("tokens: [{TOKEN}]\nprovider: {{url: builtin-mock}}\nretry_config: {}\n", retry.display())).unwrap();
        let out = std::process::Command::new(binary()).args(["check-config", "--config"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("calling_hours") && stderr.contains(expected), "{stderr}");
    }
}

/// A +1 212 number given without a timezone is in New York for calling hours, whatever the rules
/// file's zone: the hold ends at the New York opening.
#[test]
fn a_new_york_number_without_a_timezone_is_held_per_new_york_time() {
    let provider = FakeProvider::start();
    let new_york = jiff::tz::TimeZone::get("America/New_York").unwrap();
    let opening = Timestamp::from_second(Timestamp::now().as_second() + 6).unwrap();
    let local = opening.to_zoned(new_york.clone());
    let end = local.checked_add(1.hour()).unwrap();
    let end = if end.date() == local.date() { end.strftime("%H:%M:%S").to_string() } else { "24:00".to_string() };
    let rules = format!(
        "timezone: UTC\ndefaults: {{max_attempts: 3, retry_interval_minutes: 60}}\ncalling_hours: {{days: {ALL_DAYS}, start_time: \"{}\", end_time: \"{end}\"}}\n",
        local.strftime("%H:%M:%S")
    );
    let server = Server::start(Options { provider_url: provider.url(), retry_yaml: rules, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "new york"}));
    let id = server.initiate(campaign, "+12125550142")["call_id"].as_str().unwrap().to_string();
    let held = wait_until("the call to be held", Duration::from_secs(10), || {
        let call = server.call(&id);
        (call["held_reason"] == "outside_calling_hours").then_some(call)
    });
    assert_eq!((held["timezone"].as_str(), held["timezone_source"].as_str()), (Some("America/New_York"), Some("inferred")), "{held}");
    assert_eq!(held["next_dial_at"].as_str().unwrap().parse::<Timestamp>().unwrap(), opening, "{held}");
    provider.wait_count(1);
    assert!(Timestamp::now() >= opening, "dialled before the New York opening");
}

/// Numbers are read with libphonenumber's rules: a `(0)` trunk prefix goes, national formats
/// need a default region, and a refusal says which rule failed.
#[test]
fn phone_numbers_follow_the_numbering_plans() {
    let server = Server::start(Options::default());
    let campaign = server.create_campaign(json!({"name": "plans"}));
    let call = server.initiate(campaign, "+44 (0)20 7946 0958");
    assert_eq!(call["phone_number"], "+442079460958");
    let refused = |phone: &str| {
        let (status, body) = server.post("/api/v1/initiate-call/", json!({"phone_number": phone, "campaign_id": campaign}));
        assert_eq!((status, body["error"]["details"]["field"].as_str()), (400, Some("phone_number")), "{phone}: {body}");
        body["error"]["message"].as_str().unwrap().to_string()
    };
    assert!(refused("+999 12345678").contains("country calling code +999 does not exist"));
    assert!(refused("+44 20 79").contains("too short"));
    assert!(refused("020 7946 0959").contains("default region"));
    assert!(refused("+1234567890").contains("too short"), "the reference system's test number needs phone_validation: shape");
    let (status, _) = server.request("PATCH", &format!("/api/v1/campaigns/{campaign}/"), Some(&json!({"default_region": "gb"})));
    assert_eq!(status, 200);
    assert_eq!(server.initiate(campaign, "020 7946 0959")["phone_number"], "+442079460959");
    let (status, body) = server.request("PATCH", &format!("/api/v1/campaigns/{campaign}/"), Some(&json!({"default_region": "XX"})));
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (400, Some("default_region")), "{body}");

    let legacy = Server::start(Options { extra_yaml: "phone_validation: shape\n".into(), ..Options::default() });
    let campaign = legacy.create_campaign(json!({"name": "legacy"}));
    assert_eq!(legacy.initiate(campaign, "+1234567890")["phone_number"], "+1234567890");
}
