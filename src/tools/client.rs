//! The one blocking client of the service's HTTP API that every tool uses (importer, dashboard,
//! retry-plan, bench): base URL and token, timeouts, bounded answer reads, typed methods that
//! return the `protocol::api` wire types, the API's error shape turned into one readable
//! message, and a retry helper that honours `Retry-After` for the tools that retry.
//!
//! It knows the API only through `protocol::api` and never reaches into `crate::service`. It
//! prints nothing and never touches a terminal: the callers decide what to show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::api;

/// Connect timeout unless the options say otherwise: an unreachable service is reported soon.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Whole-request timeout unless the options say otherwise.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Largest answer read unless the options say otherwise: an answer to 10,000 numbers lists the
/// created ones (about 200 KB) and a page of 1,000 calls with their attempts is about 1 MB.
pub const ANSWER_BODY_MAX_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
/// Characters of a non-JSON error answer kept in a message.
const ERROR_EXCERPT_MAX_CHARS: usize = 200;

/// How a client talks to the service.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// The whole request, answer included.
    pub request_timeout: Duration,
    /// Answers longer than this are refused (`ClientError::Unexpected`).
    pub answer_body_max_bytes: u64,
    /// Connections kept open for reuse (the bench's many threads each have their own client).
    pub idle_connections_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            answer_body_max_bytes: ANSWER_BODY_MAX_BYTES_DEFAULT,
            idle_connections_per_host: 2,
        }
    }
}

/// Why a request did not give the answer asked for. `Display` is one readable line.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// No answer: refused connection, DNS, timeout, reset.
    #[error("the service at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// 401 (no valid token) or 403 (the token's role may not do this).
    #[error("{}", unauthorized_text(url, *status, message))]
    Unauthorized { url: String, status: u16, message: String },
    /// Any other answer outside 2xx, in the API's error shape when it had one.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        /// The shape's `code` (`not_found`, `conflict`, …), or `http` for an answer without it.
        code: String,
        message: String,
        details: serde_json::Value,
        /// `Retry-After`, in seconds, when the answer had one.
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not the JSON expected, or one too long to read.
    #[error("HTTP {status}: unexpected answer to {path}: {reason}")]
    Unexpected { status: u16, path: String, reason: String },
}

fn unauthorized_text(url: &str, status: u16, message: &str) -> String {
    match status {
        401 => format!("the service at {url} refused the token (401 unauthorized); pass --token or set X_AUTH_TOKEN"),
        _ => format!("the service at {url} refused the token for this request ({status} forbidden: {message}); use a token whose role allows it"),
    }
}

impl ClientError {
    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Unreachable { .. } => None,
            ClientError::Unauthorized { status, .. } | ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => Some(*status),
        }
    }

    /// The error shape's `details.field`, when the service named the field it refused.
    pub fn field(&self) -> Option<&str> {
        match self {
            ClientError::Api { details, .. } => details.get("field").and_then(|f| f.as_str()),
            _ => None,
        }
    }

    /// Worth sending again: the service is busy (502, 503, 504) or did not answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. }) || matches!(self.status(), Some(502..=504))
    }
}

/// Filters of `GET calls/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub campaign_id: Option<u64>,
    /// A status name such as `RETRYING`.
    pub status: Option<String>,
    pub phone_number: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// `?a=1&b=2` from the pairs given (values percent-encoded), or `""` when there are none.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs {
        if let Some(value) = value {
            out.append_pair(name, value);
            any = true;
        }
    }
    if any { format!("?{}", out.finish()) } else { String::new() }
}

/// A blocking client of one service. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct ApiClient {
    agent: ureq::Agent,
    /// Without a trailing slash, e.g. `http://127.0.0.1:8000`.
    base: String,
    token: String,
    answer_body_max_bytes: u64,
}

impl ApiClient {
    pub fn new(url: &str, token: &str) -> ApiClient {
        ApiClient::with_options(url, token, &ClientOptions::default())
    }

    pub fn with_options(url: &str, token: &str, options: &ClientOptions) -> ApiClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.request_timeout))
            .max_idle_connections_per_host(options.idle_connections_per_host.max(1))
            .build()
            .into();
        ApiClient { agent, base: url.trim_end_matches('/').to_string(), token: token.to_string(), answer_body_max_bytes: options.answer_body_max_bytes }
    }

    /// The service's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    // -----------------------------------------------------------------------------------------
    // Campaigns

    pub fn campaign(&self, id: u64) -> Result<api::Campaign, ClientError> {
        self.get(&format!("/api/v1/campaigns/{id}/"))
    }

    /// One page of campaigns (without stats), from `cursor`.
    pub fn campaigns(&self, cursor: Option<&str>) -> Result<api::Page<api::Campaign>, ClientError> {
        self.get(&format!("/api/v1/campaigns/{}", query(&[("cursor", cursor.map(str::to_string))])))
    }

    pub fn create_campaign(&self, campaign: &api::NewCampaign) -> Result<api::Campaign, ClientError> {
        self.send("POST", "/api/v1/campaigns/", Some(campaign))
    }

    pub fn patch_campaign(&self, id: u64, patch: &api::CampaignPatch) -> Result<api::Campaign, ClientError> {
        self.send("PATCH", &format!("/api/v1/campaigns/{id}/"), Some(patch))
    }

    pub fn pause(&self, id: u64) -> Result<api::Campaign, ClientError> {
        self.send::<(), _>("POST", &format!("/api/v1/campaigns/{id}/pause/"), None)
    }

    pub fn resume(&self, id: u64) -> Result<api::Campaign, ClientError> {
        self.send::<(), _>("POST", &format!("/api/v1/campaigns/{id}/resume/"), None)
    }

    /// Stops the campaign: its waiting calls are cancelled.
    pub fn stop(&self, id: u64) -> Result<api::Campaign, ClientError> {
        self.send::<(), _>("POST", &format!("/api/v1/campaigns/{id}/stop/"), None)
    }

    /// The campaign's numbers, or only `phone_number` when given.
    pub fn campaign_numbers(&self, id: u64, phone_number: Option<&str>) -> Result<api::Page<api::Number>, ClientError> {
        self.get(&format!("/api/v1/campaigns/{id}/phone-numbers/{}", query(&[("phone_number", phone_number.map(str::to_string))])))
    }

    // -----------------------------------------------------------------------------------------
    // Numbers, the do-not-call list, calls

    pub fn add_numbers(&self, request: &api::AddNumbers) -> Result<api::NumbersAdded, ClientError> {
        self.send("POST", "/api/v1/phone-numbers/", Some(request))
    }

    pub fn add_dnc(&self, request: &api::AddDnc) -> Result<api::DncAdded, ClientError> {
        self.send("POST", "/api/v1/dnc/", Some(request))
    }

    /// One page of do-not-call entries: one campaign's, or all of them.
    pub fn dnc_entries(&self, campaign_id: Option<u64>, limit: Option<usize>) -> Result<api::Page<api::DncEntry>, ClientError> {
        self.get(&format!("/api/v1/dnc/{}", query(&[("campaign_id", campaign_id.map(|id| id.to_string())), ("limit", limit.map(|n| n.to_string()))])))
    }

    pub fn initiate_call(&self, request: &api::InitiateCall) -> Result<api::Call, ClientError> {
        self.send("POST", "/api/v1/initiate-call/", Some(request))
    }

    pub fn bulk_initiate(&self, request: &api::BulkInitiate) -> Result<api::BulkAccepted, ClientError> {
        self.send("POST", "/api/v1/bulk-initiate-calls/", Some(request))
    }

    /// One page of calls, oldest first (the API lists them in id order, and ids are time-ordered).
    pub fn calls(&self, filter: &CallFilter) -> Result<api::Page<api::Call>, ClientError> {
        let pairs = [
            ("campaign_id", filter.campaign_id.map(|id| id.to_string())),
            ("status", filter.status.clone()),
            ("phone_number", filter.phone_number.clone()),
            ("limit", filter.limit.map(|n| n.to_string())),
            ("cursor", filter.cursor.clone()),
        ];
        self.get(&format!("/api/v1/calls/{}", query(&pairs)))
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    pub fn metrics(&self) -> Result<api::Metrics, ClientError> {
        self.get("/api/v1/metrics/")
    }

    /// One page of dead letters, oldest first.
    pub fn dead_letters(&self, cursor: Option<&str>, limit: Option<usize>) -> Result<api::Page<api::DeadLetter>, ClientError> {
        self.get(&format!("/api/v1/dlq/{}", query(&[("limit", limit.map(|n| n.to_string())), ("cursor", cursor.map(str::to_string))])))
    }

    /// Puts dead letter `id` back in the queue; answers the call as it now is.
    pub fn replay(&self, id: u64) -> Result<api::Call, ClientError> {
        self.send::<(), _>("POST", &format!("/api/v1/dlq/{id}/replay/"), None)
    }

    /// Replays every matching dead letter at once. A service without this endpoint answers 404.
    pub fn replay_dead_letters(&self, request: &api::ReplayDeadLetters) -> Result<api::DeadLettersReplayed, ClientError> {
        self.send("POST", "/api/v1/dlq/replay/", Some(request))
    }

    /// `POST admin/backup/`: the service writes a consistent backup on its own disk.
    pub fn backup(&self, request: &api::BackupRequest) -> Result<api::Backup, ClientError> {
        self.send("POST", "/api/v1/admin/backup/", Some(request))
    }

    /// `GET /readyz`: `true` on 200, `false` while the service says it is not ready (503).
    pub fn ready(&self) -> Result<bool, ClientError> {
        match self.get::<serde_json::Value>("/readyz") {
            Ok(_) => Ok(true),
            Err(error) if error.status() == Some(503) => Ok(false),
            Err(error) => Err(error),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The exchange

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send::<(), T>("GET", path, None)
    }

    /// Sends `body` as JSON to `path` (with its query) and reads a JSON answer of type `T`.
    fn send<B: Serialize, T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<&B>) -> Result<T, ClientError> {
        let text = match body {
            Some(body) => serde_json::to_string(body).expect("request bodies are plain data and serialise"),
            None => String::new(),
        };
        let (status, retry_after, answer) = self.exchange(method, path, text)?;
        if !(200..300).contains(&status) {
            return Err(self.error_of(status, retry_after, &answer));
        }
        let bare_path = path.split('?').next().unwrap_or(path).to_string();
        serde_json::from_str(&answer).map_err(|e| ClientError::Unexpected { status, path: bare_path, reason: e.to_string() })
    }

    fn exchange(&self, method: &str, path: &str, body: String) -> Result<(u16, Option<Duration>, String), ClientError> {
        let unreachable = |error: ureq::Error| ClientError::Unreachable { url: self.base.clone(), reason: error.to_string() };
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body)
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: format!("cannot build the request: {e}") })?;
        let mut response = self.agent.run(request).map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).map(Duration::from_secs);
        let text = response.body_mut().with_config().limit(self.answer_body_max_bytes).read_to_string().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(limit) => ClientError::Unexpected {
                status,
                path: path.split('?').next().unwrap_or(path).to_string(),
                reason: format!("the answer is longer than {limit} bytes"),
            },
            other => unreachable(other),
        })?;
        Ok((status, retry_after, text))
    }

    fn error_of(&self, status: u16, retry_after: Option<Duration>, body: &str) -> ClientError {
        let shape = serde_json::from_str::<api::ErrorBody>(body).ok();
        let (code, message, details) = match shape {
            Some(shape) => (shape.error.code, shape.error.message, shape.error.details),
            None => ("http".to_string(), body.chars().take(ERROR_EXCERPT_MAX_CHARS).collect::<String>().trim().to_string(), serde_json::Value::Null),
        };
        match status {
            401 | 403 => ClientError::Unauthorized { url: self.base.clone(), status, message },
            _ => ClientError::Api { status, code, message, details, retry_after },
        }
    }
}

/// How a tool that retries waits: a bounded number of sends, doubling waits, and at least what
/// the service asked for with `Retry-After`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Sends while the service answers 502/503/504 (it is busy and says so).
    pub busy_attempts_max: u32,
    /// Sends while the service cannot be reached.
    pub unreachable_attempts_max: u32,
    /// The first wait when the service gave no `Retry-After`; doubled after each send.
    pub wait_first: Duration,
    /// The longest wait, whatever `Retry-After` says.
    pub wait_max: Duration,
}

impl RetryPolicy {
    /// The wait before send `attempt + 1` after `error` ended send `attempt` (from 1), given the
    /// back-off reached so far; `None` when the error is not transient or the sends are used up.
    pub fn wait_after(&self, error: &ClientError, attempt: u32, backoff: Duration) -> Option<Duration> {
        let attempts_max = match error {
            ClientError::Unreachable { .. } => self.unreachable_attempts_max,
            _ if error.is_transient() => self.busy_attempts_max,
            _ => return None,
        };
        if attempt >= attempts_max {
            return None;
        }
        let asked = match error {
            ClientError::Api { retry_after, .. } => retry_after.unwrap_or_default(),
            _ => Duration::ZERO,
        };
        Some(backoff.max(asked).min(self.wait_max))
    }

    /// Runs `send` until it succeeds, fails for good, the sends are used up, or `stop` is set.
    pub fn run<T>(&self, stop: &AtomicBool, mut send: impl FnMut() -> Result<T, ClientError>) -> Result<T, ClientError> {
        let mut backoff = self.wait_first;
        let mut attempt = 1;
        loop {
            let error = match send() {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let Some(wait) = self.wait_after(&error, attempt, backoff) else { return Err(error) };
            if stop.load(Ordering::Relaxed) {
                return Err(error);
            }
            std::thread::sleep(wait);
            backoff = (wait * 2).min(self.wait_max);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ApiClient {
        ApiClient::new("http://127.0.0.1:8000/", "t")
    }

    #[test]
    fn the_error_shape_becomes_one_line() {
        let body = r#"{"error":{"code":"conflict","details":{},"message":"Campaign is stopped"}}"#;
        let error = client().error_of(409, None, body);
        assert_eq!(error.to_string(), "HTTP 409 conflict: Campaign is stopped");
        assert_eq!(error.status(), Some(409));
        assert!(!error.is_transient());
        let field = client().error_of(400, None, r#"{"error":{"code":"bad_request","message":"limit must be…","details":{"field":"limit"}}}"#);
        assert_eq!(field.field(), Some("limit"));
        assert_eq!(client().error_of(502, None, "bad gateway\n").to_string(), "HTTP 502 http: bad gateway");
        let long = "x".repeat(1000);
        assert_eq!(client().error_of(500, None, &long).to_string().len(), "HTTP 500 http: ".len() + ERROR_EXCERPT_MAX_CHARS);
    }

    #[test]
    fn a_refused_token_says_what_to_do() {
        let unauthorized = client().error_of(401, None, r#"{"error":{"code":"unauthorized","message":"no","details":{}}}"#);
        assert!(matches!(unauthorized, ClientError::Unauthorized { status: 401, .. }));
        assert_eq!(unauthorized.to_string(), "the service at http://127.0.0.1:8000 refused the token (401 unauthorized); pass --token or set X_AUTH_TOKEN");
        let forbidden = client().error_of(403, None, r#"{"error":{"code":"forbidden","message":"viewer tokens may only read","details":{}}}"#);
        assert!(forbidden.to_string().contains("403 forbidden: viewer tokens may only read"), "{forbidden}");
    }

    #[test]
    fn queries_are_encoded_and_absent_values_left_out() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(query(&[("phone_number", Some("+1 415".into())), ("x", None), ("limit", Some("5".into()))]), "?phone_number=%2B1+415&limit=5");
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { busy_attempts_max: 3, unreachable_attempts_max: 2, wait_first: Duration::from_millis(250), wait_max: Duration::from_secs(30) }
    }

    fn busy(retry_after: Option<u64>) -> ClientError {
        ClientError::Api {
            status: 503,
            code: "unavailable".into(),
            message: String::new(),
            details: serde_json::Value::Null,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn retries_wait_at_least_what_retry_after_asks_and_are_bounded() {
        let p = policy();
        let backoff = Duration::from_millis(250);
        assert_eq!(p.wait_after(&busy(Some(2)), 1, backoff), Some(Duration::from_secs(2)));
        assert_eq!(p.wait_after(&busy(None), 1, backoff), Some(backoff));
        assert_eq!(p.wait_after(&busy(Some(3600)), 1, backoff), Some(Duration::from_secs(30)), "capped");
        assert_eq!(p.wait_after(&busy(None), 3, backoff), None, "three sends at most");
        let unreachable = ClientError::Unreachable { url: "u".into(), reason: "refused".into() };
        assert_eq!(p.wait_after(&unreachable, 1, backoff), Some(backoff));
        assert_eq!(p.wait_after(&unreachable, 2, backoff), None);
        assert_eq!(p.wait_after(&client().error_of(500, None, "{}"), 1, backoff), None, "a 500 is not retried");
        assert_eq!(p.wait_after(&client().error_of(401, None, "{}"), 1, backoff), None);
    }

    #[test]
    fn run_stops_at_the_first_permanent_failure_or_success() {
        let p = RetryPolicy { wait_first: Duration::ZERO, ..policy() };
        let stop = AtomicBool::new(false);
        let mut sends = 0;
        let result = p.run(&stop, || {
            sends += 1;
            if sends < 3 { Err(busy(None)) } else { Ok(sends) }
        });
        assert_eq!(result, Ok(3));
        let mut sends = 0;
        let result: Result<(), _> = p.run(&stop, || {
            sends += 1;
            Err(client().error_of(500, None, "{}"))
        });
        assert!(result.is_err());
        assert_eq!(sends, 1);
        stop.store(true, Ordering::Relaxed);
        let mut sends = 0;
        let _ = p.run(&stop, || -> Result<(), _> {
            sends += 1;
            Err(busy(None))
        });
        assert_eq!(sends, 1, "a stop request ends the retries");
    }

    #[test]
    fn an_unreachable_service_is_an_error_not_a_hang() {
        // A port that was just free: nothing listens there, so the connect is refused at once.
        let address = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let error = ApiClient::new(&format!("http://{address}/"), "t").metrics().unwrap_err();
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error:?}");
        assert!(error.is_transient());
    }
}
