//! Configuration: the YAML file, then environment overrides, then validation into `Config`.
//! Parse (raw serde structs) → validate (named limits with units) → build. A `Config` that
//! exists is valid. Knows nothing about the service it configures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::core::phone::{PhoneValidation, Region};

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
    /// without archiving. A relative path is resolved against the config file's folder.
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

#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    pub target: ProviderTarget,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_send_attempts: u32,
    /// Settings of the built-in mock: delay range and outcome mix, as `callmgr mock-provider` takes them.
    pub mock_delay: String,
    pub mock_mix: String,
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

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this came from (for messages).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tokens: Vec<String>,
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: f64,
    pub duplicate_window: Duration,
    pub callback_timeout: Duration,
    /// Base URL the provider uses to reach us; `callback_url` = this + `/api/v1/callback/`.
    /// When absent, `http://` + the address the listener actually bound.
    pub public_url: Option<String>,
    pub provider: ProviderConfig,
    pub workers: usize,
    pub retry_config: PathBuf,
    /// `MAX_RETRY_ATTEMPTS`: overrides the retry file's `defaults.max_attempts`.
    pub retry_max_attempts_override: Option<u32>,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub retention: RetentionConfig,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Region in which numbers written without `+` are read; `None`: such numbers are refused
    /// unless their campaign names a region.
    pub default_region: Option<Region>,
    /// How strictly phone numbers are checked on input.
    pub phone_validation: PhoneValidation,
    /// Most zones a number's prefix may map to and still count as inferred (`timezone_inference.max_candidates`).
    pub timezone_max_candidates: usize,
}

impl Config {
    pub fn callback_url(&self, bound: SocketAddr) -> String {
        let base = self.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
        format!("{}/api/v1/callback/", base.trim_end_matches('/'))
    }
    pub fn uses_dev_token(&self) -> bool {
        self.tokens.iter().any(|t| t == DEV_TOKEN)
    }
    /// The human summary printed by `check-config` (tokens masked).
    pub fn describe(&self) -> String {
        let masked: Vec<String> = self.tokens.iter().map(|t| mask_secret(t)).collect();
        let provider = match &self.provider.target {
            ProviderTarget::Url(url) => url.clone(),
            ProviderTarget::BuiltinMock => format!("{BUILTIN_MOCK} (no real calls are placed)"),
        };
        let l = &self.limits;
        format!(
            "config file:            {}\n\
             listen:                 {}\n\
             data_dir:               {}\n\
             tokens:                 {}\n\
             max_concurrent_calls:   {}\n\
             max_calls_per_second:   {}\n\
             duplicate_window:       {}\n\
             callback_timeout:       {}\n\
             public_url:             {}\n\
             provider.url:           {}\n\
             provider.api_key:       {}\n\
             provider.timeout:       {}\n\
             provider.max_send_attempts: {}\n\
             workers:                {}\n\
             retry_config:           {}{}\n\
             storage.quick_repair:   {}\n\
             storage.cache_size:     {} MiB\n\
             limits:                 request_body_max_bytes={} batch_max={} page_size_default={} page_size_max={} list_scan_max={} writer_inbox_max={} writer_batch_max={} event_queue_max={} cancel_chunk_max={} retry_release_max={} http_request_timeout={} shutdown_timeout={}\n\
             connections:            connections_max={} header_read_timeout={} idle_timeout={} write_stall_timeout={} exports_max={} export_stall_timeout={}\n\
             disk:                   disk_free_min_mb={}\n\
             retention:              final_calls={} archive_dir={} check_interval={} purge_chunk_max={}\n\
             log:                    level={} format={:?}\n\
             default_region:         {}\n\
             phone_validation:       {}\n\
             timezone_inference:     max_candidates={}\n",
            self.source.display(),
            self.listen,
            self.data_dir.display(),
            if masked.is_empty() { "(none)".to_string() } else { masked.join(", ") },
            self.max_concurrent_calls,
            self.max_calls_per_second,
            fmt_duration(self.duplicate_window),
            fmt_duration(self.callback_timeout),
            self.public_url.clone().unwrap_or_else(|| format!("(default) http://{}", self.listen)),
            provider,
            if self.provider.api_key.is_some() { "(set)" } else { "(none)" },
            fmt_duration(self.provider.timeout),
            self.provider.max_send_attempts,
            self.workers,
            self.retry_config.display(),
            match self.retry_max_attempts_override {
                Some(n) => format!(" (max attempts overridden to {n} by MAX_RETRY_ATTEMPTS)"),
                None => String::new(),
            },
            self.storage.quick_repair,
            self.storage.cache_size_bytes / (1024 * 1024),
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
            l.connections_max,
            fmt_duration(l.header_read_timeout),
            fmt_duration(l.idle_timeout),
            fmt_duration(l.write_stall_timeout),
            l.exports_max,
            fmt_duration(l.export_stall_timeout),
            l.disk_free_min_mb,
            self.retention.final_calls.map(fmt_duration).unwrap_or_else(|| "(keep forever)".into()),
            self.retention.archive_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "(none)".into()),
            fmt_duration(self.retention.check_interval),
            l.purge_chunk_max,
            self.log_level,
            self.log_format,
            match &self.default_region {
                Some(region) => region.to_string(),
                None => "(none: numbers without + need their campaign's region)".to_string(),
            },
            self.phone_validation.as_str(),
            self.timezone_max_candidates,
        )
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
    tokens: Vec<String>,
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
            data_dir: "./data".into(),
            tokens: Vec::new(),
            max_concurrent_calls: 100,
            max_calls_per_second: 50.0,
            duplicate_window: "5m".into(),
            callback_timeout: "10m".into(),
            public_url: None,
            provider: RawProvider::default(),
            workers: 16,
            retry_config: "config/retry_config.yaml".into(),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProvider {
    url: Option<String>,
    api_key: Option<String>,
    timeout: DurationText,
    max_send_attempts: u32,
    mock: RawMock,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider { url: None, api_key: None, timeout: "10s".into(), max_send_attempts: 3, mock: RawMock::default() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMock {
    delay: String,
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

/// Applies overrides to the file's tree; returns which keys came from which variable.
fn apply_env(tree: &mut Value, env: &BTreeMap<String, String>, file: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origin = BTreeMap::new();
    for (name, mapping) in LEGACY_ENV {
        let Some(raw) = env.get(*name) else { continue };
        let bad = |problem: String| ConfigError::Key { file: file.to_string(), key: format!("{name} (environment)"), problem };
        let (key, value) = match mapping {
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
        origin.insert(key.to_string(), name.to_string());
    }
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("CALLMGR_") else { continue };
        if ENV_NOT_KEYS.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        set_path(tree, &key, scalar(raw));
        origin.insert(key, name.clone());
    }
    Ok(origin)
}

// ---------------------------------------------------------------------------------------------

/// Reads `path`, applies the environment, validates. `env` is passed in so tests control it.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { file: file.clone(), error })?;
    from_str(&text, path, env)
}

/// The process environment as a map, for `load`.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

pub fn from_str(text: &str, source: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
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
    validate(raw, source, retry_max_attempts_override, &key_error)
}

fn validate(
    raw: RawConfig,
    source: &Path,
    retry_max_attempts_override: Option<u32>,
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
    let tokens: Vec<String> = raw.tokens.iter().map(|t| t.trim().to_string()).collect();
    if tokens.is_empty() {
        return Err(key_error(
            "tokens",
            "no API token is configured, and the service refuses to run open: add one under `tokens:` in this file or set VALID_TOKENS".into(),
        ));
    }
    if let Some(short) = tokens.iter().find(|t| t.len() < 8) {
        return Err(key_error("tokens", format!("token `{}` is shorter than 8 characters", mask_secret(short))));
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
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(key_error("public_url", format!("`{url}` must start with http:// or https://")));
    }
    let target = match raw.provider.url.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(key_error(
                "provider.url",
                format!(
                    "no provider is configured: set `provider.url` (or EXTERNAL_SERVICE_URL) to your provider's endpoint, or to `{BUILTIN_MOCK}` for a demo that places no real calls"
                ),
            ));
        }
        Some(BUILTIN_MOCK) => ProviderTarget::BuiltinMock,
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => ProviderTarget::Url(url.to_string()),
        Some(other) => return Err(key_error("provider.url", format!("`{other}` must be an http(s) URL or `{BUILTIN_MOCK}`"))),
    };
    let provider_timeout = duration("provider.timeout", &raw.provider.timeout)?;
    if raw.provider.max_send_attempts == 0 {
        return Err(key_error("provider.max_send_attempts", "must be at least 1".into()));
    }
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
        Some(dir) if dir.is_relative() => Some(source.parent().unwrap_or(Path::new("")).join(dir)),
        other => other,
    };
    if archive_dir.is_some() && final_calls.is_none() {
        return Err(key_error("retention.archive_dir", "is set but retention.final_calls is not: nothing would ever be archived".into()));
    }
    let retention = RetentionConfig { final_calls, archive_dir, check_interval };
    let log_format = match raw.log.format.as_str() {
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
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        return Err(key_error("log.level", format!("`{}` is not a level (error, warn, info, debug, trace) or filter", raw.log.level)));
    }
    Ok(Config {
        source: source.to_path_buf(),
        listen,
        data_dir: raw.data_dir,
        tokens,
        max_concurrent_calls: raw.max_concurrent_calls,
        max_calls_per_second: raw.max_calls_per_second,
        duplicate_window,
        callback_timeout,
        public_url,
        provider: ProviderConfig {
            target,
            api_key: raw.provider.api_key.filter(|k| !k.trim().is_empty()),
            timeout: provider_timeout,
            max_send_attempts: raw.provider.max_send_attempts,
            mock_delay: raw.provider.mock.delay,
            mock_mix: raw.provider.mock.mix,
            mock_seed: raw.provider.mock.seed,
        },
        workers,
        retry_config: raw.retry_config,
        retry_max_attempts_override,
        storage: StorageConfig {
            quick_repair: raw.storage.quick_repair,
            cache_size_bytes: positive("storage.cache_size_mb", raw.storage.cache_size_mb)? * 1024 * 1024,
        },
        limits,
        retention,
        log_level: raw.log.level,
        log_format,
        default_region,
        phone_validation,
        timezone_max_candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "tokens: [a-long-token]\nprovider: {url: builtin-mock}\n";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        from_str(text, Path::new("test.yaml"), &env(vars)).map_err(|e| e.to_string())
    }

    #[test]
    fn shipped_config_is_valid() {
        let config = load(Path::new("config/callmgr.yaml"), &BTreeMap::new()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8000");
        assert!(config.uses_dev_token());
        assert_eq!(config.provider.target, ProviderTarget::BuiltinMock);
    }

    #[test]
    fn packaged_config_refuses_to_start_until_token_and_provider_are_set() {
        let err = load(Path::new("packaging/callmgr.yaml"), &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("packaging/callmgr.yaml") && err.contains("`tokens`"), "{err}");
        let vars = env(&[("VALID_TOKENS", "production-token-1")]);
        let err = load(Path::new("packaging/callmgr.yaml"), &vars).unwrap_err().to_string();
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
        assert_eq!(config.tokens, vec!["token-one-1", "token-two-2", "token-three"]);
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
        let config = from_str(&text, Path::new("/etc/callmgr/callmgr.yaml"), &BTreeMap::new()).unwrap();
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
}
