//! A stand-in telephony provider for demos, tests and benchmarks. It answers dial requests, then
//! after a delay sends the outcome itself, drawn from a configurable mix, reproducibly with a
//! seed. It speaks either protocol (`Protocol`): callmgr's `webhook` JSON (`webhook.rs`) or the
//! Twilio REST API with signed status callbacks (`twilio.rs`). Used by `callmgr mock-provider`
//! and, with `provider.url: builtin-mock`, inside `serve`. It knows callmgr only through HTTP and
//! the wire types of `crate::protocol`.
//!
//! This file holds what both protocols share: settings, the dice, the callback queue and its
//! sender threads, and the `/health`, `/api/stats` and `/api/active-calls` routes.

mod twilio;
mod webhook;

pub use twilio::twilio_final_status;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::core::model::Outcome;
use crate::protocol;

/// Threads sending callbacks. Each waits for callmgr's commit (an fsync) before its next
/// callback, so enough of them must be in flight to fill callmgr's group commits.
const CALLBACK_SENDERS: usize = 32;
/// Sends of one callback before it is given up.
const CALLBACK_SEND_ATTEMPTS: u32 = 5;
/// Calls the mock holds at once before it refuses new ones (protects a misconfigured test).
const ACTIVE_CALLS_MAX: usize = 1_000_000;

// The delay range and outcome mix are parsed with the configuration (`provider.mock.*`), so
// that `check-config` refuses a bad one; the CLI flags use the same parsers.
pub use crate::config::{DelayRange, parse_delay, parse_mix};

/// Which provider the mock plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// callmgr's JSON protocol: `POST /api/initiate-call`, callbacks by `PUT` with `X-Auth-Token`.
    Webhook,
    /// The Twilio REST API: `POST /2010-04-01/Accounts/{account_sid}/Calls.json` with HTTP Basic
    /// auth `account_sid:auth_token`, status callbacks signed with `auth_token`.
    Twilio { account_sid: String, auth_token: String },
}

impl Protocol {
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Webhook => "webhook",
            Protocol::Twilio { .. } => "twilio",
        }
    }
}

#[derive(Clone, Debug)]
pub struct MockSettings {
    pub delay: DelayRange,
    pub mix: Vec<(Outcome, u32)>,
    pub seed: u64,
    pub protocol: Protocol,
    /// Webhook: the token sent with callbacks (`X-Auth-Token`). Twilio sends none.
    pub token: String,
    /// Webhook: when set, callbacks carry `X-Callmgr-Signature` (HMAC-SHA256 of the body).
    pub callback_secret: Option<String>,
    /// Send callbacks here instead of the request's `callback_url` (webhook) or `StatusCallback`
    /// (Twilio; the signature then covers this URL, the one actually requested).
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

/// One call's fate, drawn when it is dialled.
struct Draw {
    outcome: Outcome,
    /// From the dial to the final callback: ringing plus, for a picked call, the conversation.
    ring_and_talk: Duration,
    /// Seconds of conversation: 0 unless picked.
    talk_seconds: u64,
}

/// How a queued callback goes out.
enum Delivery {
    /// `PUT url` with the JSON body, `X-Auth-Token` and, with a secret, `X-Callmgr-Signature`.
    Webhook { url: String, body: String },
    /// `POST url` with the form; `Timestamp` is added and `X-Twilio-Signature` computed at sending.
    Twilio { url: String, params: Vec<(String, String)> },
    /// Nothing to send (a Twilio call without `StatusCallback`): only the bookkeeping at `due`.
    Nothing,
}

struct PendingCallback {
    due: Instant,
    seq: u64,
    /// The key in `Shared::active` (webhook `call_id`, Twilio `CallSid`).
    active_key: String,
    /// The call's last callback: the call leaves `active` once it is handled.
    is_final: bool,
    delivery: Delivery,
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
    /// Dial requests answered 4xx (bad credentials, invalid fields).
    refused: AtomicU64,
    callbacks_sent: AtomicU64,
    callbacks_failed: AtomicU64,
    by_outcome: [AtomicU64; 4],
}

struct Shared {
    settings: MockSettings,
    dice: Mutex<Dice>,
    queue: Mutex<BinaryHeap<Reverse<PendingCallback>>>,
    wake: Condvar,
    /// Call key → phone number, for calls whose last callback is not handled yet.
    active: Mutex<HashMap<String, String>>,
    /// Webhook: idempotency keys seen, so a resend of the same attempt is answered, not dialled again.
    seen_keys: Mutex<HashMap<String, String>>,
    /// Twilio: the calls created, for `GET …/Calls/{sid}.json`.
    twilio_calls: Mutex<twilio::CallRecords>,
    counters: Counters,
    next_id: AtomicU64,
    next_seq: AtomicU64,
}

impl Shared {
    /// Draws one call's outcome, ring-and-talk delay and conversation length from the dice.
    fn draw(&self, dice: &mut Dice) -> Draw {
        let total: u64 = self.settings.mix.iter().map(|(_, w)| *w as u64).sum();
        let mut roll = dice.below(total);
        let mut outcome = self.settings.mix[0].0;
        for (o, w) in &self.settings.mix {
            if roll < *w as u64 {
                outcome = *o;
                break;
            }
            roll -= *w as u64;
        }
        let span = (self.settings.delay.max - self.settings.delay.min).as_millis() as u64;
        let ring_and_talk = self.settings.delay.min + Duration::from_millis(dice.below(span + 1));
        // The conversation fits inside the ring-and-talk delay: a picked call talked for most of it.
        let delay_seconds = ring_and_talk.as_secs();
        let talk_seconds = if outcome == Outcome::Picked { delay_seconds - dice.below(delay_seconds / 4 + 1) } else { 0 };
        self.counters.by_outcome[Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0)].fetch_add(1, Ordering::Relaxed);
        Draw { outcome, ring_and_talk, talk_seconds }
    }

    fn enqueue(&self, due: Instant, active_key: &str, is_final: bool, delivery: Delivery) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.queue.lock().unwrap().push(Reverse(PendingCallback { due, seq, active_key: active_key.to_string(), is_final, delivery }));
        self.wake.notify_one();
    }

    fn full(&self) -> bool {
        self.active.lock().unwrap().len() >= ACTIVE_CALLS_MAX
    }
}

#[derive(Clone)]
pub struct MockProvider(Arc<Shared>);

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
            twilio_calls: Mutex::new(twilio::CallRecords::default()),
            counters: Counters::default(),
            next_id: AtomicU64::new(1),
            next_seq: AtomicU64::new(0),
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            // ureq keeps 10 idle connections in all by default: the senders would open and close
            // a connection for most callbacks.
            .max_idle_connections(CALLBACK_SENDERS * 2)
            .max_idle_connections_per_host(CALLBACK_SENDERS * 2)
            .build()
            .into();
        for i in 0..CALLBACK_SENDERS {
            let (shared, agent) = (shared.clone(), agent.clone());
            std::thread::Builder::new().name(format!("mock-callback-{i}")).spawn(move || send_callbacks(&shared, &agent)).expect("thread starts");
        }
        MockProvider(shared)
    }

    /// The routes of the configured protocol, plus `/health`, `/api/active-calls`, `/api/stats`.
    /// Serves the mock on an ephemeral 127.0.0.1 port inside the current tokio runtime (the
    /// `builtin-mock` provider of `serve`) and returns its address.
    pub async fn serve_in_process(&self) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(address)
    }

    pub fn router(&self) -> Router {
        let router = match self.0.settings.protocol {
            Protocol::Webhook => Router::new().route("/api/initiate-call", post(webhook::dial)).route("/api/initiate-call/", post(webhook::dial)),
            Protocol::Twilio { .. } => Router::new()
                .route("/2010-04-01/Accounts/{account_sid}/Calls.json", post(twilio::create_call))
                .route("/2010-04-01/Accounts/{account_sid}/Calls/{call_file}", get(twilio::fetch_call)),
        };
        router
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/api/active-calls", get(active_calls))
            .route("/api/stats", get(stats))
            .with_state(self.clone())
    }
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
        if let Some(delivered) = deliver(shared, agent, &callback) {
            let counter = if delivered { &shared.counters.callbacks_sent } else { &shared.counters.callbacks_failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if callback.is_final {
            shared.active.lock().unwrap().remove(&callback.active_key);
        }
    }
}

/// Sends one callback, resending transport failures and 5xx. `Some(delivered)`, or `None` when
/// there was nothing to send.
fn deliver(shared: &Shared, agent: &ureq::Agent, callback: &PendingCallback) -> Option<bool> {
    let settings = &shared.settings;
    type Sent = Result<axum::http::Response<ureq::Body>, ureq::Error>;
    let send_once: Box<dyn Fn() -> Sent> = match &callback.delivery {
        Delivery::Nothing => return None,
        Delivery::Webhook { url, body } => {
            let signature = settings.callback_secret.as_ref().map(|secret| protocol::webhook::callback_signature(secret, body.as_bytes()));
            Box::new(move || {
                let mut request = agent.put(url).header("X-Auth-Token", &settings.token).content_type("application/json");
                if let Some(signature) = &signature {
                    request = request.header(protocol::webhook::SIGNATURE_HEADER, signature);
                }
                request.send(body.as_str())
            })
        }
        Delivery::Twilio { url, params } => {
            // Only the Twilio side queues Twilio deliveries, so the token is there.
            let Protocol::Twilio { auth_token, .. } = &settings.protocol else { return Some(false) };
            // Timestamp is the moment of the event; a resend repeats the same form and signature.
            let mut params = params.clone();
            params.push(("Timestamp".to_string(), twilio::rfc2822(jiff::Timestamp::now())));
            let signature = protocol::twilio::signature(auth_token, url, &params);
            Box::new(move || agent.post(url).header(protocol::twilio::SIGNATURE_HEADER, &signature).send_form(params.iter().map(|(n, v)| (n, v))))
        }
    };
    for send in 1..=CALLBACK_SEND_ATTEMPTS {
        // The answer's body is read to its end, so that its connection goes back to the pool.
        let status = send_once().map(|mut response| {
            let _ = response.body_mut().with_config().limit(64 * 1024).read_to_vec();
            response.status()
        });
        match status {
            // 2xx: applied; 409: callmgr already resolved the attempt (e.g. it timed out): nothing to resend.
            Ok(status) if status.is_success() || status.as_u16() == 409 => return Some(true),
            Ok(status) if status.is_client_error() => {
                tracing::warn!(call = %callback.active_key, status = status.as_u16(), "mock provider: callback refused");
                return Some(false);
            }
            _ => std::thread::sleep(Duration::from_millis(100 * send as u64)),
        }
    }
    Some(false)
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
        "protocol": mock.0.settings.protocol.name(),
        "requests": c.requests.load(Ordering::Relaxed),
        "duplicate_requests": c.duplicates.load(Ordering::Relaxed),
        "refused_requests": c.refused.load(Ordering::Relaxed),
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
