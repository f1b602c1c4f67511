//! Test harness: runs the real `callmgr` binary on 127.0.0.1 with an ephemeral port and a temp
//! data dir, talks to it over HTTP, and provides a scriptable fake provider. Every wait is a
//! condition with a deadline, never a sleep.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const TOKEN: &str = "test-token-1234";

/// Polls `condition` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The binary under test: this build's, or `TEST_CALLMGR_BINARY` (to check that a regression
/// test fails on an older build).
pub fn binary() -> PathBuf {
    std::env::var_os("TEST_CALLMGR_BINARY").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_callmgr")))
}

/// Settings of one test server.
pub struct Options {
    pub provider_url: String,
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: u32,
    pub callback_timeout: String,
    pub duplicate_window: String,
    pub retry_yaml: String,
    pub mock_delay: String,
    pub extra_yaml: String,
    pub env: Vec<(String, String)>,
    /// The `tokens:` value, YAML (default: the one admin token `TOKEN`).
    pub tokens: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            provider_url: "builtin-mock".into(),
            max_concurrent_calls: 100,
            max_calls_per_second: 10_000,
            callback_timeout: "10m".into(),
            duplicate_window: "5m".into(),
            retry_yaml: "defaults: {max_attempts: 3, retry_interval_minutes: 60}\n".into(),
            // Long enough that builtin-mock calls stay PROCESSING during a test.
            mock_delay: "1h".into(),
            extra_yaml: String::new(),
            env: Vec::new(),
            tokens: format!("[{TOKEN}]"),
        }
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    agent: ureq::Agent,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into()
}

impl Server {
    pub fn start(options: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let retry_path = dir.path().join("retry.yaml");
        std::fs::write(&retry_path, &options.retry_yaml).unwrap();
        let config_path = dir.path().join("callmgr.yaml");
        let config = format!(
            "listen: 127.0.0.1:0\n\
             data_dir: {data}\n\
             tokens: {tokens}\n\
             max_concurrent_calls: {max}\n\
             max_calls_per_second: {rate}\n\
             duplicate_window: {dup}\n\
             callback_timeout: {cbt}\n\
             provider: {{url: \"{url}\", timeout: 2s, max_send_attempts: 3, mock: {{delay: \"{delay}\"}}}}\n\
             workers: 8\n\
             retry_config: {retry}\n\
             log: {{level: \"info\", format: text}}\n{extra}",
            data = dir.path().join("data").display(),
            max = options.max_concurrent_calls,
            rate = options.max_calls_per_second,
            dup = options.duplicate_window,
            cbt = options.callback_timeout,
            url = options.provider_url,
            delay = options.mock_delay,
            retry = retry_path.display(),
            extra = options.extra_yaml,
            tokens = options.tokens,
        );
        std::fs::write(&config_path, config).unwrap();
        let mut server = Server {
            dir,
            config_path,
            child: None,
            addr: "127.0.0.1:1".parse().unwrap(),
            log: Arc::new(Mutex::new(Vec::new())),
            env: options.env,
            agent: agent(),
        };
        server.launch();
        server
    }

    /// Starts the binary on the same config and data dir and waits for it to listen.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut command = Command::new(binary());
        command.arg("serve").arg("--config").arg(&self.config_path).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("RUST_LOG");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("callmgr starts");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("callmgr listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                log.lock().unwrap().push(line);
            }
        });
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        self.child = Some(child);
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => panic!("callmgr did not start listening; log:\n{}", self.log_text()),
        };
        self.addr = addr.parse().expect("listen address");
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the crash case.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe_free_sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("callmgr did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.request_with(method, path, body, Some(TOKEN))
    }

    pub fn request_with(&self, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> (u16, Value) {
        let raw = body.map(|b| b.to_string());
        let (status, text) = self.raw(method, path, raw.as_deref(), token.map(|t| ("X-Auth-Token", t.to_string())));
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// A request with a raw body and one optional header; returns status and body text.
    pub fn raw(&self, method: &str, path: &str, body: Option<&str>, header: Option<(&str, String)>) -> (u16, String) {
        let url = self.url(path);
        let builder = ureq::http::Request::builder().method(method).uri(&url).header("Content-Type", "application/json");
        let builder = match &header {
            Some((name, value)) => builder.header(*name, value),
            None => builder,
        };
        let request = builder.body(body.unwrap_or("").to_string()).unwrap();
        match self.agent.run(request) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().with_config().limit(256 * 1024 * 1024).read_to_string().unwrap_or_default();
                (status, text)
            }
            Err(error) => (0, error.to_string()),
        }
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(&body))
    }

    pub fn create_campaign(&self, body: Value) -> u64 {
        let (status, campaign) = self.post("/api/v1/campaigns/", body);
        assert_eq!(status, 201, "{campaign}");
        campaign["id"].as_u64().unwrap()
    }

    pub fn initiate(&self, campaign_id: u64, phone: &str) -> Value {
        let (status, call) = self.post("/api/v1/initiate-call/", json!({"phone_number": phone, "campaign_id": campaign_id}));
        assert_eq!(status, 201, "initiate {phone}: {call}");
        call
    }

    pub fn call(&self, call_id: &str) -> Value {
        self.get(&format!("/api/v1/calls/{call_id}/"))
    }

    pub fn callback(&self, body: Value) -> (u16, Value) {
        self.request("PUT", "/api/v1/callback/", Some(&body))
    }

    pub fn wait_status(&self, call_id: &str, status: &str) -> Value {
        wait_until(&format!("call {call_id} to be {status}"), Duration::from_secs(20), || {
            let call = self.call(call_id);
            (call["status"] == status).then_some(call)
        })
    }

    pub fn metrics(&self) -> Value {
        self.get("/api/v1/metrics/")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_free_sigterm(pid: u32) {
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill runs");
    assert!(status.success());
}

/// A phone number unique within a test: `+1555` followed by `n` in 7 digits.
pub fn phone(n: u64) -> String {
    format!("+1555{n:07}")
}

// ---------------------------------------------------------------------------------------------
// A fake provider for dialing tests: records every request and answers what the test scripted.

#[derive(Clone, Debug)]
pub struct Dialled {
    pub call_id: String,
    pub attempt: u64,
    pub idempotency_key: String,
    pub authorization: Option<String>,
    pub body: Value,
    pub at: Instant,
}

#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this external id (`{n}` is replaced by the request number).
    Accept,
    /// This status with this body.
    Status(u16, String),
    /// 200 like `Accept`, but only after this pause (so a callback can overtake the answer).
    Slow(Duration),
}

pub struct FakeProvider {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Dialled>>>,
    pub answer: Arc<Mutex<Answer>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeProvider {
    pub fn start() -> FakeProvider {
        use axum::routing::post;
        let requests: Arc<Mutex<Vec<Dialled>>> = Arc::default();
        let answer = Arc::new(Mutex::new(Answer::Accept));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (reqs, ans) = (requests.clone(), answer.clone());
        let app = axum::Router::new().route(
            "/dial",
            post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (reqs, ans) = (reqs.clone(), ans.clone());
                async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let n = {
                        let mut reqs = reqs.lock().unwrap();
                        reqs.push(Dialled {
                            call_id: body["call_id"].as_str().unwrap_or_default().to_string(),
                            attempt: body["attempt"].as_u64().unwrap_or(0),
                            idempotency_key: header("idempotency-key").unwrap_or_default(),
                            authorization: header("authorization"),
                            body: body.clone(),
                            at: Instant::now(),
                        });
                        reqs.len()
                    };
                    let answer = ans.lock().unwrap().clone();
                    match answer {
                        Answer::Accept => (axum::http::StatusCode::OK, json!({"external_call_id": format!("ext-{n}")}).to_string()),
                        Answer::Status(code, text) => (axum::http::StatusCode::from_u16(code).unwrap(), text),
                        Answer::Slow(pause) => {
                            tokio::time::sleep(pause).await;
                            (axum::http::StatusCode::OK, json!({"external_call_id": format!("ext-{n}")}).to_string())
                        }
                    }
                }
            }),
        );
        runtime.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeProvider { addr, requests, answer, runtime: Some(runtime) }
    }

    pub fn url(&self) -> String {
        format!("http://{}/dial", self.addr)
    }

    pub fn set_answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn dialled(&self) -> Vec<Dialled> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn wait_count(&self, n: usize) -> Vec<Dialled> {
        wait_until(&format!("{n} dial requests"), Duration::from_secs(20), || {
            let all = self.dialled();
            (all.len() >= n).then_some(all)
        })
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP, for requests an HTTP client library would refuse to send (any method,
// any body on any method, a request that is never finished) and for answers read byte by byte.

/// One HTTP answer: status, headers (names in lower case) and the decoded body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Reads a response head (status line and headers) byte by byte, so nothing after it is consumed.
pub fn read_response_head(stream: &mut std::net::TcpStream) -> std::io::Result<(u16, Vec<(String, String)>)> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("connection closed after {} bytes of head", head.len())));
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head longer than 64 KiB"));
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers = lines.filter_map(|line| line.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    Ok((status, headers))
}

/// Decodes a chunked body; `None` when it is cut off before the last (empty) chunk.
pub fn decode_chunked(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if raw.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Sends one request exactly as given on a fresh connection (`Connection: close`) and reads the
/// whole answer; every read is bounded by `timeout`.
pub fn send_raw(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&[u8]>, timeout: Duration) -> std::io::Result<Reply> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes)?;
    let (status, response_headers) = read_response_head(&mut stream)?;
    let mut raw = Vec::new();
    if method != "HEAD" {
        match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            // The server may reset a connection whose request body it did not read.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => return Err(e),
        }
    }
    let mut reply = Reply { status, headers: response_headers, body: Vec::new() };
    reply.body = if reply.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decode_chunked(&raw).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "chunked body cut off"))?
    } else {
        raw
    };
    Ok(reply)
}

impl Server {
    /// `send_raw` to this server with a 30 s bound; panics when the exchange fails.
    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        send_raw(self.addr, method, target, headers, body, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }
}
