//! The dashboard's HTTP side: the API answers it reads, parsed into plain structs, and the
//! poller thread that fetches them every interval and runs pause/resume requests. It never
//! touches the terminal; the UI thread only ever receives finished `Update`s from it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Connect timeout of every request: an unreachable service is reported quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-request timeout: a stalled service cannot freeze the poller for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer body read; a metrics answer is a few kilobytes, a campaign page a few hundred.
const ANSWER_BODY_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Campaign list pages read per poll (at the service's default page size).
const CAMPAIGN_LIST_PAGES_MAX: usize = 20;
/// Campaigns whose stats are fetched (one request each) and shown per poll.
pub const CAMPAIGN_ROWS_MAX: usize = 50;
/// Characters of an error answer kept in a message.
const ERROR_EXCERPT_MAX_CHARS: usize = 200;

/// `GET /api/v1/metrics/`. The reference system's fields are required; the dashboard extras
/// default to zero so that the dashboard still shows an older service.
#[derive(Clone, Debug, Deserialize)]
pub struct Metrics {
    pub current_concurrent_calls: u64,
    pub max_concurrent_calls: u64,
    pub system_status: String,
    #[serde(default)]
    pub queue_depth: u64,
    #[serde(default)]
    pub held_by_paused_campaigns: u64,
    #[serde(default)]
    pub retrying: u64,
    #[serde(default)]
    pub calls_by_status: BTreeMap<String, u64>,
    /// Last 7 days, newest (today) first.
    #[serde(default)]
    pub recent_metrics: Vec<DayMetrics>,
    #[serde(default)]
    pub rates: Rates,
    #[serde(default)]
    pub series: Series,
    #[serde(default)]
    pub provider: ProviderMetrics,
    #[serde(default)]
    pub dead_letters: u64,
    #[serde(default)]
    pub writer_queue: u64,
    #[serde(default)]
    pub uptime_seconds: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct DayMetrics {
    pub date: String,
    pub total_calls_initiated: u64,
    pub total_calls_dialled: u64,
    pub total_calls_picked: u64,
    pub total_calls_disconnected: u64,
    pub total_calls_rnr: u64,
    pub total_calls_failed: u64,
    pub total_retries: u64,
    pub peak_concurrent_calls: u64,
}

/// Averages over the last `window_seconds`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Rates {
    pub window_seconds: u64,
    pub accepted_per_second: f64,
    pub dials_per_second: f64,
    pub completions_per_second: f64,
}

/// Per-second counts, oldest first, the current second last.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Series {
    pub seconds: u64,
    pub dials: Vec<u64>,
    pub completions: Vec<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProviderMetrics {
    /// `None` until the first dial request.
    pub latency_ms_p50: Option<u64>,
    pub latency_ms_p99: Option<u64>,
    pub transport_errors: u64,
    pub refusals: u64,
    /// Newest first.
    pub recent_errors: Vec<ProviderError>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProviderError {
    pub at: String,
    pub message: String,
}

/// A campaign as `GET campaigns/{id}/` shows it (the list leaves `stats` out).
#[derive(Clone, Debug, Deserialize)]
pub struct Campaign {
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub stats: Option<CampaignStats>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CampaignStats {
    pub calls_by_status: BTreeMap<String, u64>,
    pub total_calls: u64,
    pub phone_count: u64,
    pub in_flight: u64,
}

/// `{results, next_cursor}`.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub results: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Everything one poll read.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub metrics: Metrics,
    /// The campaigns shown, with stats, in display order (at most `CAMPAIGN_ROWS_MAX`).
    pub campaigns: Vec<Campaign>,
    /// How many campaigns the list held (more than shown when it was cut).
    pub campaigns_listed: usize,
    /// Whether the list had more pages than one poll reads.
    pub campaigns_truncated: bool,
    /// When the poll finished, `HH:MM:SSZ` (UTC, like the service's timestamps).
    pub fetched_at: String,
}

/// What the poller reports to the UI thread.
#[derive(Debug)]
pub enum Update {
    Snapshot(Box<Snapshot>),
    /// A poll failed: the service is unreachable or answered with an error.
    PollFailed(String),
    /// A pause/resume request finished: the message to show, and whether it succeeded.
    ActionDone {
        message: String,
        ok: bool,
    },
}

/// What the UI asks the poller to do besides polling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Pause { id: u64, name: String },
    Resume { id: u64, name: String },
}

/// A blocking client of the service's API.
pub struct ApiClient {
    agent: ureq::Agent,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8000`.
    base_url: String,
    token: String,
}

impl ApiClient {
    pub fn new(base_url: &str, token: &str) -> ApiClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("callmgr-tui/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        ApiClient { agent, base_url: base_url.trim_end_matches('/').to_string(), token: token.to_string() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base_url)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let response = self.agent.get(self.url(path)).header("X-Auth-Token", &self.token).call();
        answer(response)
    }

    fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let response = self.agent.post(self.url(path)).header("X-Auth-Token", &self.token).send_empty();
        answer(response)
    }

    /// One poll: metrics, the campaign list, and the stats of the campaigns shown.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        let metrics: Metrics = self.get("metrics/")?;
        let mut listed: Vec<Campaign> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut truncated = false;
        for page_number in 0..CAMPAIGN_LIST_PAGES_MAX {
            let path = match &cursor {
                None => "campaigns/".to_string(),
                Some(c) => format!("campaigns/?cursor={c}"),
            };
            let page: Page<Campaign> = self.get(&path)?;
            listed.extend(page.results);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
            truncated = page_number + 1 == CAMPAIGN_LIST_PAGES_MAX;
        }
        let campaigns_listed = listed.len();
        let shown = choose_campaigns(listed);
        let campaigns = shown.iter().map(|c| self.get::<Campaign>(&format!("campaigns/{}/", c.id))).collect::<Result<Vec<_>, _>>()?;
        let fetched_at = jiff::Timestamp::now().strftime("%H:%M:%SZ").to_string();
        Ok(Snapshot { metrics, campaigns, campaigns_listed, campaigns_truncated: truncated, fetched_at })
    }

    /// Runs a pause/resume request; the message says what happened either way.
    pub fn perform(&self, request: &Request) -> (String, bool) {
        let (id, name, verb, done) = match request {
            Request::Pause { id, name } => (id, name, "pause", "paused"),
            Request::Resume { id, name } => (id, name, "resume", "resumed"),
        };
        match self.post::<Campaign>(&format!("campaigns/{id}/{verb}/")) {
            Ok(campaign) => (format!("campaign {id} ({name}) {done}: now {}", campaign.status), true),
            Err(error) => (format!("{verb} campaign {id} ({name}) failed: {error}"), false),
        }
    }
}

/// Reads an answer: 2xx bodies parse into `T`; anything else becomes a one-line message.
fn answer<T: DeserializeOwned>(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T, String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text =
        response.body_mut().with_config().limit(ANSWER_BODY_MAX_BYTES).read_to_string().map_err(|e| format!("HTTP {status}: reading the answer: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(error_message(status, &text));
    }
    serde_json::from_str(&text).map_err(|e| format!("HTTP {status}: unexpected answer: {e}"))
}

/// `HTTP 409 conflict: Campaign is stopped` from the API's error shape, or an excerpt of the body.
pub fn error_message(status: u16, body: &str) -> String {
    #[derive(Deserialize)]
    struct Shape {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: String,
        message: String,
    }
    let mut message = match serde_json::from_str::<Shape>(body) {
        Ok(shape) => format!("HTTP {status} {}: {}", shape.error.code, shape.error.message),
        Err(_) => format!("HTTP {status}: {}", body.chars().take(ERROR_EXCERPT_MAX_CHARS).collect::<String>().trim()),
    };
    if status == 401 {
        message.push_str(" (check --token or X_AUTH_TOKEN)");
    }
    message
}

/// The campaigns worth a row: active first, then paused, then stopped; newest first within
/// each, so that a long history of stopped campaigns never hides a running one.
pub fn choose_campaigns(mut listed: Vec<Campaign>) -> Vec<Campaign> {
    let rank = |status: &str| match status {
        "active" => 0,
        "paused" => 1,
        "stopped" => 2,
        _ => 3,
    };
    listed.sort_by(|a, b| rank(&a.status).cmp(&rank(&b.status)).then(b.id.cmp(&a.id)));
    listed.truncate(CAMPAIGN_ROWS_MAX);
    listed
}

/// Polls every `interval` and runs requests as they come, until either channel closes (the
/// UI dropped its ends). After a request it polls at once so the screen shows its effect.
pub fn poll_loop(client: ApiClient, interval: Duration, requests: Receiver<Request>, updates: Sender<Update>) {
    let mut next_poll = Instant::now();
    loop {
        let update = match requests.recv_timeout(next_poll.saturating_duration_since(Instant::now())) {
            Ok(request) => {
                let (message, ok) = client.perform(&request);
                next_poll = Instant::now();
                Update::ActionDone { message, ok }
            }
            Err(RecvTimeoutError::Timeout) => {
                let update = match client.snapshot() {
                    Ok(snapshot) => Update::Snapshot(Box::new(snapshot)),
                    Err(error) => Update::PollFailed(error),
                };
                next_poll = Instant::now() + interval;
                update
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(id: u64, status: &str) -> Campaign {
        Campaign { id, name: format!("c{id}"), status: status.into(), stats: None }
    }

    #[test]
    fn running_campaigns_come_first_newest_first() {
        let listed = vec![campaign(1, "stopped"), campaign(2, "active"), campaign(3, "paused"), campaign(4, "active"), campaign(5, "stopped")];
        let ids: Vec<u64> = choose_campaigns(listed).iter().map(|c| c.id).collect();
        assert_eq!(ids, [4, 2, 3, 5, 1]);
    }

    #[test]
    fn rows_are_bounded() {
        let listed = (1..=CAMPAIGN_ROWS_MAX as u64 + 10).map(|id| campaign(id, "stopped")).collect();
        assert_eq!(choose_campaigns(listed).len(), CAMPAIGN_ROWS_MAX);
    }

    #[test]
    fn error_answers_become_one_line() {
        let body = r#"{"error":{"code":"conflict","details":{},"message":"Campaign is stopped"}}"#;
        assert_eq!(error_message(409, body), "HTTP 409 conflict: Campaign is stopped");
        assert!(error_message(401, "{}").contains("--token"));
        assert_eq!(error_message(502, "bad gateway\n"), "HTTP 502: bad gateway");
    }

    #[test]
    fn unreachable_service_is_an_error_not_a_hang() {
        // A port that was just free: nothing listens there, so the connect is refused at once.
        let address = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let client = ApiClient::new(&format!("http://{address}/"), "t");
        assert!(client.snapshot().is_err());
    }
}
