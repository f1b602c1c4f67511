//! Dialing against a fake provider written here: slots, order, request fields, callbacks,
//! provider failures, dead letters, timeouts, campaign control, and a crash with calls in flight.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

fn with_provider(provider: &FakeProvider, options: Options) -> Server {
    Server::start(Options { provider_url: provider.url(), ..options })
}

fn picked(call_id: &str) -> serde_json::Value {
    json!({"call_id": call_id, "status": "PICKED", "call_duration": 42})
}

#[test]
fn twenty_calls_over_five_slots_go_out_in_acceptance_order_never_above_five() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options { max_concurrent_calls: 5, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "slots", "max_attempts": 1}));
    let accepted: Vec<String> = (0..20).map(|n| server.initiate(campaign, &phone(n))["call_id"].as_str().unwrap().to_string()).collect();

    let first = provider.wait_count(5);
    let metrics = wait_until("15 calls queued", Duration::from_secs(10), || {
        let m = server.metrics();
        (m["queue_depth"] == 15).then_some(m)
    });
    assert_eq!(metrics["current_concurrent_calls"], 5);
    assert_eq!(provider.count(), 5, "exactly five dialled");
    // The first five leave in one batch to five workers, so they may reach the provider in any order.
    let first: HashSet<String> = first.iter().map(|d| d.call_id.clone()).collect();
    assert_eq!(first, accepted[..5].iter().cloned().collect::<HashSet<_>>());

    // Each outcome frees one slot, which the next call in acceptance order takes at once.
    for done in 0..20 {
        let dialled = provider.dialled();
        let (code, _) = server.callback(picked(&dialled[done].call_id));
        assert_eq!(code, 200);
        let expected = (done + 6).min(20);
        let now = provider.wait_count(expected);
        assert!(now.len() - (done + 1) <= 5, "in flight {} > 5", now.len() - (done + 1));
    }
    // After that, each freed slot dispatches exactly one call: the next in acceptance order.
    let order: Vec<String> = provider.dialled().iter().map(|d| d.call_id.clone()).collect();
    assert_eq!(order[5..], accepted[5..], "dispatched in acceptance order");
    wait_until("all picked", Duration::from_secs(10), || (server.metrics()["calls_by_status"]["PICKED"] == 20).then_some(()));
    let today = &server.metrics()["recent_metrics"][0];
    assert_eq!(today["peak_concurrent_calls"], 5);
    assert_eq!(today["total_calls_picked"], 20);
    assert_eq!(today["total_call_duration"], 20 * 42);
}

#[test]
fn the_dial_request_carries_the_fields_and_the_idempotency_key() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options { extra_yaml: "public_url: http://callmgr.test:8000\n".into(), ..Options::default() });
    // The api key is set through the reference system's style of override.
    drop(server);
    let server = Server::start(Options {
        provider_url: provider.url(),
        env: vec![("CALLMGR_PROVIDER__API_KEY".into(), "provider-secret".into())],
        ..Options::default()
    });
    let campaign = server.create_campaign(json!({"name": "Fields"}));
    let call = server.initiate(campaign, "+14155550101");
    let id = call["call_id"].as_str().unwrap();
    let dial = &provider.wait_count(1)[0];
    assert_eq!(dial.idempotency_key, format!("{id}:1"));
    assert_eq!(dial.authorization.as_deref(), Some("Bearer provider-secret"));
    assert_eq!(dial.body["call_id"], id);
    assert_eq!(dial.body["phone_number"], "+14155550101");
    assert_eq!(dial.body["campaign_id"], campaign);
    assert_eq!(dial.body["campaign_name"], "Fields");
    assert_eq!(dial.body["attempt"], 1);
    assert_eq!(dial.body["callback_url"], server.url("/api/v1/callback/"));
    let processing = server.wait_status(id, "PROCESSING");
    assert!(processing["last_attempt_at"].is_string());
    wait_until("the external id", Duration::from_secs(10), || (server.call(id)["external_call_id"] == "ext-1").then_some(()));
}

#[test]
fn callbacks_final_idempotent_conflicting_and_validated_first() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options::default());
    let campaign = server.create_campaign(json!({"name": "callbacks"}));
    let id = server.initiate(campaign, "+14155550101")["call_id"].as_str().unwrap().to_string();

    // 400 for a bad status comes before 404 for an unknown call.
    let (code, body) = server.callback(json!({"call_id": "00000000-0000-7000-8000-000000000000", "status": "ANSWERED"}));
    assert_eq!((code, body["error"]["details"]["field"].as_str()), (400, Some("status")));
    let (code, _) = server.callback(json!({"call_id": "00000000-0000-7000-8000-000000000000", "status": "PICKED"}));
    assert_eq!(code, 404);
    let (code, body) = server.callback(json!({"call_id": "nope", "status": "PICKED"}));
    assert_eq!((code, body["error"]["details"]["field"].as_str()), (400, Some("call_id")));
    let (code, body) = server.callback(json!({"call_id": id, "status": "PICKED", "call_duration": -5}));
    assert_eq!((code, body["error"]["details"]["field"].as_str()), (400, Some("call_duration")));
    let (code, body) = server.callback(json!({"call_id": id, "status": "PICKED", "attempt": "one"}));
    assert_eq!((code, body["error"]["details"]["field"].as_str()), (400, Some("attempt")));

    // Not yet dialled: not awaiting an outcome... unless it already is; wait for PROCESSING.
    provider.wait_count(1);
    server.wait_status(&id, "PROCESSING");
    let (code, first) = server.callback(json!({"call_id": id, "status": "PICKED", "call_duration": 42, "external_call_id": "ext-1"}));
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["message"], "Callback processed");
    assert_eq!(first["status"], "PICKED");
    assert_eq!(first["retry_scheduled"], false);
    assert!(first["next_retry_at"].is_null());
    let (code, repeat) = server.callback(json!({"call_id": id, "status": "PICKED", "call_duration": 42}));
    assert_eq!((code, &repeat), (200, &first), "a repeat answers the same");
    let (code, conflict) = server.callback(json!({"call_id": id, "status": "RNR"}));
    assert_eq!((code, conflict["error"]["code"].as_str()), (409, Some("conflict")));
    let call = server.call(&id);
    assert_eq!((call["status"].as_str(), call["total_call_time"].as_u64(), call["last_outcome"].as_str()), (Some("PICKED"), Some(42), Some("PICKED")));
    let today = &server.metrics()["recent_metrics"][0];
    assert_eq!((today["total_calls_picked"].as_u64(), today["total_call_duration"].as_u64()), (Some(1), Some(42)), "a repeat is not counted twice");
}

#[test]
fn a_retryable_outcome_schedules_a_retry_and_a_late_callback_conflicts() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options { retry_yaml: "defaults: {max_attempts: 3, retry_interval: 1s}\n".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "retry"}));
    let id = server.initiate(campaign, "+14155550101")["call_id"].as_str().unwrap().to_string();
    provider.wait_count(1);
    server.wait_status(&id, "PROCESSING");
    let (code, answer) = server.callback(json!({"call_id": id, "status": "RNR", "attempt": 1}));
    assert_eq!(code, 200);
    assert_eq!((answer["status"].as_str(), answer["retry_scheduled"].as_bool()), (Some("RETRYING"), Some(true)));
    assert!(answer["next_retry_at"].is_string());
    let second = provider.wait_count(2);
    assert_eq!(second[1].idempotency_key, format!("{id}:2"));
    server.wait_status(&id, "PROCESSING");
    let (code, _) = server.callback(json!({"call_id": id, "status": "PICKED", "attempt": 1}));
    assert_eq!(code, 409, "attempt 1's outcome is late once attempt 2 is in flight");
    let (code, _) = server.callback(json!({"call_id": id, "status": "RNR", "attempt": 1}));
    assert_eq!(code, 200, "…but a repeat of attempt 1's applied outcome is still the same answer");
    let (code, _) = server.callback(json!({"call_id": id, "status": "PICKED", "attempt": 2}));
    assert_eq!(code, 200);
    assert_eq!(server.call(&id)["attempt_count"], 2);
}

#[test]
fn a_callback_may_overtake_the_providers_answer() {
    let provider = FakeProvider::start();
    provider.set_answer(Answer::Slow(Duration::from_millis(1500)));
    let server = with_provider(&provider, Options::default());
    let campaign = server.create_campaign(json!({"name": "race"}));
    let id = server.initiate(campaign, "+14155550101")["call_id"].as_str().unwrap().to_string();
    provider.wait_count(1);
    server.wait_status(&id, "PROCESSING");
    let (code, _) = server.callback(json!({"call_id": id, "status": "PICKED", "call_duration": 3}));
    assert_eq!(code, 200);
    let call = wait_until("the late answer's external id", Duration::from_secs(10), || {
        let call = server.call(&id);
        (call["external_call_id"] == "ext-1").then_some(call)
    });
    assert_eq!(call["status"], "PICKED");
}

#[test]
fn a_provider_refusal_is_final() {
    let provider = FakeProvider::start();
    provider.set_answer(Answer::Status(422, "{\"error\": \"number barred\"}".into()));
    let server = with_provider(&provider, Options::default());
    let campaign = server.create_campaign(json!({"name": "refused"}));
    let id = server.initiate(campaign, "+14155550101")["call_id"].as_str().unwrap().to_string();
    let call = server.wait_status(&id, "FAILED");
    let message = call["error_message"].as_str().unwrap();
    assert!(message.contains("422") && message.contains("number barred"), "{message}");
    assert_eq!(provider.count(), 1, "a 4xx is not resent");
    assert_eq!(server.get("/api/v1/dlq/")["results"].as_array().unwrap().len(), 0);
}

#[test]
fn transport_failures_are_resent_then_dead_lettered_and_replayable() {
    let provider = FakeProvider::start();
    provider.set_answer(Answer::Status(500, "maintenance".into()));
    let server = with_provider(&provider, Options::default());
    let campaign = server.create_campaign(json!({"name": "dlq", "max_attempts": 1}));
    let id = server.initiate(campaign, "+14155550101")["call_id"].as_str().unwrap().to_string();
    let call = server.wait_status(&id, "FAILED");
    assert!(call["error_message"].as_str().unwrap().contains("Max retry attempts reached (1)"), "{call}");
    let sends = provider.dialled();
    assert_eq!(sends.len(), 3, "max_send_attempts sends");
    assert!(sends.iter().all(|d| d.idempotency_key == format!("{id}:1")), "resends keep the key");
    let dlq = server.get("/api/v1/dlq/");
    let letter = &dlq["results"][0];
    assert_eq!((letter["call_id"].as_str(), letter["attempt"].as_u64()), (Some(id.as_str()), Some(1)));
    assert_eq!(letter["phone_number"], "+14155550101");
    assert!(letter["error"].as_str().unwrap().contains("500"), "{letter}");
    assert!(letter["created_at"].is_string());
    assert_eq!(server.metrics()["recent_metrics"][0]["dlq_entries_created"], 1);

    provider.set_answer(Answer::Accept);
    let letter_id = letter["id"].as_u64().unwrap();
    let (code, replayed) = server.post(&format!("/api/v1/dlq/{letter_id}/replay/"), json!({}));
    assert_eq!(code, 200, "{replayed}");
    assert_eq!(replayed["attempt_count"], 2);
    let dialled = provider.wait_count(4);
    assert_eq!(dialled[3].idempotency_key, format!("{id}:2"));
    let (code, _) = server.post(&format!("/api/v1/dlq/{letter_id}/replay/"), json!({}));
    assert_eq!(code, 409, "a letter is replayed once");
    assert_eq!(server.post("/api/v1/dlq/999/replay/", json!({})).0, 404);
    assert!(server.get("/api/v1/dlq/")["results"][0]["replayed_at"].is_string());
}

#[test]
fn the_callback_timeout_frees_the_slot() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options { max_concurrent_calls: 1, callback_timeout: "1s".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "timeout", "max_attempts": 1}));
    let first = server.initiate(campaign, &phone(1))["call_id"].as_str().unwrap().to_string();
    let second = server.initiate(campaign, &phone(2))["call_id"].as_str().unwrap().to_string();
    provider.wait_count(1);
    let timed_out = server.wait_status(&first, "FAILED");
    assert!(timed_out["error_message"].as_str().unwrap().starts_with("No callback within 1s"), "{timed_out}");
    assert_eq!(timed_out["last_outcome"], "FAILED");
    let dialled = provider.wait_count(2);
    assert_eq!(dialled[1].call_id, second);
    // A callback after the timeout is late.
    assert_eq!(server.callback(picked(&first)).0, 409);
}

#[test]
fn pause_holds_resume_releases_stop_cancels() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options { max_concurrent_calls: 2, ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "control", "is_active": false}));
    let ids: Vec<String> = (0..5).map(|n| server.initiate(campaign, &phone(n))["call_id"].as_str().unwrap().to_string()).collect();
    wait_until("the paused calls counted as held", Duration::from_secs(10), || (server.metrics()["held_by_paused_campaigns"] == 5).then_some(()));
    assert_eq!(provider.count(), 0, "a paused campaign dials nothing");
    assert_eq!(server.post(&format!("/api/v1/campaigns/{campaign}/resume/"), json!({})).0, 200);
    provider.wait_count(2);
    assert_eq!(server.post(&format!("/api/v1/campaigns/{campaign}/pause/"), json!({})).0, 200);
    assert_eq!(server.callback(picked(&ids[0])).0, 200);
    server.wait_status(&ids[0], "PICKED");
    // Freed slot, but paused: still two dialled only.
    wait_until("queue settles", Duration::from_secs(5), || (server.metrics()["current_concurrent_calls"] == 1).then_some(()));
    assert_eq!(provider.count(), 2);
    let (code, stopped) = server.post(&format!("/api/v1/campaigns/{campaign}/stop/"), json!({}));
    assert_eq!((code, stopped["status"].as_str()), (200, Some("stopped")));
    for id in &ids[2..] {
        let call = server.wait_status(id, "CANCELLED");
        assert_eq!(call["error_message"], "Campaign stopped");
    }
    // The call in flight is not cancelled; its outcome still lands.
    assert_eq!(server.call(&ids[1])["status"], "PROCESSING");
    assert_eq!(server.callback(picked(&ids[1])).0, 200);
    assert_eq!(provider.count(), 2);
}

#[test]
fn bulk_and_start_use_the_campaign_numbers() {
    let provider = FakeProvider::start();
    let server = with_provider(&provider, Options { max_concurrent_calls: 3, duplicate_window: "0s".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "bulk"}));
    let numbers: Vec<String> = (0..6).map(phone).collect();
    server.post("/api/v1/phone-numbers/", json!({"campaign_id": campaign, "phone_numbers": numbers}));
    let (code, bulk) = server.post("/api/v1/bulk-initiate-calls/", json!({"campaign_id": campaign, "use_campaign_numbers": true}));
    assert_eq!(code, 201, "{bulk}");
    assert_eq!((bulk["success"].as_bool(), bulk["total_requested"].as_u64(), bulk["failed"].as_u64()), (Some(true), Some(6), Some(0)));
    assert_eq!(bulk["call_ids"].as_array().unwrap().len(), 6);
    assert_eq!(bulk["immediate_processed"].as_u64().unwrap() + bulk["queued_for_later"].as_u64().unwrap(), 6);
    assert!(bulk["immediate_processed"].as_u64().unwrap() <= 3);
    provider.wait_count(3);

    // Explicit list: invalid and duplicate numbers are listed, the rest go through in one commit.
    let (code, mixed) =
        server.post("/api/v1/bulk-initiate-calls/", json!({"campaign_id": campaign, "phone_numbers": [phone(0), "bogus", phone(50), phone(50)]}));
    assert_eq!(code, 201, "{mixed}");
    assert_eq!((mixed["call_ids"].as_array().unwrap().len(), mixed["failed"].as_u64()), (1, Some(3)));
    let failed: Vec<&str> = mixed["failed_numbers"].as_array().unwrap().iter().map(|f| f["phone_number"].as_str().unwrap()).collect();
    assert_eq!(failed, vec![phone(0).as_str(), "bogus", phone(50).as_str()]);
    assert_eq!(server.post("/api/v1/bulk-initiate-calls/", json!({"campaign_id": campaign})).0, 400);
    assert_eq!(server.post("/api/v1/bulk-initiate-calls/", json!({"campaign_id": 999, "phone_numbers": [phone(1)]})).0, 404);

    // start: one call per number; the six already open are skipped.
    let other = server.create_campaign(json!({"name": "start"}));
    server.post("/api/v1/phone-numbers/", json!({"campaign_id": other, "phone_numbers": [phone(200), phone(201)]}));
    let (code, started) = server.post(&format!("/api/v1/campaigns/{other}/start/"), json!({}));
    assert_eq!(code, 201);
    assert_eq!((started["queued"].as_u64(), started["skipped_duplicates"].as_u64()), (Some(2), Some(0)));
    let (_, again) = server.post(&format!("/api/v1/campaigns/{other}/start/"), json!({}));
    assert_eq!((again["queued"].as_u64(), again["skipped_duplicates"].as_u64()), (Some(0), Some(2)));
}

#[test]
fn sigkill_with_calls_in_flight_neither_exceeds_the_limit_nor_dials_twice() {
    let provider = FakeProvider::start();
    let mut server = with_provider(&provider, Options { max_concurrent_calls: 3, duplicate_window: "0s".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "crash", "max_attempts": 1}));
    let ids: Vec<String> = (0..9).map(|n| server.initiate(campaign, &phone(n))["call_id"].as_str().unwrap().to_string()).collect();
    provider.wait_count(3);
    for id in &ids[..3] {
        server.wait_status(id, "PROCESSING");
    }
    server.kill();
    server.launch();
    let metrics = server.metrics();
    assert_eq!(metrics["current_concurrent_calls"], 3, "recovered PROCESSING calls keep their slots");
    assert_eq!(metrics["queue_depth"], 6);
    assert_eq!(provider.count(), 3, "nothing dialled beyond the limit after the restart");
    for (n, id) in ids.iter().enumerate() {
        let dialled = provider.wait_count(n + 1);
        assert!(dialled.len() - n <= 3, "in flight {} > 3", dialled.len() - n);
        assert_eq!(server.callback(picked(id)).0, 200);
    }
    let keys: Vec<String> = provider.dialled().iter().map(|d| d.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 9);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 9, "no (call, attempt) dialled twice: {keys:?}");
}
