//! Placing real calls: the `twilio` provider (dial request, signed status callbacks, outcome map,
//! refusals, throttling, ambiguous dials, status reconciliation, a crash with calls in flight),
//! token roles, the webhook callback signature, the circuit breaker, bulk dead-letter replay, a
//! bounded stop with the provider unreachable, a callback timeout shorter than the send budget,
//! and masked provider text. Against `Fake`, a scriptable provider written here that speaks both
//! protocols and records every request with its start and end; no network.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use callmgr::protocol::twilio as wire;
use serde_json::{Value, json};

use crate::harness::*;

// ---------------------------------------------------------------------------------------------
// The fake provider.

/// What the fake answers a dial request with.
#[derive(Clone, Debug)]
enum Reply {
    /// Webhook: 200 `{"external_call_id": "ext-{n}"}`. Twilio: 201 with a queued call `CA…{n}`.
    Take,
    /// This status and body, with `Retry-After` when given.
    Status { code: u16, body: String, retry_after: Option<u64> },
    /// The same, after a pause.
    After(Duration, Box<Reply>),
}

fn status(code: u16, body: &str) -> Reply {
    Reply::Status { code, body: body.to_string(), retry_after: None }
}

/// One dial request the fake received.
#[derive(Clone, Debug)]
struct Received {
    call_id: String,
    attempt: u32,
    /// Twilio: the form fields; webhook: the JSON body's fields as text.
    fields: Vec<(String, String)>,
    authorization: Option<String>,
    started: Instant,
    ended: Option<Instant>,
}

impl Received {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct FakeState {
    received: Vec<Received>,
    /// Answers for the next dial requests, in order; then `default`.
    script: VecDeque<Reply>,
    default: Option<Reply>,
    /// Twilio call resources for `GET …/Calls/{sid}.json`.
    calls: HashMap<String, Value>,
    lookups: Vec<String>,
}

struct Fake {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn sid(n: usize) -> String {
    format!("CA{n:032x}")
}

impl Fake {
    fn start() -> Fake {
        use axum::extract::{Path, State};
        use axum::routing::{get, post};
        let state: Arc<Mutex<FakeState>> = Arc::default();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        type Shared = Arc<Mutex<FakeState>>;
        async fn dial(state: Shared, twilio: bool, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> axum::response::Response {
            let (fields, call_id, attempt) = if twilio {
                let fields = wire::parse_form(&body);
                let callback = fields.iter().find(|(n, _)| n == "StatusCallback").map(|(_, v)| v.clone()).unwrap_or_default();
                let query = wire::parse_form(callback.split_once('?').map(|(_, q)| q).unwrap_or_default().as_bytes());
                let get = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
                let (call_id, attempt) = (get("call_id"), get("attempt").parse().unwrap_or(0));
                (fields, call_id, attempt)
            } else {
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let fields = json
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or(v.to_string()))).collect())
                    .unwrap_or_default();
                (fields, json["call_id"].as_str().unwrap_or_default().to_string(), json["attempt"].as_u64().unwrap_or(0) as u32)
            };
            let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            let (index, mut reply) = {
                let mut state = state.lock().unwrap();
                state.received.push(Received { call_id, attempt, fields, authorization, started: Instant::now(), ended: None });
                let reply = state.script.pop_front().or(state.default.clone()).unwrap_or(Reply::Take);
                (state.received.len() - 1, reply)
            };
            while let Reply::After(pause, then) = reply {
                tokio::time::sleep(pause).await;
                reply = *then;
            }
            let n = index + 1;
            let response = match reply {
                Reply::Take if twilio => {
                    let sid = sid(n);
                    (axum::http::StatusCode::CREATED, json!({"sid": sid, "status": "queued", "account_sid": "AC1"}).to_string()).into_response()
                }
                Reply::Take => (axum::http::StatusCode::OK, json!({"external_call_id": format!("ext-{n}")}).to_string()).into_response(),
                Reply::Status { code, body, retry_after } => {
                    let mut response = (axum::http::StatusCode::from_u16(code).unwrap(), body).into_response();
                    if let Some(seconds) = retry_after {
                        response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
                    }
                    response
                }
                Reply::After(..) => unreachable!(),
            };
            state.lock().unwrap().received[index].ended = Some(Instant::now());
            response
        }
        let (webhook_state, twilio_state) = (state.clone(), state.clone());
        let app = axum::Router::new()
            .route("/dial", post(move |headers, body| dial(webhook_state.clone(), false, headers, body)))
            .route("/2010-04-01/Accounts/{account}/Calls.json", post(move |headers, body| dial(twilio_state.clone(), true, headers, body)))
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{file}",
                get(|State(state): State<Shared>, Path((_account, file)): Path<(String, String)>| async move {
                    let sid = file.trim_end_matches(".json").to_string();
                    let mut state = state.lock().unwrap();
                    state.lookups.push(sid.clone());
                    match state.calls.get(&sid) {
                        Some(call) => (axum::http::StatusCode::OK, call.to_string()),
                        None => (axum::http::StatusCode::NOT_FOUND, json!({"code": 20404, "message": "not found", "status": 404}).to_string()),
                    }
                }),
            )
            .with_state(state.clone());
        runtime.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake { addr, state, runtime: Some(runtime) }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn webhook_url(&self) -> String {
        format!("http://{}/dial", self.addr)
    }

    fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    fn script(&self, replies: Vec<Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    fn set_call(&self, sid: &str, resource: Value) {
        self.state.lock().unwrap().calls.insert(sid.to_string(), resource);
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    fn lookups(&self) -> Vec<String> {
        self.state.lock().unwrap().lookups.clone()
    }

    fn wait_received(&self, n: usize) -> Vec<Received> {
        wait_until(&format!("{n} dial requests"), Duration::from_secs(30), || {
            let all = self.received();
            (all.len() >= n).then_some(all)
        })
    }

    /// The most distinct calls that had a dial request open at the provider at one moment.
    fn most_calls_dialling_at_once(&self) -> usize {
        let received = self.received();
        let mut most = 0;
        for r in &received {
            let at = r.started;
            let open: HashSet<&str> = received.iter().filter(|o| o.started <= at && o.ended.is_none_or(|end| end > at)).map(|o| o.call_id.as_str()).collect();
            most = most.max(open.len());
        }
        most
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and requests.

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-1";
const FROM: &str = "+14155550000";
const FLOW: &str = "https://flow.example.com/voice.xml";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A server speaking Twilio to `fake`; `extra` adds environment overrides.
fn twilio_server(fake: &Fake, options: Options, extra: &[(&str, &str)]) -> Server {
    let base = fake.base();
    let mut vars = env(&[
        ("CALLMGR_PROVIDER__KIND", "twilio"),
        ("CALLMGR_PROVIDER__BASE_URL", &base),
        ("CALLMGR_PROVIDER__ACCOUNT_SID", ACCOUNT_SID),
        ("CALLMGR_PROVIDER__AUTH_TOKEN", AUTH_TOKEN),
        ("CALLMGR_PROVIDER__FROM", FROM),
    ]);
    vars.extend(env(extra));
    vars.extend(options.env.clone());
    Server::start(Options { provider_url: FLOW.into(), env: vars, ..options })
}

fn webhook_server(fake: &Fake, options: Options, extra: &[(&str, &str)]) -> Server {
    let mut vars = env(extra);
    vars.extend(options.env.clone());
    Server::start(Options { provider_url: fake.webhook_url(), env: vars, ..options })
}

/// Posts a Twilio status callback for (call, attempt), signed with `auth_token` over the URL
/// callmgr gave for it.
fn status_callback(server: &Server, call_id: &str, attempt: u32, fields: &[(&str, &str)], auth_token: &str) -> Reply2 {
    let target = format!("/api/v1/providers/twilio/status?call_id={call_id}&attempt={attempt}");
    let url = format!("http://{}{target}", server.addr);
    let params: Vec<(String, String)> = fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let signature = wire::signature(auth_token, &url, &params);
    post_form(server, &target, &params, Some(&signature))
}

type Reply2 = crate::harness::Reply;

fn post_form(server: &Server, target: &str, params: &[(String, String)], signature: Option<&str>) -> Reply2 {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter().map(|(n, v)| (n.as_str(), v.as_str()))).finish();
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(signature) = signature {
        headers.push((wire::SIGNATURE_HEADER, signature));
    }
    server.send("POST", target, &headers, Some(body.as_bytes()))
}

fn call_id(call: &Value) -> String {
    call["call_id"].as_str().unwrap().to_string()
}

/// Waits until the call's current attempt has the provider's id, and returns it.
fn wait_external_id(server: &Server, id: &str) -> String {
    wait_until("the provider's id for the attempt", Duration::from_secs(20), || server.call(id)["external_call_id"].as_str().map(str::to_string))
}

fn completed(sid: &str, duration: &str) -> Vec<(&'static str, String)> {
    vec![("CallSid", sid.to_string()), ("CallStatus", "completed".into()), ("CallDuration", duration.to_string()), ("AccountSid", ACCOUNT_SID.into())]
}

fn fields<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

// ---------------------------------------------------------------------------------------------
// Twilio.

#[test]
fn a_twilio_dial_is_the_documented_form_with_basic_auth_and_its_sid_names_the_attempt() {
    let fake = Fake::start();
    let server = twilio_server(&fake, Options::default(), &[]);
    let own = server.create_campaign(json!({"name": "own caller id", "caller_id": "+14155559999"}));
    let plain = server.create_campaign(json!({"name": "default caller id"}));
    let first = call_id(&server.initiate(own, "+14155550101"));
    let dials = fake.wait_received(1);
    let dial = &dials[0];
    let expected_auth = format!("Basic {}", base64_of(&format!("{ACCOUNT_SID}:{AUTH_TOKEN}")));
    assert_eq!(dial.authorization.as_deref(), Some(expected_auth.as_str()));
    assert_eq!(dial.field("To"), Some("+14155550101"));
    assert_eq!(dial.field("From"), Some("+14155559999"), "the campaign's caller id");
    assert_eq!(dial.field("Url"), Some(FLOW));
    assert_eq!(dial.field("Twiml"), None);
    let callback = format!("http://{}/api/v1/providers/twilio/status?call_id={first}&attempt=1", server.addr);
    assert_eq!(dial.field("StatusCallback"), Some(callback.as_str()));
    assert_eq!(dial.field("StatusCallbackMethod"), Some("POST"));
    assert_eq!(dial.field("StatusCallbackEvent"), Some("completed"));
    assert_eq!(dial.field("Timeout"), Some("30"));
    assert_eq!(dial.field("MachineDetection"), None);
    assert_eq!(wait_external_id(&server, &first), sid(1), "the 201's sid is the attempt's id");
    let call = server.call(&first);
    assert_eq!(call["status"], "PROCESSING");
    assert_eq!(call["attempts"][0]["external_call_id"], sid(1));
    assert!(call["attempts"][0]["provider_answered_at"].is_string());

    server.initiate(plain, "+14155550102");
    let dials = fake.wait_received(2);
    assert_eq!(dials[1].field("From"), Some(FROM), "provider.from when the campaign has none");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_signed_completed_status_picks_the_call_with_its_duration_and_a_forged_one_changes_nothing() {
    let fake = Fake::start();
    let server = twilio_server(&fake, Options::default(), &[]);
    let campaign = server.create_campaign(json!({"name": "twilio"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    let sid = wait_external_id(&server, &id);
    let before = server.call(&id);

    // Forged: another key, another attempt's URL, no signature, a tampered field.
    let done = completed(&sid, "42");
    let reply = status_callback(&server, &id, 1, &fields(&done), "not-the-auth-token");
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json().unwrap()["error"]["code"], "forbidden");
    let other_attempt_url = format!("http://{}/api/v1/providers/twilio/status?call_id={id}&attempt=2", server.addr);
    let params: Vec<(String, String)> = done.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    let signature = wire::signature(AUTH_TOKEN, &other_attempt_url, &params);
    assert_eq!(post_form(&server, &format!("/api/v1/providers/twilio/status?call_id={id}&attempt=1"), &params, Some(&signature)).status, 403);
    assert_eq!(post_form(&server, &format!("/api/v1/providers/twilio/status?call_id={id}&attempt=1"), &params, None).status, 403);
    let url = format!("http://{}/api/v1/providers/twilio/status?call_id={id}&attempt=1", server.addr);
    let signature = wire::signature(AUTH_TOKEN, &url, &params);
    let mut tampered = params.clone();
    tampered[2].1 = "4200".into();
    assert_eq!(post_form(&server, &format!("/api/v1/providers/twilio/status?call_id={id}&attempt=1"), &tampered, Some(&signature)).status, 403);
    assert_eq!(server.call(&id), before, "nothing changed");

    let reply = status_callback(&server, &id, 1, &fields(&done), AUTH_TOKEN);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json().unwrap()["status"], "PICKED");
    let call = server.call(&id);
    assert_eq!((call["status"].as_str(), call["total_call_time"].as_u64()), (Some("PICKED"), Some(42)));
    assert_eq!(call["attempts"][0]["external_call_id"], sid);
    assert_eq!(call["attempts"][0]["call_duration"], 42);

    // A progress report arriving after the final one changes nothing.
    let ringing = [("CallSid", sid.as_str()), ("CallStatus", "ringing")];
    assert_eq!(status_callback(&server, &id, 1, &ringing, AUTH_TOKEN).status, 200);
    assert_eq!(server.call(&id), call, "ringing after completed changes nothing");
    // The repeat of the final one answers the same.
    assert_eq!(status_callback(&server, &id, 1, &fields(&done), AUTH_TOKEN).status, 200);
    assert_eq!(server.call(&id), call);
}

#[test]
fn no_answer_busy_and_a_machine_map_through_the_outcomes_and_retry() {
    let fake = Fake::start();
    let server = twilio_server(&fake, Options::default(), &[("CALLMGR_PROVIDER__OUTCOMES__BUSY", "DISCONNECTED")]);
    let campaign = server.create_campaign(json!({"name": "outcomes"}));
    let cases = [
        (vec![("CallStatus", "no-answer"), ("CallDuration", "0")], "RNR"),
        (vec![("CallStatus", "busy")], "DISCONNECTED"),
        (vec![("CallStatus", "completed"), ("CallDuration", "12"), ("AnsweredBy", "machine_end_beep")], "RNR"),
    ];
    for (n, (extra, outcome)) in cases.iter().enumerate() {
        let id = call_id(&server.initiate(campaign, &phone(n as u64)));
        let sid = wait_external_id(&server, &id);
        let mut form = vec![("CallSid", sid.as_str())];
        form.extend(extra.iter().copied());
        let reply = status_callback(&server, &id, 1, &form, AUTH_TOKEN);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let answer = reply.json().unwrap();
        assert_eq!((answer["status"].as_str(), answer["retry_scheduled"].as_bool()), (Some("RETRYING"), Some(true)), "{extra:?}: {answer}");
        let call = server.call(&id);
        assert_eq!(call["last_outcome"], *outcome, "{extra:?}");
        assert_eq!(call["attempts"][0]["external_call_id"], sid);
    }
}

#[test]
fn a_twilio_refusal_fails_the_call_with_twilios_code_and_no_number_in_clear() {
    let fake = Fake::start();
    fake.set_default(status(400, r#"{"code": 21211, "message": "The 'To' number +14155550101 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#));
    let server = twilio_server(&fake, Options::default(), &[]);
    let campaign = server.create_campaign(json!({"name": "refused"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    let call = server.wait_status(&id, "FAILED");
    let message = call["error_message"].as_str().unwrap();
    assert!(message.contains("21211") && message.contains("not a valid phone number"), "{message}");
    assert!(!message.contains("14155550101"), "the number is masked: {message}");
    assert_eq!(fake.received().len(), 1, "a refusal is not resent");
    let recent = server.metrics()["provider"]["recent_errors"].to_string();
    assert!(recent.contains("21211") && !recent.contains("14155550101"), "{recent}");
}

#[test]
fn a_429_with_retry_after_is_sent_again_as_the_same_attempt() {
    let fake = Fake::start();
    fake.script(vec![Reply::Status { code: 429, body: r#"{"code": 20429, "message": "Too Many Requests", "status": 429}"#.into(), retry_after: Some(1) }]);
    let server = twilio_server(&fake, Options::default(), &[]);
    let campaign = server.create_campaign(json!({"name": "throttled"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    let dials = fake.wait_received(2);
    assert!(dials[1].started.duration_since(dials[0].started) >= Duration::from_millis(900), "waited for Retry-After");
    assert_eq!((dials[0].attempt, dials[1].attempt), (1, 1), "the same attempt");
    assert_eq!(dials[0].field("StatusCallback"), dials[1].field("StatusCallback"));
    assert_eq!(wait_external_id(&server, &id), sid(2));
    let call = server.call(&id);
    assert_eq!((call["status"].as_str(), call["attempt_count"].as_u64()), (Some("PROCESSING"), Some(1)));
    let metrics = server.metrics();
    assert!(metrics["provider"]["throttled"].as_u64().unwrap() >= 1, "{}", metrics["provider"]);
    assert_eq!(metrics["provider"]["transport_errors"], 0, "throttling is not a failure");
}

#[test]
fn a_dial_that_times_out_is_sent_once_and_resolved_by_its_status_callback() {
    let fake = Fake::start();
    fake.set_default(Reply::After(Duration::from_secs(3), Box::new(Reply::Take)));
    let server = twilio_server(&fake, Options::default(), &[("CALLMGR_PROVIDER__TIMEOUT", "500ms")]);
    let campaign = server.create_campaign(json!({"name": "ambiguous"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    let call = wait_until("the ambiguity in the history", Duration::from_secs(20), || {
        let call = server.call(&id);
        call["attempts"][0]["error"].as_str().is_some_and(|e| e.contains("ambiguous")).then_some(call)
    });
    assert_eq!(call["status"], "PROCESSING", "not failed, not resent: {call}");
    assert_eq!(server.metrics()["provider"]["ambiguous"], 1);
    // Twilio did create it: its status callback resolves the attempt.
    let done = completed("CA00000000000000000000000000000777", "9");
    assert_eq!(status_callback(&server, &id, 1, &fields(&done), AUTH_TOKEN).status, 200);
    let call = server.call(&id);
    assert_eq!((call["status"].as_str(), call["external_call_id"].as_str()), (Some("PICKED"), Some("CA00000000000000000000000000000777")));
    assert_eq!(fake.received().len(), 1, "sent once");
}

#[test]
fn a_dial_that_times_out_is_resolved_by_reconciliation_at_its_deadline() {
    let fake = Fake::start();
    fake.set_default(Reply::After(Duration::from_secs(3), Box::new(Reply::Take)));
    let server = twilio_server(&fake, Options { callback_timeout: "3s".into(), ..Options::default() }, &[("CALLMGR_PROVIDER__TIMEOUT", "500ms")]);
    let campaign = server.create_campaign(json!({"name": "reconciled"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    wait_until("the ambiguous dial", Duration::from_secs(20), || server.call(&id)["attempts"][0]["error"].as_str().map(|_| ()));
    // A progress report names the call; at the deadline callmgr asks Twilio about it.
    let sid = "CA00000000000000000000000000000888";
    assert_eq!(status_callback(&server, &id, 1, &[("CallSid", sid), ("CallStatus", "ringing")], AUTH_TOKEN).status, 200);
    fake.set_call(sid, json!({"sid": sid, "status": "completed", "duration": "17"}));
    let call = server.wait_status(&id, "PICKED");
    assert_eq!(call["total_call_time"], 17);
    assert_eq!(fake.lookups(), vec![sid.to_string()]);
    assert_eq!(fake.received().len(), 1, "sent once");
}

#[test]
fn after_sigkill_calls_in_flight_are_reconciled_at_once_and_never_dialled_again() {
    let fake = Fake::start();
    let mut server = twilio_server(&fake, Options { duplicate_window: "0s".into(), ..Options::default() }, &[]);
    let campaign = server.create_campaign(json!({"name": "crash", "max_attempts": 2}));
    let ids: Vec<String> = (0..3).map(|n| call_id(&server.initiate(campaign, &phone(n)))).collect();
    let sids: Vec<String> = ids.iter().map(|id| wait_external_id(&server, id)).collect();
    server.kill();
    fake.set_call(&sids[0], json!({"sid": sids[0], "status": "completed", "duration": "30"}));
    fake.set_call(&sids[1], json!({"sid": sids[1], "status": "no-answer"}));
    fake.set_call(&sids[2], json!({"sid": sids[2], "status": "in-progress"}));
    let restarted = Instant::now();
    server.launch();
    server.wait_status(&ids[0], "PICKED");
    server.wait_status(&ids[1], "RETRYING");
    assert!(restarted.elapsed() < Duration::from_secs(60), "resolved long before the 10m callback timeout");
    let still = wait_until("the in-progress call noted", Duration::from_secs(20), || {
        let call = server.call(&ids[2]);
        (call["attempts"][0]["provider_status"] == "in-progress").then_some(call)
    });
    assert_eq!(still["status"], "PROCESSING", "still talking: it keeps waiting for its outcome");
    let metrics = server.metrics();
    assert_eq!(metrics["awaiting_outcome"]["count"], 1, "{}", metrics["awaiting_outcome"]);
    assert_eq!(metrics["awaiting_outcome"]["recovered"], 1);
    assert_eq!(fake.received().len(), 3, "no second dial");
    let mut looked_up = fake.lookups();
    looked_up.sort();
    let mut expected = sids.clone();
    expected.sort();
    assert_eq!(looked_up, expected);
}

// ---------------------------------------------------------------------------------------------
// Tokens and callback credentials.

#[test]
fn token_roles_limit_what_a_token_may_do() {
    let fake = Fake::start();
    let tokens = format!("[{TOKEN}, {{token: viewer-token-1, role: viewer}}, {{token: provider-token-1, role: provider}}]");
    let server = webhook_server(&fake, Options { tokens, ..Options::default() }, &[]);
    let campaign = server.create_campaign(json!({"name": "roles"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    fake.wait_received(1);
    server.wait_status(&id, "PROCESSING");
    let as_viewer = |method: &str, path: &str, body: Option<&Value>| server.request_with(method, path, body, Some("viewer-token-1"));
    assert_eq!(as_viewer("GET", "/api/v1/metrics/", None).0, 200);
    assert_eq!(as_viewer("GET", &format!("/api/v1/calls/{id}/"), None).0, 200);
    assert_eq!(server.raw("GET", "/api/v1/calls/export/", None, Some(("X-Auth-Token", "viewer-token-1".into()))).0, 200);
    let (code, body) = as_viewer("POST", "/api/v1/campaigns/", Some(&json!({"name": "x"})));
    assert_eq!((code, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(as_viewer("PUT", "/api/v1/callback/", Some(&json!({"call_id": id, "status": "PICKED"}))).0, 403);

    let as_provider = |method: &str, path: &str, body: Option<&Value>| server.request_with(method, path, body, Some("provider-token-1"));
    assert_eq!(as_provider("GET", "/api/v1/metrics/", None).0, 403, "a provider token reads nothing");
    assert_eq!(as_provider("GET", &format!("/api/v1/calls/{id}/"), None).0, 403);
    assert_eq!(as_provider("POST", "/api/v1/initiate-call/", Some(&json!({"phone_number": "+14155550102", "campaign_id": campaign}))).0, 403);
    let (code, body) = as_provider("PUT", "/api/v1/callback/", Some(&json!({"call_id": id, "status": "PICKED", "call_duration": 5})));
    assert_eq!(code, 200, "{body}");
    assert_eq!(server.request_with("GET", "/api/v1/metrics/", None, Some("unknown-token-1")).0, 401);
    assert_eq!(server.call(&id)["status"], "PICKED");
}

#[test]
fn a_webhook_callback_must_be_signed_when_a_secret_is_configured() {
    let fake = Fake::start();
    let server = webhook_server(&fake, Options::default(), &[("CALLMGR_PROVIDER__CALLBACK_SECRET", "callback-secret-1")]);
    let campaign = server.create_campaign(json!({"name": "signed"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    fake.wait_received(1);
    server.wait_status(&id, "PROCESSING");
    let body = json!({"call_id": id, "status": "PICKED", "call_duration": 3}).to_string();
    let unsigned = server.raw("PUT", "/api/v1/callback/", Some(&body), Some(("X-Auth-Token", TOKEN.into())));
    assert_eq!(unsigned.0, 403, "{}", unsigned.1);
    let wrong = callmgr::protocol::webhook::callback_signature("another-secret", body.as_bytes());
    let reply = server.send(
        "PUT",
        "/api/v1/callback/",
        &[("X-Auth-Token", TOKEN), ("Content-Type", "application/json"), ("X-Callmgr-Signature", &wrong)],
        Some(body.as_bytes()),
    );
    assert_eq!(reply.status, 403);
    assert_eq!(server.call(&id)["status"], "PROCESSING");
    let right = callmgr::protocol::webhook::callback_signature("callback-secret-1", body.as_bytes());
    let reply = server.send(
        "PUT",
        "/api/v1/callback/",
        &[("X-Auth-Token", TOKEN), ("Content-Type", "application/json"), ("X-Callmgr-Signature", &right)],
        Some(body.as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.call(&id)["status"], "PICKED");
}

#[test]
fn the_reference_systems_callbacks_with_their_own_external_ids_pass() {
    let fake = Fake::start();
    let server = webhook_server(&fake, Options::default(), &[]);
    let campaign = server.create_campaign(json!({"name": "reference"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    wait_until("the provider's id", Duration::from_secs(20), || (server.call(&id)["external_call_id"] == "ext-1").then_some(()));
    let (code, answer) = server.callback(json!({"call_id": id, "status": "PICKED", "call_duration": 45, "external_call_id": "ext_123"}));
    assert_eq!(code, 200, "{answer}");
    let call = server.call(&id);
    assert_eq!((call["status"].as_str(), call["total_call_time"].as_u64()), (Some("PICKED"), Some(45)));
    assert_eq!(call["attempts"][0]["external_call_id"], "ext_123", "recorded: the provider's word");
}

/// A repeated callback for attempt 1 (its external id, no attempt field) that arrives after
/// attempt 2 was dialled, but before the provider answered that dial, is not applied to attempt
/// 2; attempt 2's own outcome then is. (Before, the repeat ended attempt 2 as RNR.)
#[test]
fn a_repeated_callback_of_attempt_1_is_not_applied_to_attempt_2() {
    let fake = Fake::start();
    let retry = "defaults: {max_attempts: 3, retry_interval: 1s}\n";
    let server = webhook_server(&fake, Options { retry_yaml: retry.into(), ..Options::default() }, &[]);
    let campaign = server.create_campaign(json!({"name": "late repeat"}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    wait_until("attempt 1's id", Duration::from_secs(20), || (server.call(&id)["external_call_id"] == "ext-1").then_some(()));
    // Attempt 2's dial will be answered late.
    fake.set_default(Reply::After(Duration::from_secs(4), Box::new(Reply::Take)));
    let rnr = json!({"call_id": id, "status": "RNR", "external_call_id": "ext-1"});
    let (code, first) = server.callback(rnr.clone());
    assert_eq!((code, first["status"].as_str()), (200, Some("RETRYING")), "{first}");
    fake.wait_received(2);
    server.wait_status(&id, "PROCESSING");
    let (code, repeat) = server.callback(rnr);
    assert_eq!(code, 200, "{repeat}");
    assert_eq!(repeat, first, "the repeat answers what attempt 1's outcome did");
    let call = server.call(&id);
    assert_eq!((call["status"].as_str(), call["attempt_count"].as_u64()), (Some("PROCESSING"), Some(2)), "attempt 2 untouched: {call}");
    let (code, picked) = server.callback(json!({"call_id": id, "status": "PICKED", "call_duration": 20, "external_call_id": "ext-2"}));
    assert_eq!((code, picked["status"].as_str()), (200, Some("PICKED")), "{picked}");
    let call = server.call(&id);
    assert_eq!(call["attempts"][1]["outcome"], "PICKED");
    assert_eq!(call["attempts"][0]["outcome"], "RNR");
}

// ---------------------------------------------------------------------------------------------
// Outages, throttling, shutdown, limits.

#[test]
fn the_circuit_breaker_holds_calls_while_the_provider_is_down_and_resumes_after() {
    let fake = Fake::start();
    fake.set_default(status(500, "down for maintenance"));
    let server = webhook_server(
        &fake,
        Options { max_concurrent_calls: 5, duplicate_window: "0s".into(), ..Options::default() },
        &[("CALLMGR_PROVIDER__BREAKER_FAILURES", "3"), ("CALLMGR_PROVIDER__BREAKER_COOLDOWN", "1s"), ("CALLMGR_PROVIDER__TIMEOUT", "1s")],
    );
    let campaign = server.create_campaign(json!({"name": "outage"}));
    let ids: Vec<String> = (0..20).map(|n| call_id(&server.initiate(campaign, &phone(n)))).collect();
    let degraded = wait_until("the breaker to open", Duration::from_secs(20), || {
        let m = server.metrics();
        (m["provider"]["breaker"] != "closed" && m["system_status"] == "degraded").then_some(m)
    });
    assert!(degraded["degraded_reasons"].to_string().contains("circuit breaker"), "{}", degraded["degraded_reasons"]);
    // Down for a while: probes fail, calls wait in the queue, no attempt is burned.
    let down_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < down_until {
        let m = server.metrics();
        assert!(m["current_concurrent_calls"].as_u64().unwrap() <= 5);
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = server.metrics();
    assert_eq!(m["dead_letters"], 0, "nothing burned: {}", m["provider"]);
    assert!(m["queue_depth"].as_u64().unwrap() >= 15, "the calls wait queued: {}", m["queue_depth"]);
    let sent_while_down = fake.received().len();
    assert!(sent_while_down < 20, "far fewer sends than calls while down: {sent_while_down}");
    for id in &ids {
        let call = server.call(id);
        assert_eq!(call["attempt_count"], 1, "{call}");
        assert_ne!(call["status"], "FAILED");
    }
    // The provider comes back: the next probe closes the breaker and everything goes out.
    fake.set_default(Reply::Take);
    let mut done = 0;
    while done < ids.len() {
        let received = fake.received();
        let answered: HashSet<String> = received.iter().filter(|r| r.ended.is_some()).map(|r| r.call_id.clone()).collect();
        for id in &ids {
            let call = server.call(id);
            if call["status"] == "PROCESSING" && answered.contains(id) && call["external_call_id"].is_string() {
                assert_eq!(server.callback(json!({"call_id": id, "status": "PICKED"})).0, 200);
                done += 1;
            }
        }
        assert!(Instant::now() < down_until + Duration::from_secs(60), "only {done} of {} done", ids.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = server.metrics();
    assert_eq!((m["calls_by_status"]["PICKED"].as_u64(), m["provider"]["breaker"].as_str()), (Some(20), Some("closed")));
    assert_eq!(m["system_status"], "healthy");
}

#[test]
fn dead_letters_are_replayed_in_bulk_idempotently() {
    let fake = Fake::start();
    fake.set_default(status(500, "broken"));
    let server = webhook_server(
        &fake,
        Options { duplicate_window: "0s".into(), ..Options::default() },
        &[("CALLMGR_PROVIDER__BREAKER_FAILURES", "1000"), ("CALLMGR_PROVIDER__MAX_SEND_ATTEMPTS", "1")],
    );
    let first = server.create_campaign(json!({"name": "first", "max_attempts": 1}));
    let second = server.create_campaign(json!({"name": "second", "max_attempts": 1}));
    let ids: Vec<String> = (0..5).map(|n| call_id(&server.initiate(if n < 4 { first } else { second }, &phone(n)))).collect();
    for id in &ids {
        server.wait_status(id, "FAILED");
    }
    assert_eq!(server.get("/api/v1/dlq/")["results"].as_array().unwrap().len(), 5);
    fake.set_default(Reply::Take);
    let (code, none) = server.post("/api/v1/dlq/replay/", json!({"until": "2000-01-01T00:00:00Z"}));
    assert_eq!((code, none["replayed_count"].as_u64()), (200, Some(0)), "{none}");
    let (code, replayed) = server.post("/api/v1/dlq/replay/", json!({"campaign_id": first}));
    assert_eq!(code, 200, "{replayed}");
    assert_eq!((replayed["replayed_count"].as_u64(), replayed["skipped_count"].as_u64(), replayed["remaining"].as_u64()), (Some(4), Some(0), Some(0)));
    let (_, again) = server.post("/api/v1/dlq/replay/", json!({"campaign_id": first}));
    assert_eq!((again["replayed_count"].as_u64(), again["skipped_count"].as_u64()), (Some(0), Some(4)), "idempotent: {again}");
    let (_, rest) = server.post("/api/v1/dlq/replay/", json!({"since": "2000-01-01T00:00:00Z"}));
    assert_eq!((rest["replayed_count"].as_u64(), rest["skipped_count"].as_u64()), (Some(1), Some(4)), "{rest}");
    assert_eq!(server.post("/api/v1/dlq/replay/", json!({"since": "yesterday"})).0, 400);
    for id in &ids {
        let call = server.wait_status(id, "PROCESSING");
        assert_eq!(call["attempt_count"], 2);
    }
    // The dashboard's client reads the answer.
    let typed: callmgr::protocol::api::DeadLettersReplayed = serde_json::from_value(rest).unwrap();
    assert_eq!(typed.replayed_count, 1);
}

#[test]
fn sigterm_with_the_provider_unreachable_exits_within_the_budget_and_dials_nothing_twice() {
    let fake = Fake::start();
    // One dial hangs inside a request; the other waits in a resend backoff (nothing listens there).
    fake.set_default(Reply::After(Duration::from_secs(120), Box::new(Reply::Take)));
    let mut hanging =
        webhook_server(&fake, Options { extra_yaml: "limits: {shutdown_timeout: 2s}\n".into(), ..Options::default() }, &[("CALLMGR_PROVIDER__TIMEOUT", "60s")]);
    let campaign = hanging.create_campaign(json!({"name": "hang"}));
    let id = call_id(&hanging.initiate(campaign, "+14155550101"));
    fake.wait_received(1);
    let asked = Instant::now();
    assert_eq!(hanging.terminate(), Some(0));
    assert!(asked.elapsed() < Duration::from_secs(4), "stopped in {:?} with a 2s budget", asked.elapsed());
    hanging.launch();
    assert_eq!(hanging.call(&id)["status"], "PROCESSING", "left as a crash leaves it");
    assert_eq!(fake.received().len(), 1, "not dialled again after the restart");

    let mut unreachable = Server::start(Options {
        provider_url: "http://127.0.0.1:9/dial".into(),
        extra_yaml: "limits: {shutdown_timeout: 2s}\n".into(),
        env: env(&[("CALLMGR_PROVIDER__MAX_SEND_ATTEMPTS", "12"), ("CALLMGR_PROVIDER__BREAKER_FAILURES", "1000")]),
        ..Options::default()
    });
    let campaign = unreachable.create_campaign(json!({"name": "refused"}));
    unreachable.initiate(campaign, "+14155550101");
    wait_until("resends under way", Duration::from_secs(20), || (unreachable.metrics()["provider"]["transport_errors"].as_u64() >= Some(6)).then_some(()));
    let asked = Instant::now();
    assert_eq!(unreachable.terminate(), Some(0));
    assert!(asked.elapsed() < Duration::from_secs(4), "stopped in {:?} with a 2s budget", asked.elapsed());
}

#[test]
fn a_callback_timeout_shorter_than_the_send_budget_is_refused_by_check_config_and_holds_the_limit_at_runtime() {
    let fake = Fake::start();
    // Every send takes 600 ms and fails: attempts resend for about 2.4 s, past the 1 s timeout.
    fake.set_default(Reply::After(Duration::from_millis(600), Box::new(status(500, "overloaded"))));
    let server = webhook_server(
        &fake,
        Options { max_concurrent_calls: 1, callback_timeout: "1s".into(), duplicate_window: "0s".into(), ..Options::default() },
        &[("CALLMGR_PROVIDER__TIMEOUT", "2s"), ("CALLMGR_PROVIDER__BREAKER_FAILURES", "1000")],
    );
    let output = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&server.config_path)
        .envs([("CALLMGR_PROVIDER__TIMEOUT", "2s")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("callback_timeout") && stderr.contains("provider.timeout") && stderr.contains("provider.max_send_attempts"), "{stderr}");

    let campaign = server.create_campaign(json!({"name": "limit", "max_attempts": 1}));
    let ids: Vec<String> = (0..4).map(|n| call_id(&server.initiate(campaign, &phone(n)))).collect();
    for id in &ids {
        server.wait_status(id, "FAILED");
    }
    let received = fake.received();
    assert!(received.len() >= 4, "{}", received.len());
    assert_eq!(fake.most_calls_dialling_at_once(), 1, "the provider never saw more calls being dialled than the limit");
}

#[test]
fn numbers_in_a_providers_error_text_are_masked_everywhere() {
    let fake = Fake::start();
    fake.set_default(status(500, r#"{"error": "cannot route +14155550101 (requested to=+14155550101)"}"#));
    let server = webhook_server(&fake, Options::default(), &[("CALLMGR_PROVIDER__MAX_SEND_ATTEMPTS", "1")]);
    let campaign = server.create_campaign(json!({"name": "private", "max_attempts": 1}));
    let id = call_id(&server.initiate(campaign, "+14155550101"));
    let call = server.wait_status(&id, "FAILED");
    let clear = "14155550101";
    assert!(!call["error_message"].as_str().unwrap().contains(clear), "{}", call["error_message"]);
    assert!(!call["attempts"].to_string().contains(clear), "{}", call["attempts"]);
    let letter = &server.get("/api/v1/dlq/")["results"][0];
    assert!(letter["error"].as_str().unwrap().contains("cannot route"), "{letter}");
    assert!(!letter["error"].as_str().unwrap().contains(clear), "{letter}");
    assert!(!server.metrics()["provider"]["recent_errors"].to_string().contains(clear));
    let log = server.log_text();
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(clear)).collect();
    assert!(leaks.is_empty(), "unmasked number in the log: {leaks:#?}");
}

#[test]
fn the_builtin_mock_plays_twilio_with_signed_status_callbacks() {
    let server = Server::start(Options { mock_delay: "0..100ms".into(), env: env(&[("CALLMGR_PROVIDER__KIND", "twilio")]), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "mock"}));
    let ids: Vec<String> = (0..5).map(|n| call_id(&server.initiate(campaign, &phone(n)))).collect();
    for id in &ids {
        let call = wait_until("the mock's outcome", Duration::from_secs(20), || {
            let call = server.call(id);
            call["last_outcome"].is_string().then_some(call)
        });
        assert!(call["attempts"][0]["external_call_id"].as_str().is_some_and(|sid| sid.starts_with("CA")), "{call}");
    }
    assert!(server.log_text().contains("NO REAL CALLS ARE PLACED"));
}
