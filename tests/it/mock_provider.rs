//! The mock provider over HTTP, in both protocols: Twilio's Basic auth and form checks, the
//! `201` call resource, signed status callbacks (checked with the same `protocol::twilio::verify`
//! the service uses), the status lookup, and signed webhook callbacks. The mock runs in-process;
//! a small listener plays callmgr's callback routes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callmgr::core::model::{CallId, Outcome};
use callmgr::protocol::twilio::{self, CallFlow, CallResource, CallStatus, DialForm, MachineDetection, StatusCallback, TwilioError};
use callmgr::protocol::webhook;
use callmgr::tools::mock_provider::{self, MockProvider, MockSettings, Protocol};
use serde_json::json;

use crate::harness::{agent, wait_until};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-test-token";
const WAIT: Duration = Duration::from_secs(15);

/// An axum app served on 127.0.0.1:0 by its own runtime, stopped on drop.
struct Served {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Served {
    fn start(app: axum::Router) -> Served {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Served { addr, runtime: Some(runtime) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One request that reached the callback listener.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path_and_query: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// Plays callmgr's callback routes: records every request and answers 200.
struct Listener {
    served: Served,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Listener {
    fn start() -> Listener {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = received.clone();
        let app =
            axum::Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let path_and_query = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                    sink.lock().unwrap().push(Received { method: method.to_string(), path_and_query, headers, body: body.to_vec() });
                    "ok"
                }
            });
        Listener { served: Served::start(app), received }
    }

    fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_until(&format!("{count} callbacks"), WAIT, || {
            let all = self.received.lock().unwrap().clone();
            (all.len() >= count).then_some(all)
        })
    }
}

fn settings(protocol: Protocol, mix: &str, delay: &str) -> MockSettings {
    MockSettings {
        delay: mock_provider::parse_delay(delay).unwrap(),
        mix: mock_provider::parse_mix(mix).unwrap(),
        seed: 7,
        protocol,
        token: "callback-token".into(),
        callback_secret: None,
        callback_url: None,
    }
}

fn twilio_mock(mix: &str, delay: &str) -> Served {
    let protocol = Protocol::Twilio { account_sid: ACCOUNT_SID.into(), auth_token: AUTH_TOKEN.into() };
    Served::start(MockProvider::start(settings(protocol, mix, delay)).router())
}

fn call_id(n: u128) -> CallId {
    CallId::parse(&format!("0190a5c4-0000-7000-8000-{n:012}")).unwrap()
}

/// The form callmgr's Twilio dispatcher sends for attempt 1 of call `n`, calling back `listener`.
fn dial_form(listener: &Listener, n: u128) -> (DialForm, String) {
    let status_callback = twilio::status_callback_url(&listener.served.url(), call_id(n), 1);
    let form = DialForm {
        to: "+14155550100".into(),
        from: "+14155550000".into(),
        call_flow: CallFlow::Twiml("<Response><Say>Hello</Say></Response>".into()),
        status_callback: status_callback.clone(),
        ring_timeout_seconds: 30,
        machine_detection: None,
    };
    (form, status_callback)
}

/// POSTs a form to the mock's Calls.json with these credentials (or none).
fn create_call(mock: &Served, credentials: Option<(&str, &str)>, account_sid: &str, form: &[(String, String)]) -> (u16, String) {
    let mut request = agent().post(&twilio::calls_url(&mock.url(), account_sid));
    if let Some((sid, token)) = credentials {
        request = request.header("Authorization", twilio::basic_authorization(sid, token));
    }
    let mut response = request.send_form(form.iter().map(|(n, v)| (n, v))).unwrap();
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
}

fn fetch_call(mock: &Served, credentials: (&str, &str), sid: &str) -> (u16, String) {
    let mut response = agent()
        .get(&twilio::call_url(&mock.url(), ACCOUNT_SID, sid))
        .header("Authorization", twilio::basic_authorization(credentials.0, credentials.1))
        .call()
        .unwrap();
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
}

/// GETs a JSON route of the mock.
fn get_json(mock: &Served, path: &str) -> serde_json::Value {
    let mut response = agent().get(&format!("{}{path}", mock.url())).call().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn stats(mock: &Served) -> serde_json::Value {
    get_json(mock, "/api/stats")
}

/// Every callback the mock sent, checked for a valid signature over the exact StatusCallback URL
/// and parsed; sorted by SequenceNumber (they may arrive in any order).
fn verified_callbacks(received: &[Received], status_callback: &str) -> Vec<(StatusCallback, Vec<(String, String)>)> {
    let mut callbacks: Vec<_> = received
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(format!("{}{}", status_callback.split("/api/").next().unwrap(), r.path_and_query), status_callback);
            assert_eq!(r.header("content-type").as_deref(), Some("application/x-www-form-urlencoded"));
            assert_eq!(r.header("x-auth-token"), None, "Twilio sends no token");
            let params = twilio::parse_form(&r.body);
            let signature = r.header("x-twilio-signature").expect("X-Twilio-Signature");
            assert!(twilio::verify(AUTH_TOKEN, status_callback, &params, &signature), "signature of {params:?}");
            assert!(!twilio::verify("another-token", status_callback, &params, &signature));
            assert!(!twilio::verify(AUTH_TOKEN, &status_callback.replace("attempt=1", "attempt=2"), &params, &signature));
            (StatusCallback::parse(&params).unwrap(), params)
        })
        .collect();
    callbacks.sort_by_key(|(c, _)| c.sequence_number);
    callbacks
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn twilio_mock_refuses_bad_credentials_with_twilios_error() {
    let mock = twilio_mock("PICKED=1", "0");
    let listener = Listener::start();
    let form = dial_form(&listener, 1).0.to_form();

    for credentials in [None, Some((ACCOUNT_SID, "wrong-token")), Some(("ACffffffffffffffffffffffffffffffff", AUTH_TOKEN))] {
        let (status, body) = create_call(&mock, credentials, ACCOUNT_SID, &form);
        assert_eq!(status, 401, "{credentials:?}: {body}");
        let error = TwilioError::parse(&body).expect("Twilio's error JSON");
        assert_eq!((error.code, error.status), (Some(20003), Some(401)));
        assert_eq!(error.to_string(), "Twilio error 20003: Authenticate (Your AccountSid or AuthToken was incorrect.)");
    }
    // Good credentials, but the path names another account.
    let (status, body) = create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), "ACffffffffffffffffffffffffffffffff", &form);
    assert_eq!((status, TwilioError::parse(&body).unwrap().code), (404, Some(20404)), "{body}");
    assert_eq!(fetch_call(&mock, (ACCOUNT_SID, "wrong-token"), "CA00000000000000000000000000000000").0, 401);

    let stats = stats(&mock);
    assert_eq!((stats["protocol"].as_str(), stats["requests"].as_u64(), stats["refused_requests"].as_u64()), (Some("twilio"), Some(4), Some(4)));
    assert_eq!(stats["callbacks_sent"], 0);
    assert!(listener.received.lock().unwrap().is_empty());
}

#[test]
fn twilio_mock_checks_the_form_like_twilio() {
    let mock = twilio_mock("PICKED=1", "0");
    let listener = Listener::start();
    let good = dial_form(&listener, 1).0.to_form();
    let with = |name: &str, value: Option<&str>| -> Vec<(String, String)> {
        let mut form: Vec<_> = good.iter().filter(|(n, _)| n != name).cloned().collect();
        if let Some(value) = value {
            form.push((name.to_string(), value.to_string()));
        }
        form
    };
    let cases = [
        (with("To", None), 21201, "No 'To' number"),
        (with("To", Some("4155550100")), 21211, "The 'To' number 4155550100 is not a valid phone number."),
        (with("From", None), 21213, "No 'From' number"),
        (with("From", Some("callmgr")), 21212, "The 'From' number callmgr is not a valid phone number"),
        (with("Twiml", None), 21205, "Url parameter is required"),
        (with("StatusCallback", Some("/api/v1/providers/twilio/status")), 21609, "StatusCallback"),
        (with("StatusCallbackEvent", Some("hangup")), 21626, "hangup"),
        (with("MachineDetection", Some("Maybe")), 21200, "MachineDetection"),
    ];
    for (form, code, message) in cases {
        let (status, body) = create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), ACCOUNT_SID, &form);
        let error = TwilioError::parse(&body).unwrap_or_else(|| panic!("Twilio's error JSON, not {body}"));
        assert_eq!((status, error.code, error.status), (400, Some(code), Some(400)), "{body}");
        assert!(error.message.contains(message), "{code}: {}", error.message);
        assert_eq!(error.more_info, Some(format!("https://www.twilio.com/docs/errors/{code}")));
    }
    // The unchanged form is accepted: the cases above failed for the field they changed.
    assert_eq!(create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), ACCOUNT_SID, &good).0, 201);
}

#[test]
fn twilio_mock_creates_a_queued_call_and_sends_one_signed_completed_callback() {
    let mock = twilio_mock("PICKED=1", "0");
    let listener = Listener::start();
    let (form, status_callback) = dial_form(&listener, 1);
    let (status, body) = create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), ACCOUNT_SID, &form.to_form());
    assert_eq!(status, 201, "{body}");
    let call = CallResource::parse(&body).unwrap();
    assert!(call.sid.starts_with("CA") && call.sid.len() == 34 && call.sid[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{}", call.sid);
    assert_eq!((call.status, call.duration), (CallStatus::Queued, None));
    assert_eq!((call.to.as_deref(), call.from.as_deref(), call.account_sid.as_deref()), (Some("+14155550100"), Some("+14155550000"), Some(ACCOUNT_SID)));

    // callmgr asks for `completed` only: exactly one callback, the final one.
    let received = listener.wait_for(1);
    let callbacks = verified_callbacks(&received, &status_callback);
    let (callback, params) = &callbacks[0];
    assert_eq!((callback.call_sid.as_str(), callback.call_status, callback.sequence_number), (call.sid.as_str(), CallStatus::Completed, Some(0)));
    assert!(callback.call_duration.is_some());
    assert_eq!(callback.answered_by, None, "no AnsweredBy without MachineDetection");
    assert!(callback.timestamp.as_deref().is_some_and(|t| t.ends_with(" +0000")), "{:?}", callback.timestamp);
    assert_eq!((field(params, "To"), field(params, "From"), field(params, "AccountSid")), (Some("+14155550100"), Some("+14155550000"), Some(ACCOUNT_SID)));
    assert_eq!(twilio::OutcomeMap::default().outcome(callback.call_status, callback.answered_by.as_deref()), Some(Outcome::Picked));

    // The lookup answers the ended call.
    let (status, body) = fetch_call(&mock, (ACCOUNT_SID, AUTH_TOKEN), &call.sid);
    assert_eq!(status, 200, "{body}");
    let now = CallResource::parse(&body).unwrap();
    assert_eq!((now.sid.as_str(), now.status, now.duration), (call.sid.as_str(), CallStatus::Completed, callback.call_duration));
    wait_until("the call to leave the active list", WAIT, || (stats(&mock)["active_calls"] == 0).then_some(()));
    assert_eq!(stats(&mock)["callbacks_sent"], 1);
    // No second callback arrives (the mock queued exactly one).
    assert_eq!(listener.received.lock().unwrap().len(), 1);
}

#[test]
fn twilio_mock_sends_every_requested_event_in_sequence() {
    let mock = twilio_mock("PICKED=1", "0");
    let listener = Listener::start();
    let (mut form, status_callback) = dial_form(&listener, 2);
    form.machine_detection = Some(MachineDetection::Enable);
    let mut fields = form.to_form();
    fields.retain(|(n, _)| n != "StatusCallbackEvent");
    for event in ["initiated", "ringing", "answered", "completed"] {
        fields.push(("StatusCallbackEvent".into(), event.into()));
    }
    let (status, body) = create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), ACCOUNT_SID, &fields);
    assert_eq!(status, 201, "{body}");
    let sid = CallResource::parse(&body).unwrap().sid;

    let callbacks = verified_callbacks(&listener.wait_for(4), &status_callback);
    let seen: Vec<_> = callbacks.iter().map(|(c, _)| (c.sequence_number, c.call_status)).collect();
    assert_eq!(seen, [(Some(0), CallStatus::Initiated), (Some(1), CallStatus::Ringing), (Some(2), CallStatus::InProgress), (Some(3), CallStatus::Completed)]);
    assert!(callbacks.iter().all(|(c, _)| c.call_sid == sid));
    let (last, _) = &callbacks[3];
    assert_eq!(last.answered_by.as_deref(), Some("human"), "MachineDetection was on");
    assert!(last.call_duration.is_some());
    assert!(callbacks[..3].iter().all(|(c, _)| c.call_duration.is_none() && !c.call_status.is_final()));
}

#[test]
fn twilio_mock_reports_each_mix_outcome_as_its_twilio_status() {
    let listener = Listener::start();
    let cases =
        [("RNR=1", CallStatus::NoAnswer, Outcome::Rnr), ("DISCONNECTED=1", CallStatus::Busy, Outcome::Rnr), ("FAILED=1", CallStatus::Failed, Outcome::Failed)];
    for (n, (mix, twilio_status, default_outcome)) in cases.into_iter().enumerate() {
        let mock = twilio_mock(mix, "0");
        let (form, status_callback) = dial_form(&listener, n as u128 + 10);
        assert_eq!(create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), ACCOUNT_SID, &form.to_form()).0, 201);
        let received = listener.wait_for(n + 1);
        let mine: Vec<_> = received.into_iter().filter(|r| status_callback.ends_with(&r.path_and_query)).collect();
        let callbacks = verified_callbacks(&mine, &status_callback);
        let (callback, _) = &callbacks[0];
        assert_eq!((callback.call_status, callback.call_duration, callback.answered_by.as_deref()), (twilio_status, Some(0), None), "{mix}");
        assert_eq!(twilio::OutcomeMap::default().outcome(callback.call_status, None), Some(default_outcome), "{mix}");
        assert_eq!(mock_provider::twilio_final_status(mix_outcome(mix)), twilio_status);
    }
}

fn mix_outcome(mix: &str) -> Outcome {
    Outcome::parse(mix.split('=').next().unwrap()).unwrap()
}

#[test]
fn twilio_mock_answers_a_ringing_call_and_the_shared_routes() {
    let mock = twilio_mock("PICKED=1", "1h");
    let listener = Listener::start();
    let (form, _) = dial_form(&listener, 3);
    let (_, body) = create_call(&mock, Some((ACCOUNT_SID, AUTH_TOKEN)), ACCOUNT_SID, &form.to_form());
    let sid = CallResource::parse(&body).unwrap().sid;

    let (status, body) = fetch_call(&mock, (ACCOUNT_SID, AUTH_TOKEN), &sid);
    assert_eq!(status, 200, "{body}");
    let call = CallResource::parse(&body).unwrap();
    assert_eq!((call.status, call.duration, call.end_time), (CallStatus::Ringing, None, None));

    let (status, body) = fetch_call(&mock, (ACCOUNT_SID, AUTH_TOKEN), "CA00000000000000000000000000000000");
    assert_eq!((status, TwilioError::parse(&body).unwrap().code), (404, Some(20404)));

    let active = get_json(&mock, "/api/active-calls");
    assert_eq!(active["active_calls"], 1);
    assert_eq!(active["calls"][0], json!({"call_id": sid, "phone_number": "+14155550100"}));
    assert_eq!(get_json(&mock, "/health")["status"], "ok");
    // The webhook route is not served in Twilio mode.
    assert_eq!(
        agent().post(&format!("{}/api/initiate-call", mock.url())).content_type("application/json").send(r#"{"call_id": "x"}"#).unwrap().status().as_u16(),
        404
    );
}

/// Starts a webhook-mode mock, dials once and returns the callback that reached the listener.
fn webhook_callback(callback_secret: Option<&str>) -> Received {
    let listener = Listener::start();
    let mut settings = settings(Protocol::Webhook, "RNR=1", "0");
    settings.callback_secret = callback_secret.map(str::to_string);
    let mock = Served::start(MockProvider::start(settings).router());
    let request = webhook::DialRequest {
        call_id: call_id(1).to_string(),
        phone_number: "+14155550100".into(),
        campaign_id: 1,
        campaign_name: "Spring".into(),
        attempt: 2,
        callback_url: format!("{}/api/v1/callback/", listener.served.url()),
    };
    let mut response = agent()
        .post(&format!("{}/api/initiate-call", mock.url()))
        .header(webhook::IDEMPOTENCY_KEY_HEADER, webhook::idempotency_key(&request.call_id, request.attempt))
        .content_type("application/json")
        .send(serde_json::to_string(&request).unwrap())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let external_call_id = webhook::parse_dial_answer(&response.body_mut().read_to_string().unwrap()).expect("an external_call_id");
    let received = listener.wait_for(1).remove(0);
    assert_eq!((received.method.as_str(), received.path_and_query.as_str()), ("PUT", "/api/v1/callback/"));
    assert_eq!(received.header("x-auth-token").as_deref(), Some("callback-token"));
    let callback: webhook::Callback = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(
        callback,
        webhook::Callback {
            call_id: request.call_id,
            status: Outcome::Rnr,
            call_duration: Some(0),
            external_call_id: Some(external_call_id),
            attempt: Some(2)
        }
    );
    received
}

#[test]
fn webhook_mock_signs_callbacks_when_a_secret_is_set() {
    let signed = webhook_callback(Some("callback-secret"));
    let header = signed.header(webhook::SIGNATURE_HEADER).expect("X-Callmgr-Signature");
    assert!(header.starts_with("sha256="), "{header}");
    assert!(webhook::verify_callback_signature("callback-secret", &signed.body, &header));
    assert!(!webhook::verify_callback_signature("other-secret", &signed.body, &header));

    let unsigned = webhook_callback(None);
    assert_eq!(unsigned.header(webhook::SIGNATURE_HEADER), None);
}
