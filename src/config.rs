//! Configuration: the YAML file, then environment overrides, then validation into `Config`.
//! Parse (raw serde structs) → validate (named limits with units) → build. A `Config` that
//! exists is valid: every value is typed here, none is first read when the service uses it.
//! Relative paths from the file read from the file's folder, those from the environment from
//! the working directory. Knows nothing about the service it configures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::core::model::Outcome;
use crate::core::phone::{PhoneValidation, Region};
use crate::protocol::twilio::{CallFlow, MachineDetection, OutcomeMap, RING_TIMEOUT_SECONDS_MAX};

/// The development token of the shipped config; `serve` warns loudly when it is in use.
pub const DEV_TOKEN: &str = "dev-token-12345";

/// The largest `limits.connections_max` accepted.
const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;

/// The shortest connection or export timeout accepted.
const CONNECTION_TIMEOUT_MIN: Duration = Duration::from_millis(100);

/// `provider.url` value that runs the mock provider inside `serve`.
pub const BUILTIN_MOCK: &str = "builtin-mock";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: key `{key}`: {problem}")]
    Key { file: String, key: String, problem: String },
}

/// Every limit the service enforces, named with its unit last.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest accepted request body.
    pub request_body_max_bytes: usize,
    /// Most numbers in one `phone-numbers/` or `bulk-initiate-calls/` request.
    pub batch_max: usize,
    pub page_size_default: usize,
    pub page_size_max: usize,
    /// Most rows a filtered list request examines before answering with a cursor.
    pub list_scan_max: usize,
    /// Commands waiting for the writer; beyond it the API answers 503.
    pub writer_inbox_max: usize,
    /// Commands folded into one transaction.
    pub writer_batch_max: usize,
    /// Writer → scheduler events waiting.
    pub event_queue_max: usize,
    /// Calls cancelled per transaction when a campaign stops.
    pub cancel_chunk_max: usize,
    /// Overdue retries moved back to the queue per scheduler turn (paces a restart's backlog).
    pub retry_release_max: usize,
    pub http_request_timeout: Duration,
    /// Time allowed for a graceful stop before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// Open client connections. At the limit a new connection takes the place of the one that
    /// has waited longest for a request; when every connection has a request in flight, the new
    /// one is answered 503 and closed.
    pub connections_max: usize,
    /// Time a client has to send a whole request head once its first byte has arrived.
    pub header_read_timeout: Duration,
    /// Time a connection may wait with no request in flight (after connecting, or after its last
    /// response) before the server closes it.
    pub idle_timeout: Duration,
    /// Time a response may wait for the client to accept any byte of it before the connection
    /// is closed (a client that stopped reading).
    pub write_stall_timeout: Duration,
    /// CSV exports running at once; beyond it `calls/export/` answers 503.
    pub exports_max: usize,
    /// Time an export waits for its client to take the next chunk before it is abandoned.
    pub export_stall_timeout: Duration,
    /// Below this much free space on the data disk, new work is refused (0: no guard).
    pub disk_free_min_mb: u64,
    /// Final calls deleted (and archived) per retention chunk: one writer transaction each.
    pub purge_chunk_max: usize,
}

/// `retention:`: how long final calls are kept, and where purged ones are archived.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionConfig {
    /// Final calls whose last change (`updated_at`) is older than this are purged; `None`
    /// (the key absent) keeps them forever.
    pub final_calls: Option<Duration>,
    /// Each purged chunk is first written here as gzip-compressed JSON lines; `None` purges
    /// without archiving. Absolute, like `Config::data_dir`.
    pub archive_dir: Option<PathBuf>,
    /// How often the retention thread wakes to look for calls to purge.
    pub check_interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProviderTarget {
    /// A real provider endpoint.
    Url(String),
    /// The mock provider inside this process: no real calls are placed.
    BuiltinMock,
}

/// Which protocol callmgr speaks with the provider (`provider.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// callmgr's own JSON protocol (the default).
    Webhook,
    /// The Twilio Programmable Voice REST API (also SignalWire's LaML API and Somleng).
    Twilio,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Webhook => "webhook",
            ProviderKind::Twilio => "twilio",
        }
    }
}

/// The `twilio` provider's settings (`provider.kind: twilio`).
#[derive(Clone, Debug, PartialEq)]
pub struct TwilioConfig {
    /// The REST API's base, e.g. `https://api.twilio.com`; with `url: builtin-mock` the mock's address replaces it at start.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// Caller id when the campaign has none.
    pub from: String,
    pub call_flow: CallFlow,
    pub machine_detection: Option<MachineDetection>,
    pub ring_timeout_seconds: u32,
    pub outcomes: OutcomeMap,
}

/// Account of the built-in mock in Twilio mode, when none is configured.
pub const BUILTIN_MOCK_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
/// Auth token of the built-in mock in Twilio mode, when none is configured (it places no calls).
pub const BUILTIN_MOCK_AUTH_TOKEN: &str = "builtin-mock-auth-token";

#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Webhook: the dial endpoint, or the built-in mock. Twilio: the REST API's base URL, or the built-in mock.
    pub target: ProviderTarget,
    pub api_key: Option<String>,
    /// Webhook: when set, `PUT callback/` requires `X-Callmgr-Signature` (HMAC-SHA256 of the body).
    pub callback_secret: Option<String>,
    /// Set exactly when `kind` is `Twilio`.
    pub twilio: Option<TwilioConfig>,
    pub timeout: Duration,
    pub max_send_attempts: u32,
    /// Consecutive transport failures that open the circuit breaker (no new dial starts).
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe dial is let through.
    pub breaker_cooldown: Duration,
    /// The longest one dial request keeps being resent while the provider throttles (429, 503).
    pub throttle_budget: Duration,
    /// Settings of the built-in mock (`provider.mock`), parsed as `callmgr mock-provider` parses
    /// its flags: the ring-and-talk delay range and the outcome weights.
    pub mock_delay: DelayRange,
    pub mock_mix: Vec<(Outcome, u32)>,
    pub mock_seed: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// redb quick-repair: faster open after a crash, slower commits (see README, capacity planning).
    pub quick_repair: bool,
    pub cache_size_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The level names `log.level` accepts, alone or after `target=` in a directive.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// `log.level`: a level, or a tracing filter in which every directive names its level
/// (`callmgr=debug,info`). A bare word that is not a level is refused: the tracing filter would
/// read it as a target name and log nothing else at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    pub fn parse(text: &str) -> Result<LogFilter, String> {
        let text = text.trim();
        let is_level = |word: &str| LOG_LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word.trim()));
        let refused = |why: String| {
            Err(format!(
                "{why}; accepted: one of {} or a filter of comma-separated directives, each TARGET=LEVEL or a LEVEL, e.g. `callmgr=debug,info`",
                LOG_LEVELS.join(", ")
            ))
        };
        let directives: Vec<&str> = text.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
        if directives.is_empty() {
            return refused("is empty".into());
        }
        for directive in &directives {
            let level = directive.rsplit_once('=').map_or(*directive, |(_, level)| level);
            if !is_level(level) {
                return refused(format!("`{text}` is not a log level or a filter (`{directive}` names no level)"));
            }
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(text) {
            return refused(format!("`{text}` is not a valid filter ({error})"));
        }
        Ok(LogFilter(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter the log subscriber applies.
    pub fn env_filter(&self) -> tracing_subscriber::EnvFilter {
        tracing_subscriber::EnvFilter::try_new(&self.0).expect("validated when the configuration was read")
    }
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only (`GET`): dashboards, exports, metrics.
    Viewer,
    /// Only the provider's callbacks (`PUT callback/`).
    Provider,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Provider => "provider",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        [Role::Admin, Role::Viewer, Role::Provider].into_iter().find(|r| r.as_str() == text.trim())
    }
}

/// An API token and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub secret: String,
    pub role: Role,
}

/// First pause before resending a dial after a transport failure; it doubles up to [`RESEND_BACKOFF_MAX`].
pub const RESEND_BACKOFF_START: Duration = Duration::from_millis(200);
pub const RESEND_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pause after the `failed_sends`-th failed send of one dial request (1-based).
pub fn resend_backoff(failed_sends: u32) -> Duration {
    let doublings = failed_sends.saturating_sub(1).min(16);
    (RESEND_BACKOFF_START * 2u32.pow(doublings)).min(RESEND_BACKOFF_MAX)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this came from (for messages): absolute when read by [`load`].
    pub source: PathBuf,
    pub listen: SocketAddr,
    /// Absolute (see [`load`] for what a relative one is read from).
    pub data_dir: PathBuf,
    pub tokens: Vec<Token>,
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: f64,
    pub duplicate_window: Duration,
    pub callback_timeout: Duration,
    /// Base URL the provider uses to reach us; `callback_url` = this + `/api/v1/callback/`.
    /// When absent, `http://` + the address the listener actually bound.
    pub public_url: Option<String>,
    pub provider: ProviderConfig,
    pub workers: usize,
    /// Absolute, like `data_dir`.
    pub retry_config: PathBuf,
    /// `MAX_RETRY_ATTEMPTS`: overrides the retry file's `defaults.max_attempts`.
    pub retry_max_attempts_override: Option<u32>,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub retention: RetentionConfig,
    pub log_level: LogFilter,
    pub log_format: LogFormat,
    /// Region in which numbers written without `+` are read; `None`: such numbers are refused
    /// unless their campaign names a region.
    pub default_region: Option<Region>,
    /// How strictly phone numbers are checked on input.
    pub phone_validation: PhoneValidation,
    /// Most zones a number's prefix may map to and still count as inferred (`timezone_inference.max_candidates`).
    pub timezone_max_candidates: usize,
    /// Keys set by environment variables, with the variables that set them (for `check-config`).
    pub from_environment: BTreeMap<String, String>,
}

impl Config {
    /// The base of the URLs given to the provider: `public_url`, else `http://` + the bound address.
    pub fn public_base(&self, bound: SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{bound}")).trim_end_matches('/').to_string()
    }
    pub fn callback_url(&self, bound: SocketAddr) -> String {
        format!("{}/api/v1/callback/", self.public_base(bound))
    }
    pub fn uses_dev_token(&self) -> bool {
        self.tokens.iter().any(|t| t.secret == DEV_TOKEN)
    }

    /// The longest a worker may spend sending one dial request before it gives up: every send
    /// taking `provider.timeout`, plus the pauses between the resends.
    pub fn send_budget(&self) -> Duration {
        let sends = self.provider.max_send_attempts;
        let backoffs: Duration = (1..sends).map(resend_backoff).sum();
        self.provider.timeout * sends + backoffs
    }

    /// Why `callback_timeout` is too short for the send budget, if it is: the timeout would end
    /// attempts whose dial request a worker is still resending. `check-config` refuses it;
    /// `serve` warns (the worker then stops at the deadline and the slot is held until it does).
    pub fn callback_timeout_problem(&self) -> Option<String> {
        let budget = self.send_budget();
        (self.callback_timeout < budget).then(|| {
            format!(
                "{file}: key `callback_timeout`: {timeout} is shorter than the worst-case send budget {budget} \
                 (provider.timeout {provider_timeout} × provider.max_send_attempts {sends}, plus the resend pauses); \
                 raise `callback_timeout` or lower `provider.timeout` or `provider.max_send_attempts`",
                file = self.source.display(),
                timeout = fmt_duration(self.callback_timeout),
                budget = fmt_duration(budget),
                provider_timeout = fmt_duration(self.provider.timeout),
                sends = self.provider.max_send_attempts,
            )
        })
    }

    /// The human summary printed by `check-config` (tokens masked). A value that an environment
    /// variable set is marked with the variable, e.g. `listen: 0.0.0.0:9000   (from CALLMGR_LISTEN)`.
    pub fn describe(&self) -> String {
        let mut rows: Vec<(&str, String, &[&str])> = Vec::new();
        let masked: Vec<String> = self.tokens.iter().map(|t| format!("{} ({})", mask_secret(&t.secret), t.role.as_str())).collect();
        let p = &self.provider;
        let provider = match &p.target {
            ProviderTarget::Url(url) => url.clone(),
            ProviderTarget::BuiltinMock => format!("{BUILTIN_MOCK} (no real calls are placed)"),
        };
        rows.push(("config file", self.source.display().to_string(), &[]));
        rows.push(("listen", self.listen.to_string(), &["listen"]));
        rows.push(("data_dir", self.data_dir.display().to_string(), &["data_dir"]));
        rows.push(("tokens", if masked.is_empty() { "(none)".to_string() } else { masked.join(", ") }, &["tokens"]));
        rows.push(("max_concurrent_calls", self.max_concurrent_calls.to_string(), &["max_concurrent_calls"]));
        rows.push(("max_calls_per_second", self.max_calls_per_second.to_string(), &["max_calls_per_second"]));
        rows.push(("duplicate_window", fmt_duration(self.duplicate_window), &["duplicate_window"]));
        rows.push(("callback_timeout", fmt_duration(self.callback_timeout), &["callback_timeout"]));
        rows.push(("public_url", self.public_url.clone().unwrap_or_else(|| format!("(default) http://{}", self.listen)), &["public_url"]));
        match (p.kind, &p.target) {
            (ProviderKind::Twilio, ProviderTarget::Url(_)) => rows.push(("provider.base_url", provider, &["provider.base_url"])),
            _ => rows.push(("provider.url", provider, &["provider.url"])),
        }
        rows.push(("provider.api_key", if p.api_key.is_some() { "(set)" } else { "(none)" }.to_string(), &["provider.api_key"]));
        rows.push(("provider.timeout", fmt_duration(p.timeout), &["provider.timeout"]));
        rows.push((
            "provider.max_send_attempts",
            format!("{} (worst-case send budget {})", p.max_send_attempts, fmt_duration(self.send_budget())),
            &["provider.max_send_attempts"],
        ));
        rows.push(("provider.kind", p.kind.as_str().to_string(), &["provider.kind"]));
        rows.push((
            "provider.breaker",
            format!("opens after {} consecutive transport failures, probes after {}", p.breaker_failures, fmt_duration(p.breaker_cooldown)),
            &["provider.breaker_failures", "provider.breaker_cooldown"],
        ));
        rows.push(("provider.throttle_budget", fmt_duration(p.throttle_budget), &["provider.throttle_budget"]));
        if p.kind == ProviderKind::Webhook {
            rows.push(("provider.callback_secret", if p.callback_secret.is_some() { "(set)" } else { "(none)" }.to_string(), &["provider.callback_secret"]));
        }
        if let Some(t) = &p.twilio {
            let flow = match &t.call_flow {
                CallFlow::Twiml(twiml) => format!("twiml {twiml}"),
                CallFlow::Url(url) => format!("url {url}"),
            };
            let outcomes: Vec<String> = t.outcomes.entries().iter().map(|(k, o)| format!("{k}={}", o.as_str())).collect();
            rows.push((
                "provider.twilio",
                format!(
                    "base_url={} account_sid={} auth_token={} from={} ring_timeout={}s machine_detection={}",
                    t.base_url,
                    t.account_sid,
                    mask_secret(&t.auth_token),
                    t.from,
                    t.ring_timeout_seconds,
                    t.machine_detection.map(|m| m.as_str()).unwrap_or("off"),
                ),
                &["provider.base_url", "provider.account_sid", "provider.auth_token", "provider.from", "provider.ring_timeout", "provider.machine_detection"],
            ));
            rows.push(("provider.call_flow", flow, &["provider.twiml", "provider.url"]));
            rows.push(("provider.outcomes", outcomes.join(" "), &["provider.outcomes"]));
        }
        if p.target == ProviderTarget::BuiltinMock {
            let mix: Vec<String> = p.mock_mix.iter().map(|(outcome, weight)| format!("{}={weight}", outcome.as_str())).collect();
            rows.push((
                "provider.mock",
                format!(
                    "delay={}..{} mix={} seed={}",
                    fmt_duration(p.mock_delay.min),
                    fmt_duration(p.mock_delay.max),
                    mix.join(","),
                    p.mock_seed.map(|s| s.to_string()).unwrap_or_else(|| "(from the clock)".into())
                ),
                &["provider.mock"],
            ));
        }
        rows.push(("workers", self.workers.to_string(), &["workers"]));
        let retry_override = match self.retry_max_attempts_override {
            Some(n) => format!(" (max attempts overridden to {n} by MAX_RETRY_ATTEMPTS)"),
            None => String::new(),
        };
        rows.push(("retry_config", format!("{}{retry_override}", self.retry_config.display()), &["retry_config"]));
        rows.push(("storage.quick_repair", self.storage.quick_repair.to_string(), &["storage.quick_repair"]));
        rows.push(("storage.cache_size", format!("{} MiB", self.storage.cache_size_bytes / (1024 * 1024)), &["storage.cache_size_mb"]));
        let l = &self.limits;
        rows.push((
            "limits",
            format!(
                "request_body_max_bytes={} batch_max={} page_size_default={} page_size_max={} list_scan_max={} writer_inbox_max={} writer_batch_max={} event_queue_max={} cancel_chunk_max={} retry_release_max={} http_request_timeout={} shutdown_timeout={}",
                l.request_body_max_bytes,
                l.batch_max,
                l.page_size_default,
                l.page_size_max,
                l.list_scan_max,
                l.writer_inbox_max,
                l.writer_batch_max,
                l.event_queue_max,
                l.cancel_chunk_max,
                l.retry_release_max,
                fmt_duration(l.http_request_timeout),
                fmt_duration(l.shutdown_timeout),
            ),
            &[
                "limits.request_body_max_bytes",
                "limits.batch_max",
                "limits.page_size_default",
                "limits.page_size_max",
                "limits.list_scan_max",
                "limits.writer_inbox_max",
                "limits.writer_batch_max",
                "limits.event_queue_max",
                "limits.cancel_chunk_max",
                "limits.retry_release_max",
                "limits.http_request_timeout",
                "limits.shutdown_timeout",
            ],
        ));
        rows.push((
            "connections",
            format!(
                "connections_max={} header_read_timeout={} idle_timeout={} write_stall_timeout={} exports_max={} export_stall_timeout={}",
                l.connections_max,
                fmt_duration(l.header_read_timeout),
                fmt_duration(l.idle_timeout),
                fmt_duration(l.write_stall_timeout),
                l.exports_max,
                fmt_duration(l.export_stall_timeout),
            ),
            &[
                "limits.connections_max",
                "limits.header_read_timeout",
                "limits.idle_timeout",
                "limits.write_stall_timeout",
                "limits.exports_max",
                "limits.export_stall_timeout",
            ],
        ));
        rows.push(("disk", format!("disk_free_min_mb={}", l.disk_free_min_mb), &["limits.disk_free_min_mb"]));
        rows.push((
            "retention",
            format!(
                "final_calls={} archive_dir={} check_interval={} purge_chunk_max={}",
                self.retention.final_calls.map(fmt_duration).unwrap_or_else(|| "(keep forever)".into()),
                self.retention.archive_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "(none)".into()),
                fmt_duration(self.retention.check_interval),
                l.purge_chunk_max,
            ),
            &["retention", "limits.purge_chunk_max"],
        ));
        rows.push(("log", format!("level={} format={}", self.log_level.as_str(), self.log_format.as_str()), &["log"]));
        let region = match &self.default_region {
            Some(region) => region.to_string(),
            None => "(none: numbers without + need their campaign's region)".to_string(),
        };
        rows.push(("default_region", region, &["default_region"]));
        rows.push(("phone_validation", self.phone_validation.as_str().to_string(), &["phone_validation"]));
        rows.push(("timezone_inference", format!("max_candidates={}", self.timezone_max_candidates), &["timezone_inference"]));

        let mut out = String::new();
        for (label, value, keys) in rows {
            let label = format!("{label}:");
            out.push_str(&format!("{label:<23} {value}{}\n", self.environment_mark(keys)));
        }
        out
    }

    /// `   (from VAR)` when an environment variable set the one key of a line, or
    /// `   (key from VAR, …)` for the keys of a line that shows several; empty when none did.
    /// A key covers the keys nested under it (`log` covers `log.level`).
    fn environment_mark(&self, keys: &[&str]) -> String {
        let covered = |key: &str| keys.iter().any(|k| key == *k || key.strip_prefix(k).is_some_and(|rest| rest.starts_with('.')));
        let set: Vec<(&String, &String)> = self.from_environment.iter().filter(|(key, _)| covered(key)).collect();
        match set.as_slice() {
            [] => String::new(),
            [(key, variable)] if keys == [key.as_str()] => format!("   (from {variable})"),
            _ => format!("   ({})", set.iter().map(|(key, variable)| format!("{key} from {variable}")).collect::<Vec<_>>().join(", ")),
        }
    }
}

pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `dev-…45`: enough to recognise a token, not enough to use it.
pub fn mask_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail}")
}

/// Parses a duration written with its unit: `500ms`, `90s`, `5m`, `1h`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.chars().all(|c| c.is_ascii_digit()) && !trimmed.is_empty() {
        return Err(format!("`{trimmed}` has no unit: write e.g. `{trimmed}s` or `{trimmed}ms`"));
    }
    humantime::parse_duration(trimmed).map_err(|e| format!("`{trimmed}` is not a duration ({e}); write e.g. `500ms`, `90s`, `5m`, `1h`"))
}

/// A duration as written in the file: text with a unit, or a bare number (refused with a hint).
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Text(String),
    Number(serde_norway::Number),
}

impl DurationText {
    fn text(&self) -> String {
        match self {
            DurationText::Text(t) => t.clone(),
            DurationText::Number(n) => n.to_string(),
        }
    }
}

impl From<&str> for DurationText {
    fn from(text: &str) -> Self {
        DurationText::Text(text.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file shape. Every field has the default that applies when the key is absent.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: String,
    data_dir: PathBuf,
    tokens: Vec<RawToken>,
    max_concurrent_calls: u32,
    max_calls_per_second: f64,
    duplicate_window: DurationText,
    callback_timeout: DurationText,
    public_url: Option<String>,
    provider: RawProvider,
    workers: usize,
    retry_config: PathBuf,
    storage: RawStorage,
    limits: RawLimits,
    retention: RawRetention,
    log: RawLog,
    default_region: Option<String>,
    phone_validation: String,
    timezone_inference: RawTimezoneInference,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "127.0.0.1:8000".into(),
            data_dir: "data".into(),
            tokens: Vec::new(),
            max_concurrent_calls: 100,
            max_calls_per_second: 50.0,
            duplicate_window: "5m".into(),
            callback_timeout: "10m".into(),
            public_url: None,
            provider: RawProvider::default(),
            workers: 16,
            retry_config: "retry_config.yaml".into(),
            storage: RawStorage::default(),
            limits: RawLimits::default(),
            retention: RawRetention::default(),
            log: RawLog::default(),
            default_region: None,
            phone_validation: PhoneValidation::default().as_str().into(),
            timezone_inference: RawTimezoneInference::default(),
        }
    }
}

/// A text value that YAML would read as a number when unquoted (`+14155550000`, an all-digit
/// secret): refused with the fix, since the number has lost what was written (the `+`, zeros).
fn text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => {
            let shown = serde_norway::to_string(&other).unwrap_or_default();
            Err(serde::de::Error::custom(format!("`{}` is not text here: write it in quotes, e.g. \"+14155550000\"", shown.trim())))
        }
    }
}

/// Keys whose environment value is always text, never read as a number or a boolean.
const ENV_TEXT_KEYS: &[&str] = &[
    "data_dir",
    "retry_config",
    "retention.archive_dir",
    "log.level",
    "provider.from",
    "provider.auth_token",
    "provider.account_sid",
    "provider.api_key",
    "provider.callback_secret",
    "provider.twiml",
    "provider.url",
    "provider.base_url",
];

/// A token as written: a bare string (role admin) or `{token, role}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawToken {
    Plain(String),
    WithRole(RawTokenWithRole),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenWithRole {
    token: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProvider {
    kind: String,
    /// Webhook: the endpoint or `builtin-mock`. Twilio: `builtin-mock`, or the call flow's URL.
    url: Option<String>,
    #[serde(deserialize_with = "text")]
    api_key: Option<String>,
    #[serde(deserialize_with = "text")]
    callback_secret: Option<String>,
    timeout: DurationText,
    max_send_attempts: u32,
    breaker_failures: u32,
    breaker_cooldown: DurationText,
    throttle_budget: DurationText,
    base_url: Option<String>,
    #[serde(deserialize_with = "text")]
    account_sid: Option<String>,
    #[serde(deserialize_with = "text")]
    auth_token: Option<String>,
    #[serde(deserialize_with = "text")]
    from: Option<String>,
    twiml: Option<String>,
    machine_detection: Option<String>,
    ring_timeout: Option<DurationText>,
    outcomes: BTreeMap<String, String>,
    mock: RawMock,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider {
            kind: "webhook".into(),
            url: None,
            api_key: None,
            callback_secret: None,
            timeout: "10s".into(),
            max_send_attempts: 3,
            breaker_failures: 5,
            breaker_cooldown: "30s".into(),
            throttle_budget: "2m".into(),
            base_url: None,
            account_sid: None,
            auth_token: None,
            from: None,
            twiml: None,
            machine_detection: None,
            ring_timeout: None,
            outcomes: BTreeMap::new(),
            mock: RawMock::default(),
        }
    }
}

/// The Twilio API's public base URL, the default of `provider.base_url`.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";
/// The call flow of the built-in mock in Twilio mode when neither `twiml` nor `url` is set.
const BUILTIN_MOCK_TWIML: &str = "<Response><Say>Hello from callmgr.</Say></Response>";
/// The caller id of the built-in mock in Twilio mode when `from` is not set (Twilio's test number).
const BUILTIN_MOCK_FROM: &str = "+15005550006";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMock {
    delay: DurationText,
    mix: String,
    seed: Option<u64>,
}

impl Default for RawMock {
    fn default() -> Self {
        RawMock { delay: "1s..10s".into(), mix: "PICKED=70,DISCONNECTED=15,RNR=10,FAILED=5".into(), seed: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    quick_repair: bool,
    cache_size_mb: usize,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage { quick_repair: false, cache_size_mb: 256 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    request_body_max_bytes: usize,
    batch_max: usize,
    page_size_default: usize,
    page_size_max: usize,
    list_scan_max: usize,
    writer_inbox_max: usize,
    writer_batch_max: usize,
    event_queue_max: usize,
    cancel_chunk_max: usize,
    retry_release_max: usize,
    http_request_timeout: DurationText,
    shutdown_timeout: DurationText,
    connections_max: usize,
    header_read_timeout: DurationText,
    idle_timeout: DurationText,
    write_stall_timeout: DurationText,
    exports_max: usize,
    export_stall_timeout: DurationText,
    disk_free_min_mb: u64,
    purge_chunk_max: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            request_body_max_bytes: 2 * 1024 * 1024,
            batch_max: 10_000,
            page_size_default: 100,
            page_size_max: 1_000,
            list_scan_max: 100_000,
            writer_inbox_max: 16_384,
            writer_batch_max: 2_048,
            event_queue_max: 262_144,
            cancel_chunk_max: 10_000,
            retry_release_max: 2_000,
            http_request_timeout: "30s".into(),
            shutdown_timeout: "15s".into(),
            connections_max: 512,
            header_read_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            write_stall_timeout: "60s".into(),
            exports_max: 4,
            export_stall_timeout: "30s".into(),
            disk_free_min_mb: 256,
            purge_chunk_max: 1_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    final_calls: Option<DurationText>,
    archive_dir: Option<PathBuf>,
    check_interval: DurationText,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention { final_calls: None, archive_dir: None, check_interval: "1m".into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { level: "info".into(), format: "text".into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTimezoneInference {
    max_candidates: usize,
}

impl Default for RawTimezoneInference {
    fn default() -> Self {
        RawTimezoneInference { max_candidates: 3 }
    }
}

// ---------------------------------------------------------------------------------------------
// Environment overrides.

/// How a reference-system variable maps onto a key of the file.
enum EnvMapping {
    /// The value replaces the key.
    Set(&'static str),
    /// The value, in minutes, becomes a duration.
    Minutes(&'static str),
    /// The value, in seconds, becomes a duration.
    Seconds(&'static str),
    /// A comma-separated list replaces the key.
    List(&'static str),
    /// The value is appended to the list at the key.
    Append(&'static str),
}

/// The names operators of the reference system already use.
const LEGACY_ENV: &[(&str, EnvMapping)] = &[
    ("MAX_CONCURRENT_CALLS", EnvMapping::Set("max_concurrent_calls")),
    ("DUPLICATE_CALL_WINDOW_MINUTES", EnvMapping::Minutes("duplicate_window")),
    ("RETRY_SCHEDULE_CONFIG_PATH", EnvMapping::Set("retry_config")),
    ("EXTERNAL_SERVICE_URL", EnvMapping::Set("provider.url")),
    ("EXTERNAL_SERVICE_TIMEOUT_SECONDS", EnvMapping::Seconds("provider.timeout")),
    ("VALID_TOKENS", EnvMapping::List("tokens")),
    ("X_AUTH_TOKEN", EnvMapping::Append("tokens")),
    // The tracing convention; a `CALLMGR_LOG__LEVEL` wins over it.
    ("RUST_LOG", EnvMapping::Set("log.level")),
];

/// Variables that are read elsewhere, not as config keys.
const ENV_NOT_KEYS: &[&str] = &["CALLMGR_CONFIG", "CALLMGR_URL", "CALLMGR_TOKEN"];

fn scalar(text: &str) -> Value {
    // A YAML scalar, so that `CALLMGR_WORKERS=8` is a number and `CALLMGR_STORAGE__QUICK_REPAIR=true` a bool.
    match serde_norway::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().expect("just made a mapping");
        let key = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(key, value);
            return;
        }
        node = map.entry(key).or_insert(Value::Mapping(Mapping::new()));
    }
}

fn get_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |node, part| node.get(part))
}

/// Applies overrides to the file's tree; returns which keys came from which variable (two for
/// `tokens` when `X_AUTH_TOKEN` adds to `VALID_TOKENS`).
fn apply_env(tree: &mut Value, env: &BTreeMap<String, String>, file: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origin = BTreeMap::new();
    for (name, mapping) in LEGACY_ENV {
        let Some(raw) = env.get(*name) else { continue };
        let bad = |problem: String| ConfigError::Key { file: file.to_string(), key: format!("{name} (environment)"), problem };
        let (key, value) = match mapping {
            EnvMapping::Set(key) if ENV_TEXT_KEYS.contains(key) => (*key, Value::String(raw.clone())),
            EnvMapping::Set(key) => (*key, scalar(raw)),
            EnvMapping::Minutes(key) => {
                let n: u64 = raw.trim().parse().map_err(|_| bad(format!("`{raw}` is not a whole number of minutes")))?;
                (*key, Value::String(format!("{n}m")))
            }
            EnvMapping::Seconds(key) => {
                let n: u64 = raw.trim().parse().map_err(|_| bad(format!("`{raw}` is not a whole number of seconds")))?;
                (*key, Value::String(format!("{n}s")))
            }
            EnvMapping::List(key) => {
                let items = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into()));
                (*key, Value::Sequence(items.collect()))
            }
            EnvMapping::Append(key) => {
                let mut items = match get_path(tree, key) {
                    Some(Value::Sequence(seq)) => seq.clone(),
                    _ => Vec::new(),
                };
                let token = Value::String(raw.trim().to_string());
                if !raw.trim().is_empty() && !items.contains(&token) {
                    items.push(token);
                }
                (*key, Value::Sequence(items))
            }
        };
        set_path(tree, key, value);
        let setters = match (mapping, origin.get(key)) {
            (EnvMapping::Append(_), Some(earlier)) => format!("{earlier} and {name}"),
            _ => name.to_string(),
        };
        origin.insert(key.to_string(), setters);
    }
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("CALLMGR_") else { continue };
        if ENV_NOT_KEYS.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let value = if ENV_TEXT_KEYS.contains(&key.as_str()) { Value::String(raw.clone()) } else { scalar(raw) };
        set_path(tree, &key, value);
        origin.insert(key, name.clone());
    }
    Ok(origin)
}

// ---------------------------------------------------------------------------------------------

/// Reads `path`, applies the environment, validates. `env` and `working_dir` (against which a
/// relative `path`, and a relative path from the environment, resolve) are passed in so tests
/// control them. Messages name the file by its absolute path.
pub fn load(path: &Path, env: &BTreeMap<String, String>, working_dir: &Path) -> Result<Config, ConfigError> {
    let path = resolve(working_dir, path);
    let file = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read { file: file.clone(), error })?;
    from_str(&text, &path, env, working_dir)
}

/// The process environment as a map, for `load`.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// The process's working directory, for `load`.
pub fn process_working_dir() -> std::io::Result<PathBuf> {
    std::env::current_dir()
}

/// `path` if absolute, else `base` joined with it, without `.` components (`..` stays: only the
/// file system knows what it means when a folder is a symbolic link).
fn resolve(base: &Path, path: &Path) -> PathBuf {
    base.join(path).components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

/// `source` is the file the text came from: relative paths in it resolve against its folder
/// (itself resolved against `working_dir` if relative), and messages name it as given.
pub fn from_str(text: &str, source: &Path, env: &BTreeMap<String, String>, working_dir: &Path) -> Result<Config, ConfigError> {
    let file = source.display().to_string();
    let mut tree: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_norway::from_str(text).map_err(|e| ConfigError::Syntax { file: file.clone(), message: e.to_string() })?
    };
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    if !tree.is_mapping() {
        return Err(ConfigError::Syntax { file, message: "the top level must be a mapping of keys".into() });
    }
    let origin = apply_env(&mut tree, env, &file)?;
    let key_error = |key: &str, problem: String| {
        let key = match origin.get(key) {
            Some(var) => format!("{key} (from environment {var})"),
            None => key.to_string(),
        };
        ConfigError::Key { file: file.clone(), key, problem }
    };
    let raw: RawConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let problem = e.inner().to_string();
        key_error(if path == "." { "(top level)" } else { &path }, problem)
    })?;
    let retry_max_attempts_override = match env.get("MAX_RETRY_ATTEMPTS") {
        None => None,
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ConfigError::Key {
                    file, key: "MAX_RETRY_ATTEMPTS (environment)".into(), problem: format!("`{raw}` must be a whole number ≥ 1")
                });
            }
        },
    };
    let file_folder = resolve(working_dir, source.parent().unwrap_or(Path::new("")));
    // A path from the file reads from the file's folder; one from the environment was typed
    // where the command runs, so it reads from the working directory.
    let path_base = |key: &str| if origin.contains_key(key) { working_dir.to_path_buf() } else { file_folder.clone() };
    let bases = PathBases { data_dir: path_base("data_dir"), retry_config: path_base("retry_config"), archive_dir: path_base("retention.archive_dir") };
    validate(raw, source, &bases, retry_max_attempts_override, origin.clone(), &key_error)
}

/// The folder each relative path resolves against.
struct PathBases {
    data_dir: PathBuf,
    retry_config: PathBuf,
    archive_dir: PathBuf,
}

fn validate(
    raw: RawConfig,
    source: &Path,
    bases: &PathBases,
    retry_max_attempts_override: Option<u32>,
    from_environment: BTreeMap<String, String>,
    key_error: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Config, ConfigError> {
    let duration = |key: &str, text: &DurationText| parse_duration(&text.text()).map_err(|p| key_error(key, p));
    let positive = |key: &str, value: usize| {
        if value == 0 { Err(key_error(key, "must be at least 1".into())) } else { Ok(value) }
    };

    // A connection timeout of zero would close every connection at once.
    let connection_timeout = |key: &str, text: &DurationText| {
        let value = duration(key, text)?;
        if value < CONNECTION_TIMEOUT_MIN { Err(key_error(key, format!("must be at least {}", fmt_duration(CONNECTION_TIMEOUT_MIN)))) } else { Ok(value) }
    };

    let listen: SocketAddr = raw.listen.parse().map_err(|_| key_error("listen", format!("`{}` is not an address:port such as 127.0.0.1:8000", raw.listen)))?;
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for (i, token) in raw.tokens.iter().enumerate() {
        let (secret, role) = match token {
            RawToken::Plain(secret) => (secret.trim().to_string(), Role::Admin),
            RawToken::WithRole(RawTokenWithRole { token, role }) => {
                let role = Role::parse(role).ok_or_else(|| key_error(&format!("tokens[{i}].role"), format!("`{role}` must be admin, viewer or provider")))?;
                (token.trim().to_string(), role)
            }
        };
        if secret.len() < 8 {
            return Err(key_error("tokens", format!("token `{}` is shorter than 8 characters", mask_secret(&secret))));
        }
        if tokens.iter().any(|t: &Token| t.secret == secret) {
            return Err(key_error("tokens", format!("token `{}` is listed twice", mask_secret(&secret))));
        }
        tokens.push(Token { secret, role });
    }
    if !tokens.iter().any(|t| t.role == Role::Admin) {
        let problem = if tokens.is_empty() {
            "no API token is configured, and the service refuses to run open: add one under `tokens:` in this file or set VALID_TOKENS"
        } else {
            "no token has the admin role: add one (a bare string is an admin token)"
        };
        return Err(key_error("tokens", problem.into()));
    }
    if raw.max_concurrent_calls == 0 {
        return Err(key_error("max_concurrent_calls", "must be at least 1".into()));
    }
    if !(raw.max_calls_per_second.is_finite() && raw.max_calls_per_second > 0.0) {
        return Err(key_error("max_calls_per_second", "must be a number above 0".into()));
    }
    let duplicate_window = duration("duplicate_window", &raw.duplicate_window)?;
    let callback_timeout = duration("callback_timeout", &raw.callback_timeout)?;
    if callback_timeout < Duration::from_secs(1) {
        return Err(key_error("callback_timeout", "must be at least 1s".into()));
    }
    let public_url = raw.public_url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    if let Some(url) = &public_url
        && !is_http_url(url)
    {
        return Err(key_error("public_url", format!("`{url}` must be an http:// or https:// URL with a host")));
    }
    let provider = validate_provider(raw.provider, key_error)?;
    let workers = positive("workers", raw.workers)?;
    if workers > 1024 {
        return Err(key_error("workers", "must be at most 1024 (each worker is a thread)".into()));
    }
    let l = raw.limits;
    let limits = Limits {
        request_body_max_bytes: positive("limits.request_body_max_bytes", l.request_body_max_bytes)?,
        batch_max: positive("limits.batch_max", l.batch_max)?,
        page_size_default: positive("limits.page_size_default", l.page_size_default)?,
        page_size_max: positive("limits.page_size_max", l.page_size_max)?,
        list_scan_max: positive("limits.list_scan_max", l.list_scan_max)?,
        writer_inbox_max: positive("limits.writer_inbox_max", l.writer_inbox_max)?,
        writer_batch_max: positive("limits.writer_batch_max", l.writer_batch_max)?,
        event_queue_max: positive("limits.event_queue_max", l.event_queue_max)?,
        cancel_chunk_max: positive("limits.cancel_chunk_max", l.cancel_chunk_max)?,
        retry_release_max: positive("limits.retry_release_max", l.retry_release_max)?,
        http_request_timeout: duration("limits.http_request_timeout", &l.http_request_timeout)?,
        shutdown_timeout: duration("limits.shutdown_timeout", &l.shutdown_timeout)?,
        connections_max: positive("limits.connections_max", l.connections_max)?,
        header_read_timeout: connection_timeout("limits.header_read_timeout", &l.header_read_timeout)?,
        idle_timeout: connection_timeout("limits.idle_timeout", &l.idle_timeout)?,
        write_stall_timeout: connection_timeout("limits.write_stall_timeout", &l.write_stall_timeout)?,
        exports_max: positive("limits.exports_max", l.exports_max)?,
        export_stall_timeout: connection_timeout("limits.export_stall_timeout", &l.export_stall_timeout)?,
        disk_free_min_mb: l.disk_free_min_mb,
        purge_chunk_max: positive("limits.purge_chunk_max", l.purge_chunk_max)?,
    };
    if limits.connections_max > CONNECTIONS_MAX_LIMIT {
        return Err(key_error("limits.connections_max", format!("must be at most {CONNECTIONS_MAX_LIMIT} (each connection is an open file)")));
    }
    if limits.page_size_default > limits.page_size_max {
        return Err(key_error("limits.page_size_default", "must not exceed limits.page_size_max".into()));
    }
    let r = raw.retention;
    let final_calls = r.final_calls.as_ref().map(|text| duration("retention.final_calls", text)).transpose()?;
    if final_calls.is_some_and(|d| d.is_zero()) {
        return Err(key_error("retention.final_calls", "must be above 0 (leave the key out to keep final calls forever)".into()));
    }
    let check_interval = duration("retention.check_interval", &r.check_interval)?;
    if check_interval < CONNECTION_TIMEOUT_MIN {
        return Err(key_error("retention.check_interval", format!("must be at least {}", fmt_duration(CONNECTION_TIMEOUT_MIN))));
    }
    let archive_dir = match r.archive_dir {
        Some(dir) if dir.as_os_str().is_empty() => {
            return Err(key_error("retention.archive_dir", "must not be empty (leave the key out for no archive)".into()));
        }
        other => other.map(|dir| resolve(&bases.archive_dir, &dir)),
    };
    if archive_dir.is_some() && final_calls.is_none() {
        return Err(key_error("retention.archive_dir", "is set but retention.final_calls is not: nothing would ever be archived".into()));
    }
    let retention = RetentionConfig { final_calls, archive_dir, check_interval };
    let path = |key: &str, base: &Path, value: &Path| {
        if value.as_os_str().is_empty() { Err(key_error(key, "must not be empty".into())) } else { Ok(resolve(base, value)) }
    };
    let data_dir = path("data_dir", &bases.data_dir, &raw.data_dir)?;
    let retry_config = path("retry_config", &bases.retry_config, &raw.retry_config)?;
    let log_level = LogFilter::parse(&raw.log.level).map_err(|problem| key_error("log.level", problem))?;
    let log_format = match raw.log.format.trim() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => return Err(key_error("log.format", format!("`{other}` must be `text` or `json`"))),
    };
    let default_region = match raw.default_region.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(Region::parse(text).map_err(|problem| key_error("default_region", problem))?),
    };
    let phone_validation = PhoneValidation::parse(raw.phone_validation.trim()).map_err(|problem| key_error("phone_validation", problem))?;
    let timezone_max_candidates = positive("timezone_inference.max_candidates", raw.timezone_inference.max_candidates)?;
    Ok(Config {
        source: source.to_path_buf(),
        listen,
        data_dir,
        tokens,
        max_concurrent_calls: raw.max_concurrent_calls,
        max_calls_per_second: raw.max_calls_per_second,
        duplicate_window,
        callback_timeout,
        public_url,
        provider,
        workers,
        retry_config,
        retry_max_attempts_override,
        storage: StorageConfig {
            quick_repair: raw.storage.quick_repair,
            cache_size_bytes: positive("storage.cache_size_mb", raw.storage.cache_size_mb)? * 1024 * 1024,
        },
        limits,
        retention,
        log_level,
        log_format,
        default_region,
        phone_validation,
        timezone_max_candidates,
        from_environment,
    })
}

/// `http://` or `https://`, a host, and no blank anywhere.
fn is_http_url(text: &str) -> bool {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"));
    rest.is_some_and(|rest| !rest.starts_with(['/', '?', '#', ':']) && !rest.is_empty() && !text.contains(char::is_whitespace))
}

/// `+` and 8 to 15 digits, the first not 0: a caller id Twilio can present.
fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
}

fn validate_provider(raw: RawProvider, key_error: &dyn Fn(&str, String) -> ConfigError) -> Result<ProviderConfig, ConfigError> {
    let duration = |key: &str, text: &DurationText| parse_duration(&text.text()).map_err(|p| key_error(key, p));
    let kind = match raw.kind.trim() {
        "webhook" => ProviderKind::Webhook,
        "twilio" => ProviderKind::Twilio,
        other => return Err(key_error("provider.kind", format!("`{other}` must be `webhook` or `twilio`"))),
    };
    let nonempty = |value: Option<String>| value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let url = nonempty(raw.url);
    let timeout = duration("provider.timeout", &raw.timeout)?;
    if timeout < Duration::from_millis(10) {
        return Err(key_error("provider.timeout", "must be at least 10ms".into()));
    }
    if raw.max_send_attempts == 0 {
        return Err(key_error("provider.max_send_attempts", "must be at least 1".into()));
    }
    if raw.breaker_failures == 0 {
        return Err(key_error("provider.breaker_failures", "must be at least 1".into()));
    }
    let breaker_cooldown = duration("provider.breaker_cooldown", &raw.breaker_cooldown)?;
    if breaker_cooldown < Duration::from_millis(100) {
        return Err(key_error("provider.breaker_cooldown", "must be at least 100ms".into()));
    }
    let throttle_budget = duration("provider.throttle_budget", &raw.throttle_budget)?;
    // Read whatever the target: a mock setting that is wrong is wrong before it is used.
    let mock_delay = parse_delay(&raw.mock.delay.text())
        .map_err(|p| key_error("provider.mock.delay", format!("{p}; write a duration or a range, e.g. `1s..10s`, `0..250ms`, `0`")))?;
    let mock_mix = parse_mix(&raw.mock.mix)
        .map_err(|p| key_error("provider.mock.mix", format!("{p}; write STATUS=WEIGHT items, e.g. `PICKED=70,DISCONNECTED=15,RNR=10,FAILED=5`")))?;
    let (target, twilio, api_key, callback_secret) = match kind {
        ProviderKind::Webhook => {
            let twilio_keys = [
                ("base_url", raw.base_url.is_some()),
                ("account_sid", raw.account_sid.is_some()),
                ("auth_token", raw.auth_token.is_some()),
                ("from", raw.from.is_some()),
                ("twiml", raw.twiml.is_some()),
                ("machine_detection", raw.machine_detection.is_some()),
                ("ring_timeout", raw.ring_timeout.is_some()),
                ("outcomes", !raw.outcomes.is_empty()),
            ];
            if let Some((key, _)) = twilio_keys.iter().find(|(_, given)| *given) {
                return Err(key_error(&format!("provider.{key}"), "only applies with `provider.kind: twilio`".into()));
            }
            let target = match url.as_deref() {
                None => {
                    return Err(key_error(
                        "provider.url",
                        format!(
                            "no provider is configured: set `provider.url` (or EXTERNAL_SERVICE_URL) to your provider's endpoint, or to `{BUILTIN_MOCK}` for a demo that places no real calls"
                        ),
                    ));
                }
                Some(BUILTIN_MOCK) => ProviderTarget::BuiltinMock,
                Some(url) if is_http_url(url) => ProviderTarget::Url(url.to_string()),
                Some(other) => return Err(key_error("provider.url", format!("`{other}` must be an http(s) URL or `{BUILTIN_MOCK}`"))),
            };
            (target, None, nonempty(raw.api_key), nonempty(raw.callback_secret))
        }
        ProviderKind::Twilio => {
            for (key, given) in [("api_key", raw.api_key.is_some()), ("callback_secret", raw.callback_secret.is_some())] {
                if given {
                    return Err(key_error(
                        &format!("provider.{key}"),
                        "only applies with `provider.kind: webhook` (Twilio signs its callbacks with auth_token)".into(),
                    ));
                }
            }
            let builtin = url.as_deref() == Some(BUILTIN_MOCK);
            let base_url = nonempty(raw.base_url).unwrap_or_else(|| TWILIO_BASE_URL.to_string());
            if !is_http_url(&base_url) {
                return Err(key_error("provider.base_url", format!("`{base_url}` must be an http(s) URL")));
            }
            let required = |key: &str, value: Option<String>, builtin_default: &str| match value {
                Some(v) => Ok(v),
                None if builtin => Ok(builtin_default.to_string()),
                None => Err(key_error(&format!("provider.{key}"), "is required with `provider.kind: twilio`".to_string())),
            };
            let account_sid = required("account_sid", nonempty(raw.account_sid), BUILTIN_MOCK_ACCOUNT_SID)?;
            if account_sid.contains(['/', '?', '#', ' ']) {
                return Err(key_error("provider.account_sid", format!("`{account_sid}` is not an account SID")));
            }
            let auth_token = required("auth_token", nonempty(raw.auth_token), BUILTIN_MOCK_AUTH_TOKEN)?;
            let from = required("from", nonempty(raw.from), BUILTIN_MOCK_FROM)?;
            if !is_e164(&from) {
                return Err(key_error("provider.from", format!("`{from}` must be a number in E.164 form, e.g. +14155550000")));
            }
            let flow_url = url.filter(|u| u != BUILTIN_MOCK);
            let call_flow = match (nonempty(raw.twiml), flow_url) {
                (Some(_), Some(_)) => return Err(key_error("provider.twiml", "give either `twiml` or `url` (the call flow), not both".into())),
                (Some(twiml), None) => CallFlow::Twiml(twiml),
                (None, Some(url)) if is_http_url(&url) => CallFlow::Url(url),
                (None, Some(url)) => return Err(key_error("provider.url", format!("`{url}` must be the call flow's http(s) URL or `{BUILTIN_MOCK}`"))),
                (None, None) if builtin => CallFlow::Twiml(BUILTIN_MOCK_TWIML.to_string()),
                (None, None) => {
                    return Err(key_error("provider.twiml", "the call flow is required: set `twiml` (inline TwiML) or `url` (where Twilio fetches it)".into()));
                }
            };
            let machine_detection =
                MachineDetection::parse(raw.machine_detection.as_deref().unwrap_or("off")).map_err(|p| key_error("provider.machine_detection", p))?;
            let ring_timeout = match &raw.ring_timeout {
                Some(text) => duration("provider.ring_timeout", text)?,
                None => Duration::from_secs(30),
            };
            let ring_timeout_seconds = ring_timeout.as_secs();
            if !(1..=RING_TIMEOUT_SECONDS_MAX as u64).contains(&ring_timeout_seconds) {
                return Err(key_error("provider.ring_timeout", format!("must be from 1s to {RING_TIMEOUT_SECONDS_MAX}s")));
            }
            let outcomes = OutcomeMap::parse(&raw.outcomes).map_err(|e| key_error(&format!("provider.outcomes.{}", e.key), e.problem))?;
            let target = if builtin { ProviderTarget::BuiltinMock } else { ProviderTarget::Url(base_url.clone()) };
            let twilio = TwilioConfig {
                base_url,
                account_sid,
                auth_token,
                from,
                call_flow,
                machine_detection,
                ring_timeout_seconds: ring_timeout_seconds as u32,
                outcomes,
            };
            (target, Some(twilio), None, None)
        }
    };
    Ok(ProviderConfig {
        kind,
        target,
        api_key,
        callback_secret,
        twilio,
        timeout,
        max_send_attempts: raw.max_send_attempts,
        breaker_failures: raw.breaker_failures,
        breaker_cooldown,
        throttle_budget,
        mock_delay,
        mock_mix,
        mock_seed: raw.mock.seed,
    })
}

// The built-in mock provider's settings (`provider.mock.delay`, `provider.mock.mix`), also the
// flags of `callmgr mock-provider`.

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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "tokens: [a-long-token]\nprovider: {url: builtin-mock}\n";

    /// Where the tests' `test.yaml` is, and where the command runs.
    const WORKING_DIR: &str = "/srv/run";

    fn repository() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        from_str(text, Path::new("test.yaml"), &env(vars), Path::new(WORKING_DIR)).map_err(|e| e.to_string())
    }

    #[test]
    fn shipped_config_is_valid() {
        let config = load(Path::new("config/callmgr.yaml"), &BTreeMap::new(), repository()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8000");
        assert!(config.uses_dev_token());
        assert_eq!(config.provider.target, ProviderTarget::BuiltinMock);
        // Its paths read from its own folder, wherever the command runs.
        assert_eq!(config.retry_config, repository().join("config/retry_config.yaml"));
        assert!(config.retry_config.is_file());
        assert_eq!(config.data_dir, repository().join("config/../data"));
    }

    #[test]
    fn packaged_config_refuses_to_start_until_token_and_provider_are_set() {
        let err = load(Path::new("packaging/callmgr.yaml"), &BTreeMap::new(), repository()).unwrap_err().to_string();
        assert!(err.contains("packaging/callmgr.yaml") && err.contains("`tokens`"), "{err}");
        let vars = env(&[("VALID_TOKENS", "production-token-1")]);
        let err = load(Path::new("packaging/callmgr.yaml"), &vars, repository()).unwrap_err().to_string();
        assert!(err.contains("`provider.url`"), "{err}");
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let config = load_text(MINIMAL, &[]).unwrap();
        assert_eq!(config.max_concurrent_calls, 100);
        assert_eq!(config.duplicate_window, Duration::from_secs(300));
        assert_eq!(config.limits.connections_max, 512);
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.limits.exports_max, 4);
        assert_eq!(config.limits.export_stall_timeout, Duration::from_secs(30));
        assert_eq!(config.callback_url("127.0.0.1:8000".parse().unwrap()), "http://127.0.0.1:8000/api/v1/callback/");
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let cases: &[(&str, &str)] = &[
            ("max_concurrent_calls: lots\n", "key `max_concurrent_calls`"),
            ("duplicate_window: 300\n", "has no unit"),
            ("callback_timeout: soon\n", "key `callback_timeout`"),
            ("limits: {batch_mx: 3}\n", "key `limits.batch_mx`: unknown field `batch_mx`"),
            ("listen: localhost\n", "key `listen`"),
            ("log: {format: xml}\n", "key `log.format`"),
            ("provider: {url: ftp://x}\n", "key `provider.url`"),
            ("workers: 0\n", "key `workers`: must be at least 1"),
            ("limits: {connections_max: 0}\n", "key `limits.connections_max`: must be at least 1"),
            ("limits: {idle_timeout: 0s}\n", "key `limits.idle_timeout`: must be at least 100ms"),
            ("limits: {export_stall_timeout: 10}\n", "has no unit"),
            ("tokens: [short]\n", "shorter than 8"),
            ("default_region: ZZ\n", "key `default_region`: \"ZZ\" is not a region the phone number metadata knows"),
            ("default_region: GBR\n", "key `default_region`"),
            ("phone_validation: strict\n", "key `phone_validation`: unknown phone validation \"strict\""),
            ("timezone_inference: {max_candidates: 0}\n", "key `timezone_inference.max_candidates`: must be at least 1"),
            ("timezone_inference: {max: 2}\n", "key `timezone_inference.max`: unknown field"),
        ];
        for (extra, expected) in cases {
            let text = if extra.starts_with("tokens") || extra.starts_with("provider") {
                format!("{extra}{}", if extra.starts_with("tokens") { "provider: {url: builtin-mock}\n" } else { "tokens: [a-long-token]\n" })
            } else {
                format!("{MINIMAL}{extra}")
            };
            let err = load_text(&text, &[]).unwrap_err();
            assert!(err.starts_with("test.yaml: "), "{err}");
            assert!(err.contains(expected), "for {extra:?} expected {expected:?} in {err}");
        }
        assert!(load_text("listen: [unclosed\n", &[]).unwrap_err().starts_with("test.yaml: "));
    }

    #[test]
    fn reference_environment_names_override_the_file() {
        let config = load_text(
            MINIMAL,
            &[
                ("MAX_CONCURRENT_CALLS", "7"),
                ("DUPLICATE_CALL_WINDOW_MINUTES", "2"),
                ("EXTERNAL_SERVICE_URL", "http://127.0.0.1:9/x"),
                ("EXTERNAL_SERVICE_TIMEOUT_SECONDS", "4"),
                ("VALID_TOKENS", "token-one-1, token-two-2"),
                ("X_AUTH_TOKEN", "token-three"),
                ("RETRY_SCHEDULE_CONFIG_PATH", "/etc/r.yaml"),
                ("MAX_RETRY_ATTEMPTS", "5"),
            ],
        )
        .unwrap();
        assert_eq!(config.max_concurrent_calls, 7);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.provider.target, ProviderTarget::Url("http://127.0.0.1:9/x".into()));
        assert_eq!(config.provider.timeout, Duration::from_secs(4));
        assert_eq!(config.tokens.iter().map(|t| t.secret.as_str()).collect::<Vec<_>>(), vec!["token-one-1", "token-two-2", "token-three"]);
        assert!(config.tokens.iter().all(|t| t.role == Role::Admin));
        assert_eq!(config.retry_config, PathBuf::from("/etc/r.yaml"));
        assert_eq!(config.retry_max_attempts_override, Some(5));
    }

    #[test]
    fn callmgr_variables_reach_nested_keys_and_bad_ones_name_the_variable() {
        let config = load_text(MINIMAL, &[("CALLMGR_WORKERS", "3"), ("CALLMGR_LIMITS__BATCH_MAX", "50"), ("CALLMGR_STORAGE__QUICK_REPAIR", "true")]).unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.limits.batch_max, 50);
        assert!(config.storage.quick_repair);
        let err = load_text(MINIMAL, &[("CALLMGR_WORKERS", "many")]).unwrap_err();
        assert!(err.contains("workers (from environment CALLMGR_WORKERS)"), "{err}");
        let err = load_text(MINIMAL, &[("MAX_CONCURRENT_CALLS", "-1")]).unwrap_err();
        assert!(err.contains("MAX_CONCURRENT_CALLS"), "{err}");
        let err = load_text(MINIMAL, &[("DUPLICATE_CALL_WINDOW_MINUTES", "five")]).unwrap_err();
        assert!(err.contains("DUPLICATE_CALL_WINDOW_MINUTES"), "{err}");
    }

    #[test]
    fn phone_and_timezone_settings() {
        let config = load_text(MINIMAL, &[]).unwrap();
        assert_eq!((config.default_region, config.phone_validation, config.timezone_max_candidates), (None, PhoneValidation::Possible, 3));
        let text = format!("{MINIMAL}default_region: gb\nphone_validation: valid\ntimezone_inference: {{max_candidates: 5}}\n");
        let config = load_text(&text, &[]).unwrap();
        assert_eq!(config.default_region.map(|r| r.to_string()).as_deref(), Some("GB"));
        assert_eq!((config.phone_validation, config.timezone_max_candidates), (PhoneValidation::Valid, 5));
        let described = config.describe();
        assert!(described.contains("default_region:         GB\n"), "{described}");
        assert!(described.contains("phone_validation:       valid\n"), "{described}");
        assert!(described.contains("max_candidates=5"), "{described}");
        let config = load_text(MINIMAL, &[("CALLMGR_DEFAULT_REGION", "US"), ("CALLMGR_PHONE_VALIDATION", "shape")]).unwrap();
        assert_eq!(config.default_region.map(|r| r.to_string()).as_deref(), Some("US"));
        assert_eq!(config.phone_validation, PhoneValidation::Shape);
        let err = load_text(MINIMAL, &[("CALLMGR_DEFAULT_REGION", "XX")]).unwrap_err();
        assert!(err.contains("default_region (from environment CALLMGR_DEFAULT_REGION)"), "{err}");
    }

    #[test]
    fn retention_keeps_forever_by_default_and_resolves_the_archive_against_the_config_folder() {
        let config = load_text(MINIMAL, &[]).unwrap();
        assert_eq!(config.retention, RetentionConfig { final_calls: None, archive_dir: None, check_interval: Duration::from_secs(60) });
        assert_eq!(config.limits.purge_chunk_max, 1_000);
        let text = format!("{MINIMAL}retention: {{final_calls: 180d, archive_dir: archive}}\nlimits: {{purge_chunk_max: 500}}\n");
        let config = from_str(&text, Path::new("/etc/callmgr/callmgr.yaml"), &BTreeMap::new(), Path::new(WORKING_DIR)).unwrap();
        assert_eq!(config.retention.final_calls, Some(Duration::from_secs(180 * 86_400)));
        assert_eq!(config.retention.archive_dir, Some(PathBuf::from("/etc/callmgr/archive")));
        assert_eq!(config.limits.purge_chunk_max, 500);
        for (extra, expected) in [
            ("retention: {final_calls: 180}\n", "key `retention.final_calls`: `180` has no unit"),
            ("retention: {final_calls: 0s}\n", "key `retention.final_calls`: must be above 0"),
            ("retention: {archive_dir: /a}\n", "key `retention.archive_dir`: is set but retention.final_calls is not"),
            ("retention: {keep: 1d}\n", "key `retention.keep`: unknown field"),
            ("limits: {purge_chunk_max: 0}\n", "key `limits.purge_chunk_max`: must be at least 1"),
        ] {
            let err = load_text(&format!("{MINIMAL}{extra}"), &[]).unwrap_err();
            assert!(err.contains(expected), "for {extra:?} expected {expected:?} in {err}");
        }
    }

    #[test]
    fn describe_masks_tokens() {
        let config = load_text(MINIMAL, &[]).unwrap();
        let text = config.describe();
        assert!(!text.contains("a-long-token"));
        assert!(text.contains("a-lo…en"));
    }

    const TWILIO: &str = "tokens: [a-long-token]\nprovider:\n  kind: twilio\n  account_sid: AC123\n  auth_token: twilio-secret\n  from: \"+14155550000\"\n  twiml: \"<Response/>\"\n";

    #[test]
    fn twilio_settings_are_read_with_their_defaults() {
        let config = load_text(TWILIO, &[]).unwrap();
        assert_eq!(config.provider.kind, ProviderKind::Twilio);
        assert_eq!(config.provider.target, ProviderTarget::Url(TWILIO_BASE_URL.into()));
        let twilio = config.provider.twilio.as_ref().unwrap();
        assert_eq!((twilio.account_sid.as_str(), twilio.auth_token.as_str(), twilio.from.as_str()), ("AC123", "twilio-secret", "+14155550000"));
        assert_eq!(twilio.call_flow, CallFlow::Twiml("<Response/>".into()));
        assert_eq!((twilio.ring_timeout_seconds, twilio.machine_detection, twilio.outcomes), (30, None, OutcomeMap::default()));
        let text = config.describe();
        assert!(text.contains("provider.kind:          twilio") && !text.contains("twilio-secret"), "{text}");
        // The auth token from the environment; the outcome map and call flow URL from the file.
        let text = TWILIO
            .replace("  twiml: \"<Response/>\"\n", "  url: https://flow.example.com/x.xml\n  outcomes: {busy: disconnected}\n  machine_detection: Enable\n");
        let config = load_text(&text, &[("CALLMGR_PROVIDER__AUTH_TOKEN", "1234567890")]).unwrap();
        let twilio = config.provider.twilio.unwrap();
        assert_eq!(twilio.auth_token, "1234567890", "digits from the environment stay text");
        assert_eq!(twilio.call_flow, CallFlow::Url("https://flow.example.com/x.xml".into()));
        assert_eq!(twilio.outcomes.busy, crate::core::model::Outcome::Disconnected);
        assert_eq!(twilio.machine_detection, Some(MachineDetection::Enable));
        // The built-in mock in Twilio mode needs no account.
        let config = load_text("tokens: [a-long-token]\nprovider: {kind: twilio, url: builtin-mock}\n", &[]).unwrap();
        assert_eq!(config.provider.target, ProviderTarget::BuiltinMock);
        assert_eq!(config.provider.twilio.unwrap().account_sid, BUILTIN_MOCK_ACCOUNT_SID);
    }

    #[test]
    fn twilio_errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("  auth_token: twilio-secret\n", "", "key `provider.auth_token`: is required"),
            ("  from: \"+14155550000\"\n", "  from: +14155550000\n", "key `provider.from`: `14155550000` is not text here: write it in quotes"),
            ("  from: \"+14155550000\"\n", "  from: \"4155550000\"\n", "key `provider.from`"),
            ("  twiml: \"<Response/>\"\n", "  twiml: \"<Response/>\"\n  url: https://x.example.com/f\n", "key `provider.twiml`: give either"),
            ("  twiml: \"<Response/>\"\n", "", "key `provider.twiml`: the call flow is required"),
            ("  twiml: \"<Response/>\"\n", "  twiml: x\n  outcomes: {ringing: RNR}\n", "key `provider.outcomes.ringing`: not a final Twilio call status"),
            ("  twiml: \"<Response/>\"\n", "  twiml: x\n  ring_timeout: 900s\n", "key `provider.ring_timeout`"),
            ("  twiml: \"<Response/>\"\n", "  twiml: x\n  machine_detection: maybe\n", "key `provider.machine_detection`"),
            ("  twiml: \"<Response/>\"\n", "  twiml: x\n  callback_secret: s\n", "key `provider.callback_secret`: only applies with `provider.kind: webhook`"),
            ("  kind: twilio\n", "  kind: sip\n", "key `provider.kind`"),
        ];
        for (from, to, expected) in cases {
            let err = load_text(&TWILIO.replace(from, to), &[]).unwrap_err();
            assert!(err.contains(expected), "for {to:?} expected {expected:?} in {err}");
        }
        let err = load_text("tokens: [a-long-token]\nprovider: {url: builtin-mock, account_sid: AC1}\n", &[]).unwrap_err();
        assert!(err.contains("key `provider.account_sid`: only applies with `provider.kind: twilio`"), "{err}");
    }

    #[test]
    fn tokens_carry_roles_and_one_must_be_admin() {
        let text = "tokens: [admin-token-1, {token: viewer-token-1, role: viewer}, {token: provider-token-1, role: provider}]\nprovider: {url: builtin-mock}\n";
        let config = load_text(text, &[]).unwrap();
        let roles: Vec<(&str, Role)> = config.tokens.iter().map(|t| (t.secret.as_str(), t.role)).collect();
        assert_eq!(roles, vec![("admin-token-1", Role::Admin), ("viewer-token-1", Role::Viewer), ("provider-token-1", Role::Provider)]);
        assert!(config.describe().contains("view…-1 (viewer)"));
        let err = load_text("tokens: [admin-token-1, {token: other-token-1, role: root}]\nprovider: {url: builtin-mock}\n", &[]).unwrap_err();
        assert!(err.contains("key `tokens[1].role`: `root` must be admin, viewer or provider"), "{err}");
        let err = load_text("tokens: [{token: viewer-token-1, role: viewer}]\nprovider: {url: builtin-mock}\n", &[]).unwrap_err();
        assert!(err.contains("no token has the admin role"), "{err}");
    }

    #[test]
    fn a_callback_timeout_shorter_than_the_send_budget_is_a_problem_naming_both_keys() {
        let config = load_text(&format!("{MINIMAL}callback_timeout: 5s\n"), &[("CALLMGR_PROVIDER__TIMEOUT", "2s")]).unwrap();
        assert_eq!(config.send_budget(), Duration::from_millis(6_600), "3 sends of 2s, pauses of 200ms and 400ms");
        let problem = config.callback_timeout_problem().unwrap();
        assert!(problem.starts_with("test.yaml: key `callback_timeout`: 5s is shorter than the worst-case send budget 6s 600ms"), "{problem}");
        assert!(problem.contains("provider.timeout") && problem.contains("provider.max_send_attempts"), "{problem}");
        assert_eq!(load_text(MINIMAL, &[]).unwrap().callback_timeout_problem(), None);
        assert_eq!((resend_backoff(1), resend_backoff(5), resend_backoff(40)), (Duration::from_millis(200), Duration::from_millis(3_200), RESEND_BACKOFF_MAX));
    }

    #[test]
    fn breaker_and_throttle_settings() {
        let config = load_text(MINIMAL, &[]).unwrap();
        assert_eq!((config.provider.breaker_failures, config.provider.breaker_cooldown), (5, Duration::from_secs(30)));
        assert_eq!(config.provider.throttle_budget, Duration::from_secs(120));
        let err = load_text(MINIMAL, &[("CALLMGR_PROVIDER__BREAKER_FAILURES", "0")]).unwrap_err();
        assert!(err.contains("provider.breaker_failures (from environment CALLMGR_PROVIDER__BREAKER_FAILURES)"), "{err}");
        let config = load_text(MINIMAL, &[("CALLMGR_PROVIDER__CALLBACK_SECRET", "12345")]).unwrap();
        assert_eq!(config.provider.callback_secret.as_deref(), Some("12345"));
    }

    #[test]
    fn log_level_takes_a_level_or_a_filter_whose_every_directive_names_a_level() {
        for accepted in ["info", "DEBUG", " warn ", "off", "callmgr=debug,info", "warn,callmgr::service=info", "info,"] {
            let config = load_text(&format!("{MINIMAL}log: {{level: \"{accepted}\"}}\n"), &[]).unwrap_or_else(|e| panic!("{accepted:?}: {e}"));
            assert_eq!(config.log_level.as_str(), accepted.trim());
        }
        // `verbose` and `callmgr` would be read by the tracing filter as target names: nothing
        // else would ever be logged.
        for refused in ["verbose", "callmgr", "5", "", "info,verbose", "callmgr=loud", "callmgr[{x=1}]"] {
            let err = load_text(&format!("{MINIMAL}log: {{level: \"{refused}\"}}\n"), &[]).unwrap_err();
            assert!(err.starts_with("test.yaml: key `log.level`: "), "{refused:?}: {err}");
            assert!(err.contains(&format!("`{refused}`")) || refused.is_empty(), "{refused:?}: {err}");
            assert!(err.contains("error, warn, info, debug, trace, off") && err.contains("callmgr=debug,info"), "{refused:?}: {err}");
        }
        // RUST_LOG is read with the file and checked the same way; CALLMGR_LOG__LEVEL wins over it.
        assert_eq!(load_text(MINIMAL, &[("RUST_LOG", "debug")]).unwrap().log_level.as_str(), "debug");
        assert_eq!(load_text(MINIMAL, &[("RUST_LOG", "debug"), ("CALLMGR_LOG__LEVEL", "warn")]).unwrap().log_level.as_str(), "warn");
        let err = load_text(MINIMAL, &[("RUST_LOG", "verbose")]).unwrap_err();
        assert!(err.contains("key `log.level (from environment RUST_LOG)`: `verbose`"), "{err}");
        let err = load_text(&format!("{MINIMAL}log: {{format: \" xml\"}}\n"), &[]).unwrap_err();
        assert!(err.contains("key `log.format`: `xml` must be `text` or `json`"), "{err}");
    }

    #[test]
    fn the_builtin_mocks_delay_and_mix_are_parsed_with_the_rest() {
        let config = load_text(
            &format!("{MINIMAL}provider: {{url: builtin-mock, mock: {{delay: 0..250ms, mix: \"picked=1,RNR=3\", seed: 7}}}}\n")
                .replace("provider: {url: builtin-mock}\n", ""),
            &[],
        )
        .unwrap();
        assert_eq!(config.provider.mock_delay, DelayRange { min: Duration::ZERO, max: Duration::from_millis(250) });
        assert_eq!(config.provider.mock_mix, vec![(Outcome::Picked, 1), (Outcome::Rnr, 3)]);
        assert!(config.describe().contains("provider.mock:          delay=0s..250ms mix=PICKED=1,RNR=3 seed=7\n"), "{}", config.describe());
        let config = load_text(MINIMAL, &[("CALLMGR_PROVIDER__MOCK__DELAY", "0")]).unwrap();
        assert_eq!(config.provider.mock_delay, DelayRange { min: Duration::ZERO, max: Duration::ZERO });
        // Wrong values are refused even when the mock is not the provider.
        let webhook = "tokens: [a-long-token]\nprovider: {url: \"http://127.0.0.1:9/dial\", mock: {";
        for (mock, expected) in [
            ("delay: soon", "key `provider.mock.delay`: `soon`"),
            ("delay: 5s..1s", "key `provider.mock.delay`: delay `5s..1s`: the upper bound is below the lower"),
            ("mix: \"PICKED=0\"", "key `provider.mock.mix`: the outcome mix has no weight"),
            ("mix: \"ANSWERED=5\"", "key `provider.mock.mix`: mix item `ANSWERED=5`: unknown status"),
            ("mix: \"PICKED\"", "key `provider.mock.mix`: mix item `PICKED` must be STATUS=WEIGHT"),
        ] {
            let err = load_text(&format!("{webhook}{mock}}}}}\n"), &[]).unwrap_err();
            assert!(err.starts_with("test.yaml: ") && err.contains(expected), "{mock:?}: expected {expected:?} in {err}");
        }
        let err = load_text(MINIMAL, &[("CALLMGR_PROVIDER__MOCK__MIX", "RNR=x")]).unwrap_err();
        assert!(err.contains("key `provider.mock.mix (from environment CALLMGR_PROVIDER__MOCK__MIX)`"), "{err}");
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        for (extra, expected) in [
            ("public_url: \"http://\"\n", "key `public_url`"),
            ("public_url: \"https:///x\"\n", "key `public_url`"),
            ("public_url: \"http://a b\"\n", "key `public_url`"),
        ] {
            let err = load_text(&format!("{MINIMAL}{extra}"), &[]).unwrap_err();
            assert!(err.contains(expected), "{extra:?}: {err}");
        }
        let err = load_text("tokens: [a-long-token]\nprovider: {url: \"http://\"}\n", &[]).unwrap_err();
        assert!(err.contains("key `provider.url`"), "{err}");
    }

    #[test]
    fn relative_paths_read_from_the_files_folder_and_from_the_working_directory_when_the_environment_gives_them() {
        let text = format!("{MINIMAL}data_dir: ./state\nretry_config: rules/retry.yaml\nretention: {{final_calls: 1d, archive_dir: ../archive}}\n");
        let config = from_str(&text, Path::new("/etc/callmgr/callmgr.yaml"), &BTreeMap::new(), Path::new(WORKING_DIR)).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/etc/callmgr/state"));
        assert_eq!(config.retry_config, PathBuf::from("/etc/callmgr/rules/retry.yaml"));
        assert_eq!(config.retention.archive_dir, Some(PathBuf::from("/etc/callmgr/../archive")));
        // A file named relatively is found from the working directory, and so are its paths.
        let config = from_str(&text, Path::new("conf/callmgr.yaml"), &BTreeMap::new(), Path::new(WORKING_DIR)).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/run/conf/state"));
        // Absent keys: beside the file.
        let config = from_str(MINIMAL, Path::new("/etc/callmgr/callmgr.yaml"), &BTreeMap::new(), Path::new(WORKING_DIR)).unwrap();
        assert_eq!((config.data_dir, config.retry_config), (PathBuf::from("/etc/callmgr/data"), PathBuf::from("/etc/callmgr/retry_config.yaml")));
        // From the environment: typed where the command runs, so read from there.
        let vars = env(&[("CALLMGR_DATA_DIR", "state"), ("RETRY_SCHEDULE_CONFIG_PATH", "./r.yaml"), ("CALLMGR_RETENTION__ARCHIVE_DIR", "/abs/archive")]);
        let config = from_str(&text, Path::new("/etc/callmgr/callmgr.yaml"), &vars, Path::new(WORKING_DIR)).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/run/state"));
        assert_eq!(config.retry_config, PathBuf::from("/srv/run/r.yaml"));
        assert_eq!(config.retention.archive_dir, Some(PathBuf::from("/abs/archive")));
        let err = load_text(&format!("{MINIMAL}data_dir: \"\"\n"), &[]).unwrap_err();
        assert!(err.contains("key `data_dir`: must not be empty"), "{err}");
        // A file that cannot be read is named by its absolute path.
        let err = load(Path::new("no-such-folder/callmgr.yaml"), &BTreeMap::new(), repository()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: cannot read", repository().join("no-such-folder/callmgr.yaml").display())), "{err}");
    }

    #[test]
    fn describe_marks_each_value_an_environment_variable_set() {
        let vars = [
            ("CALLMGR_LISTEN", "0.0.0.0:9000"),
            ("VALID_TOKENS", "token-one-1"),
            ("X_AUTH_TOKEN", "token-two-2"),
            ("CALLMGR_LIMITS__BATCH_MAX", "50"),
            ("CALLMGR_LIMITS__SHUTDOWN_TIMEOUT", "5s"),
            ("RUST_LOG", "debug"),
        ];
        let config = load_text(&format!("{MINIMAL}workers: 4\n"), &vars).unwrap();
        let text = config.describe();
        let line = |label: &str| text.lines().find(|l| l.starts_with(&format!("{label}:"))).unwrap_or_else(|| panic!("no {label} in {text}")).to_string();
        assert_eq!(line("listen"), "listen:                 0.0.0.0:9000   (from CALLMGR_LISTEN)");
        assert!(line("tokens").ends_with(")   (from VALID_TOKENS and X_AUTH_TOKEN)"), "{text}");
        assert!(
            line("limits").ends_with("   (limits.batch_max from CALLMGR_LIMITS__BATCH_MAX, limits.shutdown_timeout from CALLMGR_LIMITS__SHUTDOWN_TIMEOUT)"),
            "{text}"
        );
        assert!(line("log").ends_with("level=debug format=text   (log.level from RUST_LOG)"), "{text}");
        for unmarked in ["workers", "data_dir", "connections", "provider.url"] {
            assert!(!line(unmarked).contains("(from") && !line(unmarked).contains(" from "), "{unmarked} is marked: {text}");
        }
    }
}
