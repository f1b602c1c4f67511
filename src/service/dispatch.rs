//! The worker pool and the provider client. A fixed number of named threads take
//! dial jobs from a bounded channel, send the provider request with ureq, and report the answer
//! to the writer. Workers never touch the store and never decide a call's state.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::core::clock::SharedClock;
use crate::protocol::webhook::{self, DialRequest};
use crate::service::events::DialJob;
use crate::service::stats::LiveStats;
use crate::service::writer::{Command, ProviderResult, WriterHandle};

/// First pause before resending after a transport failure; doubles each time.
const RESEND_BACKOFF_START: Duration = Duration::from_millis(200);
const RESEND_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most of a provider's answer body kept in an error message.
const ANSWER_EXCERPT_MAX_CHARS: usize = 300;
/// Largest provider answer body read.
const ANSWER_BODY_MAX_BYTES: u64 = 64 * 1024;

/// How one dial request went, before resends are decided.
enum Sent {
    Accepted(Option<String>),
    Refused(String),
    Transport(String),
}

pub struct ProviderClient {
    agent: ureq::Agent,
    url: String,
    api_key: Option<String>,
    max_send_attempts: u32,
}

impl ProviderClient {
    pub fn new(url: String, api_key: Option<String>, timeout: Duration, max_send_attempts: u32, connections_max: usize) -> ProviderClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections(connections_max)
            .max_idle_connections_per_host(connections_max)
            .user_agent(concat!("callmgr/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        ProviderClient { agent, url, api_key, max_send_attempts }
    }

    /// Sends one attempt's dial request, resending transport failures with backoff.
    pub fn dial(&self, job: &DialJob, stats: &LiveStats, clock: &SharedClock) -> ProviderResult {
        let body = serde_json::to_string(&DialRequest {
            call_id: job.call_id.to_string(),
            phone_number: job.phone_number.clone(),
            campaign_id: job.campaign_id,
            campaign_name: job.campaign_name.to_string(),
            attempt: job.attempt,
            callback_url: job.callback_url.to_string(),
        })
        .expect("the dial request serialises");
        let key = webhook::idempotency_key(&job.call_id.to_string(), job.attempt);
        let mut backoff = RESEND_BACKOFF_START;
        let mut last_error = String::new();
        for send in 1..=self.max_send_attempts {
            let started = Instant::now();
            let sent = self.send_once(&body, &key);
            stats.provider_latency(started.elapsed().as_millis() as u64);
            match sent {
                Sent::Accepted(external_call_id) => return ProviderResult::Accepted { external_call_id },
                Sent::Refused(reason) => {
                    stats.provider_error(clock.now_ms(), format!("call {} attempt {}: refused: {reason}", job.call_id, job.attempt), true);
                    return ProviderResult::Refused { reason };
                }
                Sent::Transport(error) => {
                    tracing::warn!(call_id = %job.call_id, attempt = job.attempt, send, error = %error, "dial request failed");
                    stats.provider_error(clock.now_ms(), format!("call {} attempt {} send {send}: {error}", job.call_id, job.attempt), false);
                    last_error = error;
                    if send < self.max_send_attempts {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(RESEND_BACKOFF_MAX);
                    }
                }
            }
        }
        ProviderResult::TransportFailed { reason: format!("{last_error} (after {} sends)", self.max_send_attempts) }
    }

    fn send_once(&self, body: &str, idempotency_key: &str) -> Sent {
        let mut request = self.agent.post(&self.url).header(webhook::IDEMPOTENCY_KEY_HEADER, idempotency_key).content_type("application/json");
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = match request.send(body) {
            Ok(response) => response,
            Err(error) => return Sent::Transport(error.to_string()),
        };
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(ANSWER_BODY_MAX_BYTES).read_to_string().unwrap_or_default();
        match status {
            200..=299 => Sent::Accepted(webhook::parse_dial_answer(&text)),
            400..=499 => Sent::Refused(format!("HTTP {status}: {}", excerpt(&text))),
            _ => Sent::Transport(format!("HTTP {status}: {}", excerpt(&text))),
        }
    }
}

fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed.chars().take(ANSWER_EXCERPT_MAX_CHARS).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    out
}

/// Starts `count` workers. They end when the job channel closes and is empty.
pub fn spawn_workers(
    count: usize,
    jobs: Receiver<DialJob>,
    writer: WriterHandle,
    client: Arc<ProviderClient>,
    stats: Arc<LiveStats>,
    clock: SharedClock,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|i| {
            let (jobs, writer, client, stats, clock) = (jobs.clone(), writer.clone(), client.clone(), stats.clone(), clock.clone());
            std::thread::Builder::new()
                .name(format!("callmgr-dial-{i}"))
                .spawn(move || {
                    for job in jobs.iter() {
                        let result = client.dial(&job, &stats, &clock);
                        if !writer.send(Command::ProviderAnswered { call_id: job.call_id, attempt: job.attempt, result }) {
                            break;
                        }
                    }
                })
                .expect("a worker thread starts")
        })
        .collect()
}
