//! A stand-in telephony provider (DESIGN §5) for demos, tests and benchmarks: it answers dial
//! requests with an `external_call_id`, then after a delay sends the outcome callback itself,
//! drawn from a configurable mix, reproducibly with a seed. Used by `callmgr mock-provider` and,
//! with `provider.url: builtin-mock`, inside `serve`. It knows callmgr only through HTTP.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::core::model::Outcome;

/// Threads sending callbacks. Each waits for callmgr's commit (an fsync) before its next
/// callback, so enough of them must be in flight to fill callmgr's group commits.
const CALLBACK_SENDERS: usize = 32;
/// Sends of one callback before it is given up.
const CALLBACK_SEND_ATTEMPTS: u32 = 5;
/// Calls the mock holds at once before it answers 503 (protects a misconfigured test).
const ACTIVE_CALLS_MAX: usize = 1_000_000;

/// How long each call "rings and talks" before the callback: a uniform range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayRange {
    pub min: Duration,
    pub max: Duration,
}

/// Parses `1s..10s`, `0..250ms`, `500ms` or `0`.
pub fn parse_delay(text: &str) -> Result<DelayRange, String> {
    let one = |t: &str| -> Result<Duration, String> {
        let t = t.trim();
        if t == "0" { Ok(Duration::ZERO) } else { humantime::parse_duration(t).map_err(|e| format!("`{t}`: {e}")) }
    };
    let (min, max) = match text.split_once("..") {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let d = one(text)?;
            (d, d)
        }
    };
    if max < min {
        return Err(format!("delay `{text}`: the upper bound is below the lower"));
    }
    Ok(DelayRange { min, max })
}

/// Parses `PICKED=70,DISCONNECTED=15,RNR=10,FAILED=5` (weights, not necessarily summing to 100).
pub fn parse_mix(text: &str) -> Result<Vec<(Outcome, u32)>, String> {
    let mut mix = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').ok_or_else(|| format!("mix item `{part}` must be STATUS=WEIGHT"))?;
        let outcome = Outcome::parse(&name.trim().to_ascii_uppercase()).ok_or_else(|| format!("mix item `{part}`: unknown status `{name}`"))?;
        let weight: u32 = weight.trim().parse().map_err(|_| format!("mix item `{part}`: weight must be a whole number"))?;
        mix.push((outcome, weight));
    }
    if mix.iter().map(|(_, w)| *w as u64).sum::<u64>() == 0 {
        return Err("the outcome mix has no weight".into());
    }
    Ok(mix)
}

#[derive(Clone, Debug)]
pub struct MockSettings {
    pub delay: DelayRange,
    pub mix: Vec<(Outcome, u32)>,
    pub seed: u64,
    /// Token sent with callbacks (`X-Auth-Token`).
    pub token: String,
    /// Send callbacks here instead of the request's `callback_url`.
    pub callback_url: Option<String>,
}

/// SplitMix64: small, fast, and reproducible from a seed; enough for a mock's dice.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

struct PendingCallback {
    due: Instant,
    seq: u64,
    url: String,
    body: String,
    call_id: String,
}

impl PartialEq for PendingCallback {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for PendingCallback {}
impl PartialOrd for PendingCallback {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PendingCallback {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    duplicates: AtomicU64,
    callbacks_sent: AtomicU64,
    callbacks_failed: AtomicU64,
    by_outcome: [AtomicU64; 4],
}

struct Shared {
    settings: MockSettings,
    dice: Mutex<Dice>,
    queue: Mutex<BinaryHeap<Reverse<PendingCallback>>>,
    wake: Condvar,
    /// call id → phone number, for calls whose callback is not sent yet.
    active: Mutex<HashMap<String, String>>,
    /// Idempotency keys seen: a resend of the same attempt is answered, not dialled again.
    seen_keys: Mutex<HashMap<String, String>>,
    counters: Counters,
    next_id: AtomicU64,
}

#[derive(Clone)]
pub struct MockProvider(Arc<Shared>);

#[derive(Deserialize)]
struct DialBody {
    call_id: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    callback_url: Option<String>,
}

impl MockProvider {
    /// Creates the mock and starts its callback sender threads (they live as long as the process).
    pub fn start(settings: MockSettings) -> MockProvider {
        let shared = Arc::new(Shared {
            dice: Mutex::new(Dice(settings.seed)),
            settings,
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            active: Mutex::new(HashMap::new()),
            seen_keys: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            next_id: AtomicU64::new(1),
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .max_idle_connections_per_host(CALLBACK_SENDERS * 2)
            .build()
            .into();
        for i in 0..CALLBACK_SENDERS {
            let (shared, agent) = (shared.clone(), agent.clone());
            std::thread::Builder::new().name(format!("mock-callback-{i}")).spawn(move || send_callbacks(&shared, &agent)).expect("thread starts");
        }
        MockProvider(shared)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/initiate-call", post(dial))
            .route("/api/initiate-call/", post(dial))
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/api/active-calls", get(active_calls))
            .route("/api/stats", get(stats))
            .with_state(self.clone())
    }
}

async fn dial(State(mock): State<MockProvider>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> impl IntoResponse {
    let shared = &mock.0;
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(request) = serde_json::from_slice::<DialBody>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "body must be JSON with call_id"})));
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}:{}", request.call_id, request.attempt.unwrap_or(1)));
    if let Some(existing) = shared.seen_keys.lock().unwrap().get(&key) {
        shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::OK, Json(json!({"external_call_id": existing, "duplicate": true})));
    }
    if shared.active.lock().unwrap().len() >= ACTIVE_CALLS_MAX {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "mock is full"})));
    }
    let Some(url) = shared.settings.callback_url.clone().or(request.callback_url.clone()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "callback_url is required"})));
    };
    let external_call_id = format!("mock-{}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let (outcome, delay, duration) = {
        let mut dice = shared.dice.lock().unwrap();
        let total: u64 = shared.settings.mix.iter().map(|(_, w)| *w as u64).sum();
        let mut roll = dice.below(total);
        let mut outcome = shared.settings.mix[0].0;
        for (o, w) in &shared.settings.mix {
            if roll < *w as u64 {
                outcome = *o;
                break;
            }
            roll -= *w as u64;
        }
        let span = (shared.settings.delay.max - shared.settings.delay.min).as_millis() as u64;
        let delay = shared.settings.delay.min + Duration::from_millis(dice.below(span + 1));
        // The conversation fits inside the ring-and-talk delay: a picked call talked for most of it.
        let delay_seconds = delay.as_secs();
        let duration = if outcome == Outcome::Picked { delay_seconds - dice.below(delay_seconds / 4 + 1) } else { 0 };
        (outcome, delay, duration)
    };
    let body = json!({
        "call_id": request.call_id,
        "status": outcome.as_str(),
        "call_duration": duration,
        "external_call_id": external_call_id,
        "attempt": request.attempt,
    })
    .to_string();
    shared.seen_keys.lock().unwrap().insert(key, external_call_id.clone());
    shared.active.lock().unwrap().insert(request.call_id.clone(), request.phone_number.clone());
    shared.counters.by_outcome[Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0)].fetch_add(1, Ordering::Relaxed);
    let seq = shared.next_id.load(Ordering::Relaxed);
    shared.queue.lock().unwrap().push(Reverse(PendingCallback { due: Instant::now() + delay, seq, url, body, call_id: request.call_id }));
    shared.wake.notify_one();
    (StatusCode::OK, Json(json!({"external_call_id": external_call_id})))
}

fn send_callbacks(shared: &Shared, agent: &ureq::Agent) {
    loop {
        let next = {
            let mut queue = shared.queue.lock().unwrap();
            loop {
                let now = Instant::now();
                match queue.peek() {
                    Some(Reverse(head)) if head.due <= now => break queue.pop().map(|Reverse(p)| p),
                    Some(Reverse(head)) => {
                        let wait = head.due - now;
                        queue = shared.wake.wait_timeout(queue, wait).unwrap().0;
                    }
                    None => queue = shared.wake.wait(queue).unwrap(),
                }
            }
        };
        let Some(callback) = next else { continue };
        let mut delivered = false;
        for send in 1..=CALLBACK_SEND_ATTEMPTS {
            let result = agent.put(&callback.url).header("X-Auth-Token", &shared.settings.token).content_type("application/json").send(&callback.body);
            match result {
                // 2xx: applied; 409: callmgr already resolved the attempt (e.g. it timed out): nothing to resend.
                Ok(response) if response.status().is_success() || response.status().as_u16() == 409 => {
                    delivered = true;
                    break;
                }
                Ok(response) if response.status().is_client_error() => {
                    tracing::warn!(call_id = %callback.call_id, status = response.status().as_u16(), "mock provider: callback refused");
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(100 * send as u64)),
            }
        }
        let counter = if delivered { &shared.counters.callbacks_sent } else { &shared.counters.callbacks_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        shared.active.lock().unwrap().remove(&callback.call_id);
    }
}

async fn active_calls(State(mock): State<MockProvider>) -> Json<serde_json::Value> {
    let active = mock.0.active.lock().unwrap();
    let calls: Vec<_> = active.iter().take(100).map(|(id, phone)| json!({"call_id": id, "phone_number": phone})).collect();
    Json(json!({"active_calls": active.len(), "calls": calls}))
}

async fn stats(State(mock): State<MockProvider>) -> Json<serde_json::Value> {
    let c = &mock.0.counters;
    let by_outcome: serde_json::Map<String, serde_json::Value> =
        Outcome::ALL.iter().zip(&c.by_outcome).map(|(o, n)| (o.as_str().to_string(), json!(n.load(Ordering::Relaxed)))).collect();
    Json(json!({
        "requests": c.requests.load(Ordering::Relaxed),
        "duplicate_requests": c.duplicates.load(Ordering::Relaxed),
        "callbacks_sent": c.callbacks_sent.load(Ordering::Relaxed),
        "callbacks_failed": c.callbacks_failed.load(Ordering::Relaxed),
        "active_calls": mock.0.active.lock().unwrap().len(),
        "outcomes": by_outcome,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_and_mix_parse() {
        assert_eq!(parse_delay("1s..10s").unwrap(), DelayRange { min: Duration::from_secs(1), max: Duration::from_secs(10) });
        assert_eq!(parse_delay("0").unwrap(), DelayRange { min: Duration::ZERO, max: Duration::ZERO });
        assert!(parse_delay("5s..1s").is_err());
        assert!(parse_delay("soon").is_err());
        let mix = parse_mix("PICKED=70,DISCONNECTED=15,RNR=10,FAILED=5").unwrap();
        assert_eq!(mix.len(), 4);
        assert!(parse_mix("PICKED=0").is_err());
        assert!(parse_mix("ANSWERED=5").is_err());
    }

    #[test]
    fn dice_are_reproducible() {
        let roll = |seed| {
            let mut d = Dice(seed);
            (0..5).map(|_| d.below(100)).collect::<Vec<_>>()
        };
        assert_eq!(roll(7), roll(7));
        assert_ne!(roll(7), roll(8));
    }
}
