//! The HTTP API against the real binary: every endpoint's success and error cases, the error
//! shape, auth, paging, restarts and a crash under load.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;
use serde_json::{Value, json};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(no error code)")
}

fn assert_error(result: (u16, Value), status: u16, code: &str, field: Option<&str>) -> Value {
    let (got, body) = result;
    assert_eq!(got, status, "{body}");
    assert_eq!(error_code(&body), code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    if let Some(field) = field {
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    body
}

#[test]
fn auth_is_required_except_for_health_and_accepts_both_headers() {
    let server = Server::start(Options::default());
    assert_error(server.request_with("GET", "/api/v1/campaigns/", None, None), 401, "unauthorized", None);
    assert_error(server.request_with("GET", "/api/v1/campaigns/", None, Some("wrong-token-1234")), 401, "unauthorized", None);
    assert_error(server.request_with("GET", "/metrics", None, None), 401, "unauthorized", None);
    let (status, _) = server.raw("GET", "/api/v1/campaigns/", None, Some(("Authorization", format!("Bearer {TOKEN}"))));
    assert_eq!(status, 200);
    let (status, _) = server.raw("GET", "/api/v1/campaigns/", None, Some(("Authorization", format!("Basic {TOKEN}"))));
    assert_eq!(status, 401);
    assert_eq!(server.request_with("GET", "/healthz", None, None).0, 200);
    assert_eq!(server.request_with("GET", "/readyz", None, None).0, 200);
}

#[test]
fn unknown_routes_wrong_methods_and_both_slash_forms() {
    let server = Server::start(Options::default());
    assert_error(server.request("GET", "/api/v1/nope/", None), 404, "not_found", None);
    assert_error(server.request("DELETE", "/api/v1/campaigns/", None), 405, "method_not_allowed", None);
    assert_eq!(server.request("GET", "/api/v1/campaigns", None).0, 200);
    assert_eq!(server.request("GET", "/api/v1/campaigns/", None).0, 200);
    let id = server.create_campaign(json!({"name": "slashes"}));
    assert_eq!(server.request("GET", &format!("/api/v1/campaigns/{id}"), None).0, 200);
    assert_eq!(server.post(&format!("/api/v1/campaigns/{id}/pause"), json!({})).0, 200);
}

#[test]
fn campaigns_create_list_get_patch() {
    let server = Server::start(Options::default());
    let (status, campaign) = server.post(
        "/api/v1/campaigns/",
        json!({"name": "  Q1 leads ", "description": "cold", "timezone": "America/New_York", "max_attempts": 4, "max_concurrent_calls": 5}),
    );
    assert_eq!(status, 201, "{campaign}");
    assert_eq!(campaign["name"], "Q1 leads");
    assert_eq!(campaign["is_active"], true);
    assert_eq!(campaign["status"], "active");
    assert_eq!(campaign["timezone"], "America/New_York");
    assert_eq!(campaign["max_attempts"], 4);
    assert!(campaign["created_at"].as_str().unwrap().ends_with('Z'));
    let id = campaign["id"].as_u64().unwrap();

    assert_error(server.post("/api/v1/campaigns/", json!({})), 400, "bad_request", Some("name"));
    assert_error(server.post("/api/v1/campaigns/", json!({"name": 5})), 400, "bad_request", Some("name"));
    assert_error(server.post("/api/v1/campaigns/", json!({"name": "  "})), 400, "bad_request", Some("name"));
    assert_error(server.post("/api/v1/campaigns/", json!({"name": "x", "timezone": "Mars/Olympus"})), 400, "bad_request", Some("timezone"));
    assert_error(server.post("/api/v1/campaigns/", json!({"name": "x", "max_attempts": 0})), 400, "bad_request", Some("max_attempts"));
    assert_error(server.post("/api/v1/campaigns/", json!({"name": "x", "max_attempts": -1})), 400, "bad_request", Some("max_attempts"));
    assert_error(server.post("/api/v1/campaigns/", json!({"name": "x", "is_active": "yes"})), 400, "bad_request", Some("is_active"));

    let paused = server.create_campaign(json!({"name": "second", "is_active": false}));
    server.create_campaign(json!({"name": "third"}));
    let page = server.get("/api/v1/campaigns/?limit=2");
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = server.get(&format!("/api/v1/campaigns/?limit=2&cursor={cursor}"));
    assert_eq!(rest["results"].as_array().unwrap().len(), 1);
    assert_eq!(rest["results"][0]["name"], "third");
    assert!(rest["next_cursor"].is_null());
    assert_error(server.request("GET", "/api/v1/campaigns/?limit=0", None), 400, "bad_request", Some("limit"));
    assert_error(server.request("GET", "/api/v1/campaigns/?limit=100000", None), 400, "bad_request", Some("limit"));
    assert_error(server.request("GET", "/api/v1/campaigns/?cursor=abc", None), 400, "bad_request", Some("cursor"));

    let got = server.get(&format!("/api/v1/campaigns/{id}/"));
    assert_eq!(got["stats"]["total_calls"], 0);
    assert_eq!(got["stats"]["phone_count"], 0);
    assert_eq!(server.get(&format!("/api/v1/campaigns/{paused}/"))["status"], "paused");
    assert_error(server.request("GET", "/api/v1/campaigns/999/", None), 404, "not_found", None);
    assert_error(server.request("GET", "/api/v1/campaigns/abc/", None), 404, "not_found", None);

    let (status, patched) =
        server.request("PATCH", &format!("/api/v1/campaigns/{id}/"), Some(&json!({"name": "renamed", "timezone": null, "is_active": false})));
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "renamed");
    assert!(patched["timezone"].is_null());
    assert_eq!(patched["status"], "paused");
    assert_eq!(patched["max_attempts"], 4, "fields not named keep their values");
    assert_error(server.request("PATCH", "/api/v1/campaigns/999/", Some(&json!({"name": "x"}))), 404, "not_found", None);
    assert_error(
        server.request("PATCH", &format!("/api/v1/campaigns/{id}/"), Some(&json!({"max_concurrent_calls": 0}))),
        400,
        "bad_request",
        Some("max_concurrent_calls"),
    );
}

#[test]
fn pause_resume_stop_and_a_stopped_campaign_refuses_calls() {
    let server = Server::start(Options::default());
    let id = server.create_campaign(json!({"name": "lifecycle"}));
    let (status, c) = server.post(&format!("/api/v1/campaigns/{id}/pause/"), json!({}));
    assert_eq!((status, c["status"].as_str(), c["is_active"].as_bool()), (200, Some("paused"), Some(false)));
    let (status, c) = server.post(&format!("/api/v1/campaigns/{id}/resume/"), json!({}));
    assert_eq!((status, c["status"].as_str()), (200, Some("active")));
    let (status, c) = server.post(&format!("/api/v1/campaigns/{id}/stop/"), json!({}));
    assert_eq!((status, c["status"].as_str()), (200, Some("stopped")));
    assert_error(server.post(&format!("/api/v1/campaigns/{id}/resume/"), json!({})), 409, "conflict", None);
    assert_error(server.request("PATCH", &format!("/api/v1/campaigns/{id}/"), Some(&json!({"is_active": true}))), 409, "conflict", None);
    let body = assert_error(server.post("/api/v1/initiate-call/", json!({"phone_number": phone(1), "campaign_id": id})), 404, "not_found", None);
    assert_eq!(body["error"]["message"], "Campaign not found or inactive");
    assert_error(server.post("/api/v1/campaigns/999/pause/", json!({})), 404, "not_found", None);
}

#[test]
fn phone_numbers_are_normalised_with_per_item_errors_and_duplicates() {
    let server = Server::start(Options::default());
    let id = server.create_campaign(json!({"name": "numbers"}));
    let (status, body) = server.post(
        "/api/v1/phone-numbers/",
        json!({"campaign_id": id, "phone_numbers": [
            "+1 (415) 555-0101",
            "12345",
            {"phone_number": "+44 20 7946 0958", "timezone": "Europe/London"},
            "+14155550101",
            7,
            {"phone_number": "+14155550102", "timezone": "Nowhere/City"},
            "+١٤١٥٥٥٥٠١٠٣",
        ]}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created_count"], 2);
    assert_eq!(body["duplicate_count"], 1);
    assert_eq!(body["created_numbers"], json!(["+14155550101", "+442079460958"]));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.iter().map(|e| e["index"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 4, 5, 6]);
    assert!(errors[0]["reason"].as_str().unwrap().contains("Invalid phone number"));

    // A second load of the same list adds nothing.
    let (_, again) = server.post("/api/v1/phone-numbers/", json!({"campaign_id": id, "phone_numbers": ["+14155550101", "+442079460958"]}));
    assert_eq!((again["created_count"].as_u64(), again["duplicate_count"].as_u64()), (Some(0), Some(2)));

    let page = server.get(&format!("/api/v1/campaigns/{id}/phone-numbers/?limit=1"));
    assert_eq!(page["results"][0]["phone_number"], "+14155550101");
    let next = page["next_cursor"].as_str().unwrap().to_string();
    let page2 = server.get(&format!("/api/v1/campaigns/{id}/phone-numbers/?limit=1&cursor={}", urlencode(&next)));
    assert_eq!(page2["results"][0]["phone_number"], "+442079460958");
    assert_eq!(page2["results"][0]["timezone"], "Europe/London");
    assert_eq!(server.get(&format!("/api/v1/campaigns/{id}/"))["stats"]["phone_count"], 2);
    let one = server.get(&format!("/api/v1/campaigns/{id}/phone-numbers/?phone_number=%2B44%2020%207946%200958"));
    assert_eq!(one["results"].as_array().unwrap().len(), 1);
    assert_eq!(one["results"][0]["timezone"], "Europe/London");
    assert_eq!(server.get(&format!("/api/v1/campaigns/{id}/phone-numbers/?phone_number=%2B19998887777"))["results"], json!([]));

    assert_error(server.post("/api/v1/phone-numbers/", json!({"campaign_id": 999, "phone_numbers": ["+14155550101"]})), 404, "not_found", None);
    assert_error(server.post("/api/v1/phone-numbers/", json!({"campaign_id": id, "phone_numbers": "+14155550101"})), 400, "bad_request", Some("phone_numbers"));
    assert_error(server.post("/api/v1/phone-numbers/", json!({"campaign_id": id, "phone_numbers": []})), 400, "bad_request", Some("phone_numbers"));
    assert_error(server.post("/api/v1/phone-numbers/", json!({"phone_numbers": ["+14155550101"]})), 400, "bad_request", Some("campaign_id"));
    assert_error(server.request("GET", "/api/v1/campaigns/999/phone-numbers/", None), 404, "not_found", None);
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B")
}

#[test]
fn batch_and_body_limits_answer_413() {
    let server = Server::start(Options { extra_yaml: "limits: {batch_max: 3, request_body_max_bytes: 4096}\n".into(), ..Options::default() });
    let id = server.create_campaign(json!({"name": "limits"}));
    let four: Vec<String> = (0..4).map(phone).collect();
    assert_error(server.post("/api/v1/phone-numbers/", json!({"campaign_id": id, "phone_numbers": four})), 413, "payload_too_large", None);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(10_000));
    let (status, text) = server.raw("POST", "/api/v1/campaigns/", Some(&huge), Some(("X-Auth-Token", TOKEN.into())));
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}

#[test]
fn malformed_bodies_get_clear_400s() {
    let server = Server::start(Options::default());
    let id = server.create_campaign(json!({"name": "bad input"}));
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("{not json", None),
        ("", None),
        ("[1,2]", None),
        ("{\"phone_number\": 14155550101, \"campaign_id\": 1}", Some("phone_number")),
        ("{\"phone_number\": \"+14155550101\"}", Some("campaign_id")),
        ("{\"phone_number\": \"+14155550101\", \"campaign_id\": \"abc\"}", Some("campaign_id")),
        ("{\"phone_number\": \"+14155550101\", \"campaign_id\": -3}", Some("campaign_id")),
        ("{\"phone_number\": \"+１４１５５５５０１０１\", \"campaign_id\": 1}", Some("phone_number")),
        ("{\"phone_number\": \"+14155550101\", \"campaign_id\": 1} trailing", None),
    ];
    for (body, field) in cases {
        let (status, text) = server.raw("POST", "/api/v1/initiate-call/", Some(body), Some(("X-Auth-Token", TOKEN.into())));
        assert_eq!(status, 400, "{body:?} → {text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error_code(&value), "bad_request", "{body:?}");
        if let Some(field) = field {
            assert_eq!(value["error"]["details"]["field"], field, "{body:?} → {text}");
        }
    }
    // A numeric string is accepted for ids, as the reference system's clients send them.
    let (status, _) = server.post("/api/v1/initiate-call/", json!({"phone_number": "+14155550199", "campaign_id": id.to_string()}));
    assert_eq!(status, 201);
}

#[test]
fn initiate_call_answers_201_then_429_for_duplicates() {
    let server = Server::start(Options { duplicate_window: "5m".into(), ..Options::default() });
    let a = server.create_campaign(json!({"name": "a", "max_attempts": 5}));
    let b = server.create_campaign(json!({"name": "b"}));
    let (status, call) = server.post("/api/v1/initiate-call/", json!({"phone_number": "+1 415-555-0101", "campaign_id": a}));
    assert_eq!(status, 201, "{call}");
    for key in [
        "call_id",
        "campaign_id",
        "phone_number",
        "status",
        "last_outcome",
        "attempt_count",
        "max_attempts",
        "created_at",
        "updated_at",
        "last_attempt_at",
        "next_retry_at",
        "total_call_time",
        "external_call_id",
        "error_message",
    ] {
        assert!(call.get(key).is_some(), "call lacks {key}: {call}");
    }
    assert_eq!(call["phone_number"], "+14155550101");
    assert_eq!((call["attempt_count"].as_u64(), call["max_attempts"].as_u64()), (Some(1), Some(5)));
    let id = call["call_id"].as_str().unwrap();
    assert_eq!(&id[14..15], "7", "call ids are UUID v7: {id}");

    // Same campaign, not final: 429 naming the call.
    let body = assert_error(server.post("/api/v1/initiate-call/", json!({"phone_number": "+14155550101", "campaign_id": a})), 429, "duplicate_call", None);
    assert_eq!(body["error"]["details"]["call_id"], id);
    // Another campaign, inside the window: 429 too.
    let body = assert_error(server.post("/api/v1/initiate-call/", json!({"phone_number": "+14155550101", "campaign_id": b})), 429, "duplicate_call", None);
    assert_eq!(body["error"]["details"]["call_id"], id);
    assert_error(server.post("/api/v1/initiate-call/", json!({"phone_number": "+14155550101", "campaign_id": 999})), 404, "not_found", None);
    assert_error(server.post("/api/v1/initiate-call/", json!({"phone_number": "invalid", "campaign_id": a})), 400, "bad_request", Some("phone_number"));
    // Campaign is checked before the number's history: a missing campaign is 404, not 429.
}

#[test]
fn duplicate_window_expires() {
    let server = Server::start(Options { duplicate_window: "300ms".into(), ..Options::default() });
    let a = server.create_campaign(json!({"name": "a"}));
    let b = server.create_campaign(json!({"name": "b"}));
    server.initiate(a, "+14155550101");
    assert_eq!(server.post("/api/v1/initiate-call/", json!({"phone_number": "+14155550101", "campaign_id": b})).0, 429);
    wait_until("the duplicate window to pass", Duration::from_secs(10), || {
        (server.post("/api/v1/initiate-call/", json!({"phone_number": "+14155550101", "campaign_id": b})).0 == 201).then_some(())
    });
}

#[test]
fn calls_can_be_read_filtered_and_paged() {
    let server = Server::start(Options { max_concurrent_calls: 2, duplicate_window: "0s".into(), ..Options::default() });
    let a = server.create_campaign(json!({"name": "a"}));
    let b = server.create_campaign(json!({"name": "b"}));
    let mut ids_a = Vec::new();
    for n in 0..5 {
        ids_a.push(server.initiate(a, &phone(n))["call_id"].as_str().unwrap().to_string());
    }
    let b_call = server.initiate(b, &phone(100));
    let got = server.call(&ids_a[0]);
    assert_eq!(got["phone_number"], phone(0));
    assert_error(server.request("GET", "/api/v1/calls/00000000-0000-7000-8000-000000000000/", None), 404, "not_found", None);
    assert_error(server.request("GET", "/api/v1/calls/not-a-uuid/", None), 404, "not_found", None);

    let all = server.get("/api/v1/calls/?limit=1000");
    assert_eq!(all["results"].as_array().unwrap().len(), 6);
    let only_a = server.get(&format!("/api/v1/calls/?campaign_id={a}"));
    let listed: Vec<String> = only_a["results"].as_array().unwrap().iter().map(|c| c["call_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, ids_a, "a campaign's calls in acceptance order");
    let by_phone = server.get(&format!("/api/v1/calls/?phone_number={}", urlencode(&phone(100))));
    assert_eq!(by_phone["results"][0]["call_id"], b_call["call_id"]);
    // Two slots: two calls are dialled (PROCESSING at the long-delay mock), the rest wait.
    wait_until("two calls in flight", Duration::from_secs(10), || {
        (server.get("/api/v1/calls/?status=PROCESSING")["results"].as_array().unwrap().len() == 2).then_some(())
    });
    let initiated = server.get(&format!("/api/v1/calls/?campaign_id={a}&status=initiated"));
    assert!(initiated["results"].as_array().unwrap().iter().all(|c| c["status"] == "INITIATED"));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/calls/?limit=2&cursor={c}"),
            None => "/api/v1/calls/?limit=2".to_string(),
        };
        let page = server.get(&path);
        seen.extend(page["results"].as_array().unwrap().iter().map(|c| c["call_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6, "paging neither repeats nor skips");
    assert_error(server.request("GET", "/api/v1/calls/?status=RINGING", None), 400, "bad_request", Some("status"));
    assert_error(server.request("GET", "/api/v1/calls/?phone_number=abc", None), 400, "bad_request", Some("phone_number"));
    assert_error(server.request("GET", "/api/v1/calls/?campaign_id=x", None), 400, "bad_request", Some("campaign_id"));
    assert_error(server.request("GET", "/api/v1/calls/?cursor=zzz", None), 400, "bad_request", Some("cursor"));
}

#[test]
fn data_survives_a_clean_restart() {
    let mut server = Server::start(Options::default());
    let id = server.create_campaign(json!({"name": "durable", "timezone": "Asia/Kolkata"}));
    server.post("/api/v1/phone-numbers/", json!({"campaign_id": id, "phone_numbers": ["+919876543210"]}));
    let call = server.initiate(id, "+14155550101");
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits 0; log:\n{}", server.log_text());
    server.launch();
    let after = server.get(&format!("/api/v1/campaigns/{id}/"));
    assert_eq!(after["timezone"], "Asia/Kolkata");
    assert_eq!(after["stats"]["phone_count"], 1);
    assert_eq!(server.call(call["call_id"].as_str().unwrap())["phone_number"], "+14155550101");
    // Ids keep increasing after a restart.
    assert_eq!(server.create_campaign(json!({"name": "next"})), id + 1);
}

#[test]
fn every_acknowledged_call_survives_sigkill_under_load() {
    let mut server = Server::start(Options { duplicate_window: "0s".into(), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "crash"}));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let base = server.url("");
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let (acked, base) = (acked.clone(), base.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for i in 0..5000u64 {
                    let number = phone(t * 100_000 + i);
                    let result = agent
                        .post(&format!("{base}/api/v1/initiate-call/"))
                        .header("X-Auth-Token", TOKEN)
                        .content_type("application/json")
                        .send(json!({"phone_number": number, "campaign_id": campaign}).to_string());
                    match result {
                        Ok(mut response) if response.status() == 201 => {
                            let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
                            acked.lock().unwrap().push((body["call_id"].as_str().unwrap().to_string(), number));
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        // The server was killed: stop this client.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    wait_until("a few hundred acknowledged calls", Duration::from_secs(60), || (acked.lock().unwrap().len() >= 600).then_some(()));
    server.kill();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    server.launch();
    for (call_id, number) in &acked {
        let (status, call) = server.request("GET", &format!("/api/v1/calls/{call_id}/"), None);
        assert_eq!(status, 200, "acknowledged call {call_id} lost after SIGKILL");
        assert_eq!(call["phone_number"], number.as_str());
    }
    // Nothing is corrupted: counts agree with the records, and the store accepts new work.
    let campaign_view = server.get(&format!("/api/v1/campaigns/{campaign}/"));
    let total = campaign_view["stats"]["total_calls"].as_u64().unwrap();
    assert!(total >= acked.len() as u64, "{total} stored < {} acknowledged", acked.len());
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/calls/?campaign_id={campaign}&limit=1000&cursor={c}"),
            None => format!("/api/v1/calls/?campaign_id={campaign}&limit=1000"),
        };
        let page = server.get(&path);
        listed += page["results"].as_array().unwrap().len() as u64;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, total);
    server.initiate(campaign, "+14155550999");
}
