//! The worker pool: a fixed number of named threads take jobs from two bounded channels (dial
//! requests first, then status lookups), talk to the provider with ureq, and report each answer
//! to the writer. Workers never touch the store and never decide a call's state; they only send, and
//! say what happened.
//!
//! What a worker does with one dial request, whatever the protocol (`webhook.rs`, `twilio.rs`):
//! * before every send (the first one and each resend) it checks that the attempt is still
//!   current (the writer marks on the [`SendBoard`] the attempts that ended while their request
//!   was out) and that the circuit breaker lets it send; otherwise it stops;
//! * **throttled** (`429`, `503`): it waits the provider's `Retry-After` (or a backoff) and sends
//!   the same attempt again, without counting a send, for at most `provider.throttle_budget`;
//!   the scheduler lowers the dial pace meanwhile;
//! * **surely not created** (no connection): resent with backoff up to `max_send_attempts`;
//! * **ambiguous** (timeout, reset, other 5xx): resent like the above when the protocol has an
//!   idempotency key (webhook); never resent with Twilio, whose attempt then stays in flight;
//! * while the breaker is open, a request that was not delivered goes back to the queue unsent
//!   (its attempt not used up) instead of burning an attempt.
//!
//! Every wait (resend backoff, throttle wait) wakes up at shutdown; a worker that is stopped
//! mid-request reports nothing, and its call stays PROCESSING, exactly as a crash leaves it.

mod breaker;
mod twilio;
mod webhook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

pub use breaker::{Breaker, BreakerView, Gate, ProviderHealth};
pub use twilio::TwilioClient;
pub use webhook::WebhookClient;

use crate::config::resend_backoff;
use crate::core::clock::SharedClock;
use crate::core::model::CallId;
use crate::core::phone::mask_numbers_in;
use crate::service::events::{DialJob, Event, LookupJob};
use crate::service::stats::LiveStats;
use crate::service::writer::{Command, LookupResult, ProviderResult, WriterHandle};

/// Most of a provider's answer body kept in an error message.
const ANSWER_EXCERPT_MAX_CHARS: usize = 300;
/// Largest provider answer body read.
const ANSWER_BODY_MAX_BYTES: u64 = 64 * 1024;
/// The longest single wait for a throttling provider, whatever its `Retry-After` says.
const THROTTLE_WAIT_MAX: Duration = Duration::from_secs(60);
/// Waits are cut in slices this long, to notice an attempt that ended meanwhile.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How one send went, before the worker decides what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// 2xx: the provider took the call (with its id for it, when it gave one).
    Accepted(Option<String>),
    /// 4xx other than 408 and 429: refused, final. The text says why (numbers masked).
    Refused(String),
    /// 429 or 503: not now; try the same request again later.
    Throttled { retry_after: Option<Duration>, reason: String },
    /// The request never reached the provider (no connection): nothing was created.
    NotCreated(String),
    /// The request may have reached the provider (timeout, reset, other 5xx).
    Ambiguous(String),
}

/// The provider client of the configured protocol.
pub enum ProviderClient {
    Webhook(WebhookClient),
    Twilio(TwilioClient),
}

impl ProviderClient {
    fn send(&self, job: &DialJob) -> SendOutcome {
        match self {
            ProviderClient::Webhook(client) => client.send(job),
            ProviderClient::Twilio(client) => client.send(job),
        }
    }

    /// Whether an ambiguous send may be repeated: only with an idempotency key (webhook).
    fn resends_ambiguous(&self) -> bool {
        matches!(self, ProviderClient::Webhook(_))
    }

    fn lookup(&self, job: &LookupJob) -> LookupResult {
        match self {
            ProviderClient::Webhook(_) => LookupResult::Unknown { reason: "the webhook protocol has no status lookup".into() },
            ProviderClient::Twilio(client) => client.lookup(job),
        }
    }
}

/// A ureq agent for provider requests: the whole exchange within `timeout`, connecting within
/// at most half of it (so that a failed connection, which surely created nothing, is told apart
/// from a request that timed out after it was sent).
pub(crate) fn agent(timeout: Duration, connections_max: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout / 2))
        .http_status_as_error(false)
        .max_idle_connections(connections_max)
        .max_idle_connections_per_host(connections_max)
        .user_agent(concat!("callmgr/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Sorts a ureq failure: surely nothing was created (no connection was made) or maybe it was.
pub(crate) fn classify_error(error: &ureq::Error) -> SendOutcome {
    use std::io::ErrorKind;
    let text = mask_numbers_in(&error.to_string());
    match error {
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect)
        | ureq::Error::Tls(_) => SendOutcome::NotCreated(text),
        ureq::Error::Io(io)
            if matches!(io.kind(), ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable) =>
        {
            SendOutcome::NotCreated(text)
        }
        _ => SendOutcome::Ambiguous(text),
    }
}

/// A provider's `Retry-After` in seconds (the HTTP-date form is not used by telephony APIs).
pub(crate) fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(value))
}

/// The start of a provider's answer body for an error message, numbers masked.
pub(crate) fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed.chars().take(ANSWER_EXCERPT_MAX_CHARS).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    mask_numbers_in(&out)
}

/// Reads an answer's status, headers and body (bounded).
pub(crate) fn read_answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, ureq::http::HeaderMap, String) {
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(ANSWER_BODY_MAX_BYTES).read_to_string().unwrap_or_default();
    (status, response.headers().clone(), text)
}

/// The attempts whose dial request must not be sent (again): they ended while it was out. The
/// writer marks them after the commit that ended them and clears them when the worker reports.
#[derive(Default)]
pub struct SendBoard {
    stopped: Mutex<HashSet<(CallId, u32)>>,
}

impl SendBoard {
    pub fn stop(&self, call_id: CallId, attempt: u32) {
        self.stopped.lock().unwrap().insert((call_id, attempt));
    }

    pub fn is_stopped(&self, call_id: CallId, attempt: u32) -> bool {
        self.stopped.lock().unwrap().contains(&(call_id, attempt))
    }

    pub fn clear(&self, call_id: CallId, attempt: u32) {
        self.stopped.lock().unwrap().remove(&(call_id, attempt));
    }
}

/// What the workers share.
pub struct Workers {
    pub writer: WriterHandle,
    pub client: Arc<ProviderClient>,
    pub stats: Arc<LiveStats>,
    pub clock: SharedClock,
    pub board: Arc<SendBoard>,
    pub health: Arc<ProviderHealth>,
    /// The scheduler's inbox, for throttling signals (never waited on: a full inbox drops them).
    pub events: Sender<Event>,
    pub max_send_attempts: u32,
    pub throttle_budget: Duration,
}

/// How a wait ended.
enum Waited {
    Full,
    /// The attempt ended meanwhile (its mark is on the board).
    Stopped,
    ShuttingDown,
}

impl Workers {
    /// Waits `duration`, waking at shutdown (the sender of `shutdown` is dropped) or when the
    /// attempt is marked stopped.
    fn wait(&self, shutdown: &Receiver<()>, duration: Duration, job: &DialJob) -> Waited {
        let until = Instant::now() + duration;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::Full;
            }
            match shutdown.recv_timeout(left.min(WAIT_SLICE)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return Waited::ShuttingDown,
            }
            if self.board.is_stopped(job.call_id, job.attempt) {
                return Waited::Stopped;
            }
        }
    }

    /// Sends one attempt's dial request until it is answered or given up. `None`: the service is
    /// stopping and nothing is reported (the call stays PROCESSING, as after a crash).
    fn dial(&self, job: &DialJob, shutdown: &Receiver<()>) -> Option<ProviderResult> {
        let mut failed_sends = 0u32;
        let mut throttled_sends = 0u32;
        let mut last_error = String::new();
        let throttle_until = Instant::now() + self.throttle_budget;
        let stopped = |last_error: &str, failed_sends: u32| {
            if failed_sends == 0 {
                ProviderResult::NotSent { reason: "its attempt ended before the dial request went out".into() }
            } else {
                ProviderResult::TransportFailed { reason: format!("{last_error} (resending stopped after {failed_sends} sends: the attempt ended)") }
            }
        };
        loop {
            if matches!(shutdown.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected)) {
                return None;
            }
            if self.board.is_stopped(job.call_id, job.attempt) {
                return Some(stopped(&last_error, failed_sends));
            }
            if !self.health.may_send(job.call_id) {
                self.health.not_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let reason = if failed_sends == 0 {
                    "the provider's circuit breaker is open".to_string()
                } else {
                    format!("the provider's circuit breaker opened after {last_error}")
                };
                return Some(ProviderResult::NotSent { reason });
            }
            let started = Instant::now();
            let outcome = self.client.send(job);
            self.stats.provider_latency(started.elapsed().as_millis() as u64);
            let now = self.clock.now_ms();
            let context = |what: &str| format!("call {} attempt {}: {what}", job.call_id, job.attempt);
            match outcome {
                SendOutcome::Accepted(external_call_id) => {
                    self.reached_provider(now, true);
                    return Some(ProviderResult::Accepted { external_call_id });
                }
                SendOutcome::Refused(reason) => {
                    self.reached_provider(now, true);
                    self.stats.provider_error(now, context(&format!("refused: {reason}")), true);
                    return Some(ProviderResult::Refused { reason });
                }
                SendOutcome::Throttled { retry_after, reason } => {
                    self.reached_provider(now, true);
                    throttled_sends += 1;
                    self.health.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = self.events.try_send(Event::ProviderThrottled { retry_after_ms: retry_after.map(|d| d.as_millis() as u64) });
                    let wait = retry_after.unwrap_or_else(|| resend_backoff(throttled_sends)).min(THROTTLE_WAIT_MAX);
                    tracing::info!(call_id = %job.call_id, attempt = job.attempt, wait_ms = wait.as_millis() as u64, %reason, "provider throttled the dial request; sending it again after the wait");
                    if Instant::now() + wait > throttle_until {
                        self.health.not_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Some(ProviderResult::NotSent {
                            reason: format!("the provider kept throttling ({reason}) for longer than provider.throttle_budget"),
                        });
                    }
                    match self.wait(shutdown, wait, job) {
                        Waited::ShuttingDown => return None,
                        Waited::Stopped | Waited::Full => continue,
                    }
                }
                SendOutcome::Ambiguous(error) if !self.client.resends_ambiguous() => {
                    self.reached_provider(now, false);
                    self.health.ambiguous.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(call_id = %job.call_id, attempt = job.attempt, %error, "dial request ambiguous: not resent (the provider may have created the call); its status callback, a status lookup or the callback timeout resolves it");
                    self.stats.provider_error(now, context(&format!("ambiguous, not resent: {error}")), false);
                    return Some(ProviderResult::Ambiguous { reason: error });
                }
                SendOutcome::NotCreated(error) | SendOutcome::Ambiguous(error) => {
                    self.reached_provider(now, false);
                    failed_sends += 1;
                    tracing::warn!(call_id = %job.call_id, attempt = job.attempt, send = failed_sends, %error, "dial request failed");
                    self.stats.provider_error(now, context(&format!("send {failed_sends}: {error}")), false);
                    last_error = error;
                    if failed_sends >= self.max_send_attempts {
                        return Some(ProviderResult::TransportFailed { reason: format!("{last_error} (after {failed_sends} sends)") });
                    }
                    match self.wait(shutdown, resend_backoff(failed_sends), job) {
                        Waited::ShuttingDown => return None,
                        Waited::Stopped | Waited::Full => continue,
                    }
                }
            }
        }
    }

    fn reached_provider(&self, now: i64, reached: bool) {
        if self.health.record(now, reached) {
            // The breaker changed: let the scheduler look again (it may dial, or must stop).
            let _ = self.events.try_send(Event::Wake);
        }
    }

    fn lookup(&self, job: &LookupJob) -> Command {
        let answer = self.client.lookup(job);
        if let LookupResult::Unknown { reason } = &answer {
            tracing::warn!(call_id = %job.call_id, attempt = job.attempt, %reason, "status lookup gave no answer");
        }
        Command::LookupAnswered { call_id: job.call_id, attempt: job.attempt, reason: job.reason, answer }
    }

    /// Takes dials before lookups: a lookup resolves a call already in flight, a dial starts one
    /// whose slot is already reserved.
    fn run(&self, dials: Receiver<DialJob>, lookups: Receiver<LookupJob>, shutdown: Receiver<()>) {
        loop {
            let command = match dials.try_recv() {
                Ok(job) => self.dial_command(job, &shutdown),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                Err(crossbeam_channel::TryRecvError::Empty) => crossbeam_channel::select! {
                    recv(dials) -> job => match job {
                        Ok(job) => self.dial_command(job, &shutdown),
                        Err(_) => return,
                    },
                    recv(lookups) -> job => match job {
                        Ok(job) => Some(self.lookup(&job)),
                        // No lookups with this provider: only dials from now on.
                        Err(_) => match dials.recv() {
                            Ok(job) => self.dial_command(job, &shutdown),
                            Err(_) => return,
                        },
                    },
                },
            };
            let Some(command) = command else { return };
            if !self.writer.send(command) {
                return;
            }
        }
    }

    /// `None`: stopping (nothing to report).
    fn dial_command(&self, job: DialJob, shutdown: &Receiver<()>) -> Option<Command> {
        let result = self.dial(&job, shutdown)?;
        Some(Command::ProviderAnswered { call_id: job.call_id, attempt: job.attempt, result })
    }
}

/// Starts `count` workers. They end when the dial channel closes and is empty, or at once when
/// `shutdown`'s sender is dropped (a worker in a provider request finishes that request first).
pub fn spawn_workers(
    count: usize,
    dials: Receiver<DialJob>,
    lookups: Receiver<LookupJob>,
    workers: Arc<Workers>,
    shutdown: Receiver<()>,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|i| {
            let (dials, lookups, workers, shutdown) = (dials.clone(), lookups.clone(), workers.clone(), shutdown.clone());
            std::thread::Builder::new().name(format!("callmgr-dial-{i}")).spawn(move || workers.run(dials, lookups, shutdown)).expect("a worker thread starts")
        })
        .collect()
}
