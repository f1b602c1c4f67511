//! Hostile clients against the real binary: connections held open idle or fed a request head
//! byte by byte, exports that are never read, ids that are not UTF-8, bodies that are not
//! objects, unauthenticated probing of routes, and a fuzz pass over every route. The server must
//! stay bounded, keep answering everyone else, and answer every refusal in the one JSON shape.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::harness::*;

/// A server with these `limits:` keys (written as YAML flow-mapping entries).
fn with_limits(limits: &str) -> Server {
    Server::start(Options { extra_yaml: format!("limits: {{{limits}}}\n"), ..Options::default() })
}

/// Checks the one error shape `{"error": {"code", "message", "details"}}`; returns the code.
fn error_code(reply: &Reply) -> String {
    let described = || format!("{} {:?} {}", reply.status, reply.headers, reply.text());
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("application/json")), "not JSON: {}", described());
    let body = reply.json().unwrap_or_else(|| panic!("body is not JSON: {}", described()));
    let error = &body["error"];
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{}", described());
    assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()), "{}", described());
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", described());
    assert!(error["details"].is_object(), "{}", described());
    error["code"].as_str().unwrap_or_default().to_string()
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects")
}

/// True when the server has closed this connection (end of stream or reset); never blocks.
/// Whatever the server sent before closing is read and dropped.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 4096];
    let mut reader = stream;
    let closed = loop {
        match reader.read(&mut buffer) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// `GET /healthz` on a fresh connection, every step bounded by one second.
fn healthz_within_a_second(addr: SocketAddr) -> Reply {
    send_raw(addr, "GET", "/healthz", &[], None, Duration::from_secs(1)).unwrap_or_else(|e| panic!("/healthz did not answer within 1 s: {e}"))
}

/// One keep-alive request on an open connection; returns the status after reading the body.
fn ask_on(stream: &mut TcpStream, path: &str) -> u16 {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).unwrap();
    let (status, headers) = read_response_head(stream).unwrap();
    let length: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    status
}

// ---------------------------------------------------------------------------------------------
// Connections without end.

#[test]
fn idle_and_slowloris_connections_are_closed_after_their_timeouts() {
    let server = with_limits("connections_max: 50, header_read_timeout: 1s, idle_timeout: 2s");
    let idle: Vec<TcpStream> = (0..20).map(|_| connect(server.addr)).collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n").unwrap();
            stream
        })
        .collect();
    // While they are held, a fresh connection is answered at once.
    for _ in 0..3 {
        assert_eq!(healthz_within_a_second(server.addr).status, 200);
    }
    // The slowloris clients keep sending a header byte at every check; their head never ends,
    // so the header timeout (counted from its first byte) closes them although bytes keep coming.
    wait_until("every slowloris connection to be closed", Duration::from_secs(10), || {
        for stream in &mut slow {
            let _ = stream.write_all(b"x");
        }
        slow.iter().all(closed_by_server).then_some(())
    });
    wait_until("every idle connection to be closed", Duration::from_secs(10), || idle.iter().all(closed_by_server).then_some(()));
    assert_eq!(healthz_within_a_second(server.addr).status, 200);
}

#[test]
fn a_keep_alive_connection_may_idle_longer_than_the_header_timeout_but_not_past_the_idle_timeout() {
    let server = with_limits("header_read_timeout: 1s, idle_timeout: 4s");
    let mut stream = connect(server.addr);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ask_on(&mut stream, "/healthz"), 200);
    // Time passing is what is under test here: twice the header timeout with no request in
    // flight is idling, not a slow head, so the connection is still open and usable.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ask_on(&mut stream, "/healthz"), 200);
    wait_until("the idle keep-alive connection to be closed", Duration::from_secs(10), || closed_by_server(&stream).then_some(()));
}

#[test]
fn beyond_the_connection_cap_new_connections_displace_idle_ones() {
    let server = with_limits("connections_max: 50, header_read_timeout: 60s, idle_timeout: 60s");
    let mut held: Vec<TcpStream> = (0..200).map(|_| connect(server.addr)).collect();
    for _ in 0..30 {
        let mut stream = connect(server.addr);
        stream.write_all(b"GET /api/v1/calls/ HTTP/1.1\r\nHost: te").unwrap();
        held.push(stream);
    }
    // Timeouts are far away: only the cap can make room, by closing connections that wait for a request.
    for _ in 0..5 {
        assert_eq!(healthz_within_a_second(server.addr).status, 200);
    }
    wait_until("the server to hold at most connections_max of the 230 connections", Duration::from_secs(10), || {
        let open = held.iter().filter(|s| !closed_by_server(s)).count();
        (open <= 50).then_some(())
    });
}

#[test]
fn when_every_connection_has_a_request_in_flight_a_new_one_gets_503_in_the_error_shape() {
    let server = with_limits("connections_max: 5");
    let mut busy = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(server.addr);
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /api/v1/campaigns/ HTTP/1.1\r\nHost: test\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        // `100 Continue` means the handler is reading the body: the request is in flight.
        assert_eq!(read_response_head(&mut stream).unwrap().0, 100);
        busy.push(stream);
    }
    let reply = send_raw(server.addr, "GET", "/healthz", &[], None, Duration::from_secs(5)).expect("refused with an answer");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(error_code(&reply), "unavailable");
    assert!(reply.header("retry-after").is_some(), "{:?}", reply.headers);
    drop(busy);
    wait_until("the service to take connections again", Duration::from_secs(10), || {
        send_raw(server.addr, "GET", "/healthz", &[], None, Duration::from_secs(1)).ok().filter(|r| r.status == 200)
    });
}

// ---------------------------------------------------------------------------------------------
// Exports that pin the read pool.

/// Calls stored for the export test: more CSV than socket buffers, hyper's write buffer and the
/// export's chunk channel hold together, so an export whose client does not read blocks.
const EXPORT_ROWS: u64 = 60_000;

#[test]
fn exports_are_bounded_and_an_export_whose_client_stops_reading_is_abandoned() {
    let server = with_limits("exports_max: 2, export_stall_timeout: 2s, write_stall_timeout: 3s");
    let campaign = server.create_campaign(json!({"name": "export load"}));
    let mut some_call = String::new();
    for batch in 0..EXPORT_ROWS / 10_000 {
        let numbers: Vec<String> = (0..10_000).map(|i| phone(batch * 10_000 + i)).collect();
        let (status, body) = server.post("/api/v1/bulk-initiate-calls/", json!({"campaign_id": campaign, "phone_numbers": numbers}));
        assert_eq!(status, 201, "{body}");
        some_call = body["call_ids"][0].as_str().unwrap().to_string();
    }
    let auth = [("X-Auth-Token", TOKEN)];
    let export_request = format!("GET /api/v1/calls/export/ HTTP/1.1\r\nHost: test\r\nX-Auth-Token: {TOKEN}\r\n\r\n");
    // Two clients read the answer's head and then nothing: each holds an export slot.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(server.addr);
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(export_request.as_bytes()).unwrap();
        assert_eq!(read_response_head(&mut stream).unwrap().0, 200);
        stalled.push(stream);
    }
    let third = server.send("GET", "/api/v1/calls/export/", &auth, None);
    assert_eq!(third.status, 503, "{:?}", third.headers);
    assert_eq!(error_code(&third), "unavailable");
    assert!(third.header("retry-after").is_some(), "{:?}", third.headers);
    // Ordinary reads do not wait behind the stalled exports.
    for _ in 0..3 {
        let call = send_raw(server.addr, "GET", &format!("/api/v1/calls/{some_call}/"), &auth, None, Duration::from_secs(1)).expect("call read within 1 s");
        assert_eq!(call.status, 200);
        let metrics = send_raw(server.addr, "GET", "/api/v1/metrics/", &auth, None, Duration::from_secs(1)).expect("metrics within 1 s");
        assert_eq!(metrics.status, 200);
    }
    // Once the stall timeout passes, the slots are free again and a whole export goes through.
    let full = wait_until("an export slot to be released", Duration::from_secs(30), || {
        let reply = server.send("GET", "/api/v1/calls/export/", &auth, None);
        (reply.status == 200).then_some(reply)
    });
    assert_eq!(full.text().lines().count() as u64, EXPORT_ROWS + 1, "header line plus one line per call");
    let log = server.log_text();
    assert_eq!(log.matches("export abandoned").count(), 2, "both stalled exports were abandoned, not finished:\n{log}");
    // An abandoned export ends without the last chunk, so its client cannot take it for complete.
    for mut stream in stalled {
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("reading an abandoned export: {e}"),
        }
        assert!(decode_chunked(&raw).is_none(), "an abandoned export must not look complete ({} bytes)", raw.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Every error in the one JSON shape; authentication first.

#[test]
fn path_ids_that_are_not_utf8_answer_400_in_the_error_shape() {
    let server = Server::start(Options::default());
    let auth = [("X-Auth-Token", TOKEN), ("Content-Type", "application/json")];
    let routes = [
        ("GET", "/api/v1/calls/%FF%FE/"),
        ("GET", "/api/v1/campaigns/%FF%FE/"),
        ("PATCH", "/api/v1/campaigns/%FF%FE/"),
        ("POST", "/api/v1/campaigns/%FF%FE/pause/"),
        ("POST", "/api/v1/campaigns/%FF%FE/resume/"),
        ("POST", "/api/v1/campaigns/%FF%FE/stop/"),
        ("POST", "/api/v1/campaigns/%FF%FE/start/"),
        ("GET", "/api/v1/campaigns/%FF%FE/phone-numbers/"),
        ("POST", "/api/v1/dlq/%FF%FE/replay/"),
    ];
    for (method, path) in routes {
        let reply = server.send(method, path, &auth, Some(b"{}"));
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text());
        assert_eq!(error_code(&reply), "bad_request", "{method} {path}");
    }
}

#[test]
fn json_bodies_must_be_objects() {
    let server = Server::start(Options::default());
    let campaign = server.create_campaign(json!({"name": "objects only"}));
    let cases = [
        ("POST", "/api/v1/initiate-call/", json!(["+14155550100", campaign])),
        ("POST", "/api/v1/initiate-call/", json!("+14155550100")),
        ("POST", "/api/v1/initiate-call/", json!(null)),
        ("POST", "/api/v1/campaigns/", json!(["arrays are not campaigns"])),
        ("PATCH", &format!("/api/v1/campaigns/{campaign}/"), json!(["renamed"])),
        ("POST", "/api/v1/phone-numbers/", json!([campaign, ["+14155550101"]])),
        ("POST", "/api/v1/bulk-initiate-calls/", json!([campaign, ["+14155550102"]])),
        ("PUT", "/api/v1/callback/", json!(["0190f0a0-0000-7000-8000-000000000000", "PICKED"])),
    ];
    for (method, path, body) in cases {
        let (status, answer) = server.request(method, path, Some(&body));
        assert_eq!(status, 400, "{method} {path} {body} → {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("JSON object"), "the message names the problem: {message}");
    }
    assert_eq!(server.get("/api/v1/calls/")["results"], json!([]), "nothing was created");
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["name"], "objects only");
}

#[test]
fn authentication_comes_before_routing() {
    let server = Server::start(Options::default());
    let probes = [
        ("DELETE", "/api/v1/campaigns/"),
        ("PUT", "/api/v1/calls/"),
        ("GET", "/api/v1/callback/"),
        ("GET", "/api/v1/no-such-route/"),
        ("POST", "/metrics"),
        ("GET", "/nowhere"),
    ];
    for (method, path) in probes {
        for headers in [vec![], vec![("X-Auth-Token", "wrong-token-5678")]] {
            let reply = server.send(method, path, &headers, None);
            assert_eq!(reply.status, 401, "{method} {path} {headers:?}: {}", reply.text());
            assert_eq!(error_code(&reply), "unauthorized");
        }
    }
    let auth = [("X-Auth-Token", TOKEN)];
    let reply = server.send("DELETE", "/api/v1/campaigns/", &auth, None);
    assert_eq!((reply.status, error_code(&reply).as_str()), (405, "method_not_allowed"));
    let reply = server.send("GET", "/api/v1/no-such-route/", &auth, None);
    assert_eq!((reply.status, error_code(&reply).as_str()), (404, "not_found"));
    // Health checks stay open, and answer a wrong method in the same shape.
    assert_eq!(server.send("GET", "/healthz", &[], None).status, 200);
    assert_eq!(server.send("GET", "/readyz", &[], None).status, 200);
    let reply = server.send("POST", "/healthz", &[], None);
    assert_eq!((reply.status, error_code(&reply).as_str()), (405, "method_not_allowed"));
}

// ---------------------------------------------------------------------------------------------
// Private data in caches.

#[test]
fn api_answers_are_never_stored_by_caches_nor_sniffed() {
    let server = Server::start(Options::default());
    let campaign = server.create_campaign(json!({"name": "private"}));
    let call = server.initiate(campaign, "+14155550123");
    let call_id = call["call_id"].as_str().unwrap();
    let auth = [("X-Auth-Token", TOKEN)];
    let gets = [
        "/api/v1/campaigns/".to_string(),
        format!("/api/v1/campaigns/{campaign}/"),
        format!("/api/v1/campaigns/{campaign}/phone-numbers/"),
        "/api/v1/calls/".to_string(),
        format!("/api/v1/calls/{call_id}/"),
        "/api/v1/calls/?phone_number=%2B14155550123".to_string(),
        "/api/v1/calls/export/".to_string(),
        "/api/v1/dlq/".to_string(),
        "/api/v1/metrics/".to_string(),
        "/api/v1/calls/not-a-call/".to_string(),
    ];
    let mut replies: Vec<(String, Reply)> = gets.iter().map(|path| (path.clone(), server.send("GET", path, &auth, None))).collect();
    replies.push(("unauthenticated".into(), server.send("GET", "/api/v1/calls/", &[], None)));
    let body = json!({"phone_number": "+14155550124", "campaign_id": campaign}).to_string();
    replies.push(("initiate".into(), server.send("POST", "/api/v1/initiate-call/", &auth, Some(body.as_bytes()))));
    for (what, reply) in replies {
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}: {:?}", reply.headers);
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{what}: {:?}", reply.headers);
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz pass.

const FUZZ_ROUTES: &[&str] = &[
    "/api/v1/campaigns",
    "/api/v1/campaigns/{id}",
    "/api/v1/campaigns/{id}/pause",
    "/api/v1/campaigns/{id}/resume",
    "/api/v1/campaigns/{id}/stop",
    "/api/v1/campaigns/{id}/start",
    "/api/v1/campaigns/{id}/phone-numbers",
    "/api/v1/phone-numbers",
    "/api/v1/initiate-call",
    "/api/v1/bulk-initiate-calls",
    "/api/v1/callback",
    "/api/v1/calls",
    "/api/v1/calls/export",
    "/api/v1/calls/{id}",
    "/api/v1/dlq",
    "/api/v1/dlq/{id}/replay",
    "/api/v1/metrics",
    "/api/v1/{id}",
    "/api/v1/{id}/{id}",
    "/metrics",
    "/healthz",
    "/readyz",
    "/{id}",
];

const FUZZ_FIELDS: &[&str] = &[
    "name",
    "campaign_id",
    "phone_number",
    "phone_numbers",
    "use_campaign_numbers",
    "call_id",
    "status",
    "attempt",
    "call_duration",
    "external_call_id",
    "is_active",
    "timezone",
    "max_attempts",
    "max_concurrent_calls",
    "description",
];

#[derive(Clone, Debug)]
struct FuzzRequest {
    method: &'static str,
    target: String,
    body: Option<Vec<u8>>,
    /// Whether the read-only server gets this request with the valid token (safe methods only).
    read_with_token: bool,
}

fn percent_encoded() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 1..6).prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect())
}

fn segment(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(known),
        "[0-9]{1,25}",
        "-?[0-9]{1,3}",
        "[a-zA-Z0-9._~-]{0,16}",
        percent_encoded(),
        Just("%2F".to_string()),
        Just("..".to_string()),
        Just("%00".to_string()),
    ]
}

fn query(known: Vec<String>) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        proptest::sample::select(vec!["limit", "cursor", "campaign_id", "status", "phone_number", "x"]).prop_map(str::to_string),
        percent_encoded(),
    ];
    let value = prop_oneof![segment(known), Just("%2B14155550100".to_string()), Just("PROCESSING".to_string()), "[+&=]{1,3}"];
    proptest::collection::vec((key, value), 0..4).prop_map(|pairs| {
        if pairs.is_empty() { String::new() } else { format!("?{}", pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")) }
    })
}

fn json_value(known: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        proptest::sample::select(known).prop_map(Value::String),
        "\\PC{0,20}".prop_map(Value::String),
        Just(json!("+14155550100")),
        Just(json!("PICKED")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FUZZ_FIELDS).prop_map(str::to_string), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn fuzz_request(known: Vec<String>) -> impl Strategy<Value = FuzzRequest> {
    let method = proptest::sample::select(vec!["GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PURGE"]);
    let route = proptest::sample::select(FUZZ_ROUTES);
    let body = prop_oneof![
        Just(None),
        json_value(known.clone()).prop_map(|v| Some(v.to_string().into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Some),
    ];
    (method, route, segment(known.clone()), segment(known.clone()), any::<bool>(), query(known), body, any::<bool>()).prop_map(
        |(method, route, first, second, trailing_slash, query, body, read_with_token)| {
            let mut path = route.replacen("{id}", &first, 1).replacen("{id}", &second, 1);
            if trailing_slash {
                path.push('/');
            }
            FuzzRequest { method, target: format!("{path}{query}"), body, read_with_token }
        },
    )
}

/// What the read-only server stores, as its own listings show it.
fn listing(server: &Server) -> Value {
    let campaigns = server.get("/api/v1/campaigns/?limit=1000");
    let details: Vec<Value> = campaigns["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["id"].as_u64().unwrap();
            json!({"campaign": server.get(&format!("/api/v1/campaigns/{id}/")), "numbers": server.get(&format!("/api/v1/campaigns/{id}/phone-numbers/?limit=1000"))})
        })
        .collect();
    json!({"campaigns": campaigns, "details": details, "calls": server.get("/api/v1/calls/?limit=1000"), "dlq": server.get("/api/v1/dlq/?limit=1000")})
}

/// Stores two campaigns (one paused), numbers and calls; returns the ids a fuzzer should try.
fn seed(server: &Server) -> Vec<String> {
    let active = server.create_campaign(json!({"name": "fuzz active"}));
    let paused = server.create_campaign(json!({"name": "fuzz paused"}));
    assert_eq!(server.post(&format!("/api/v1/campaigns/{paused}/pause/"), json!({})).0, 200);
    let numbers: Vec<String> = (0..3).map(phone).collect();
    for campaign in [active, paused] {
        let (status, body) = server.post("/api/v1/phone-numbers/", json!({"campaign_id": campaign, "phone_numbers": numbers}));
        assert_eq!(status, 201, "{body}");
    }
    let mut known = vec![active.to_string(), paused.to_string()];
    for n in 10..13 {
        let call = server.initiate(active, &phone(n));
        let call_id = call["call_id"].as_str().unwrap().to_string();
        // The mock provider holds each call for an hour: once PROCESSING, it stays so.
        server.wait_status(&call_id, "PROCESSING");
        known.push(call_id);
    }
    known
}

fn check_reply(server: &str, request: &FuzzRequest, reply: &Reply) -> Result<(), TestCaseError> {
    let context = || format!("{server}: {} {} → {} {:?} {}", request.method, request.target, reply.status, reply.headers, reply.text());
    prop_assert!(reply.status < 500, "5xx: {}", context());
    prop_assert_eq!(reply.header("cache-control"), Some("no-store"), "{}", context());
    if !(200..300).contains(&reply.status) {
        prop_assert!(reply.header("content-type").is_some_and(|t| t.starts_with("application/json")), "not JSON: {}", context());
        if request.method != "HEAD" {
            let body = reply.json();
            let error = body.as_ref().map(|b| &b["error"]);
            prop_assert!(
                error.is_some_and(|e| e["code"].is_string() && e["message"].is_string() && e["details"].is_object()),
                "not the error shape: {}",
                context()
            );
        }
    }
    Ok(())
}

/// Random methods, paths, query strings and bodies. The read-only server gets only requests that
/// cannot change anything: safe methods with the token, and every method without a valid token
/// (which must be refused before routing). The second server gets every request with the token,
/// so mutations that happen to be valid land there. Neither may answer 5xx or outside the JSON
/// error shape, and the read-only server's listings must be exactly as they were.
#[test]
fn fuzzed_requests_never_fail_the_server_nor_change_what_they_must_not() {
    let read_only = Server::start(Options::default());
    let scratch = Server::start(Options::default());
    let mut known = seed(&read_only);
    known.extend(seed(&scratch));
    known.push("0190f0a0-0000-7000-8000-000000000000".into());
    let before = listing(&read_only);

    let config = ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&fuzz_request(known), |request| {
        let send = |server: &Server, token: &str| {
            let mut headers = vec![("Content-Type", "application/json")];
            if !token.is_empty() {
                headers.push(("X-Auth-Token", token));
            }
            send_raw(server.addr, request.method, &request.target, &headers, request.body.as_deref(), Duration::from_secs(30))
                .map_err(|e| TestCaseError::fail(format!("{} {}: {e}", request.method, request.target)))
        };
        let safe = matches!(request.method, "GET" | "HEAD");
        let path = request.target.split('?').next().unwrap_or_default();
        let open = matches!(path, "/healthz" | "/readyz");
        if safe && request.read_with_token {
            check_reply("read-only", &request, &send(&read_only, TOKEN)?)?;
        } else {
            let token = if request.read_with_token { "wrong-token-5678" } else { "" };
            let reply = send(&read_only, token)?;
            check_reply("read-only", &request, &reply)?;
            if !open {
                prop_assert_eq!(reply.status, 401, "{} {} without a valid token", request.method, request.target);
            }
        }
        check_reply("scratch", &request, &send(&scratch, TOKEN)?)?;
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}\nread-only log:\n{}\nscratch log:\n{}", read_only.log_text(), scratch.log_text());
    }
    assert_eq!(listing(&read_only), before, "the read-only server's data changed");
    assert_eq!(healthz_within_a_second(read_only.addr).status, 200);
    assert_eq!(healthz_within_a_second(scratch.addr).status, 200);
}
