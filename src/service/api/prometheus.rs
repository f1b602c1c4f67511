//! `GET /metrics`: the Prometheus text exposition (format 0.0.4), and the small encoder that
//! writes it. Every value is read at scrape time from what the service already keeps (the
//! store's counts, the live stats, the gauges, `/proc`); nothing here is on the hot path.
//!
//! Written by hand rather than with `prometheus-client`: that crate's registry would hold a
//! second copy of figures we already keep, its collectors write only OpenMetrics text (counter
//! families named without `_total`, `info` and `# EOF`), which `promtool check metrics` and
//! scrapers asking for format 0.0.4 do not read as we mean, and the encoder below is all the
//! help we need from it: escaping, family headers, one family per name.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::extract::read;
use super::ops::{degraded_reasons, pace_lowered, retention_metrics, snapshot};
use crate::core::model::{Campaign, Status};
use crate::service::stats::{LATENCY_BUCKETS_MS, Rate};
use crate::service::store::tables::SCHEMA_VERSION;

/// Campaigns given per-campaign series, at most: the newest ones that are not stopped. Stopped
/// campaigns dial nothing more, and a cap keeps the label set bounded whatever the store holds.
pub const CAMPAIGN_SERIES_MAX: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value: integers as written, floats in Prometheus' spelling of infinities.
#[derive(Clone, Copy, Debug)]
pub enum Number {
    Integer(u64),
    Float(f64),
}

impl From<u64> for Number {
    fn from(n: u64) -> Number {
        Number::Integer(n)
    }
}

impl From<f64> for Number {
    fn from(x: f64) -> Number {
        Number::Float(x)
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Number::Integer(n) => write!(f, "{n}"),
            Number::Float(x) if x.is_nan() => f.write_str("NaN"),
            Number::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Number::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// The exposition being written: families in the order they are opened, each name once.
#[derive(Default)]
pub struct Exposition {
    text: String,
    names: Vec<&'static str>,
}

/// One family's samples, written under its `# HELP` and `# TYPE` lines.
pub struct Family<'a> {
    text: &'a mut String,
    name: &'static str,
}

impl Exposition {
    /// Opens a family. A name opened twice is a programmer error: Prometheus rejects the text.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        assert!(!self.names.contains(&name), "metric family {name} written twice");
        self.names.push(name);
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
        Family { text: &mut self.text, name }
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: impl Into<Number>) {
        self.family(name, kind, help).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

impl Family<'_> {
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Number>) -> &mut Self {
        self.suffixed("", labels, value)
    }

    /// A sample named with a suffix of the family's name (`_bucket`, `_sum`, `_count`).
    pub fn suffixed(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl Into<Number>) -> &mut Self {
        let _ = write!(self.text, "{}{suffix}", self.name);
        for (i, (label, value)) in labels.iter().enumerate() {
            let separator = if i == 0 { "{" } else { "," };
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(self.text, "{separator}{label}=\"{escaped}\"");
        }
        if !labels.is_empty() {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", value.into());
        self
    }
}

/// What the store says about one campaign given series.
struct CampaignFigures {
    campaign: Campaign,
    /// Stored calls per status.
    by_status: Vec<(Status, u64)>,
}

pub async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snap = snapshot(&state).await?;
    let campaigns = read(&state, |r| {
        let campaigns = r.newest_open_campaigns(CAMPAIGN_SERIES_MAX)?;
        campaigns.into_iter().map(|campaign| Ok(CampaignFigures { by_status: r.status_counts(campaign.id)?, campaign })).collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let g = &state.gauges;
    let stats = &state.stats;
    let health = &state.provider_health;
    let now = state.clock.now_ms();
    let mut out = Exposition::default();

    out.single("callmgr_calls_in_flight", Kind::Gauge, "Calls holding a slot (PROCESSING or being dispatched).", g.in_flight.load(Ordering::Relaxed));
    out.single("callmgr_max_concurrent_calls", Kind::Gauge, "The configured limit on calls in flight.", g.max_concurrent_calls.load(Ordering::Relaxed));
    out.single("callmgr_queue_depth", Kind::Gauge, "INITIATED calls waiting for a slot.", g.queue_depth.load(Ordering::Relaxed));
    out.single("callmgr_calls_retrying", Kind::Gauge, "Calls waiting for their next retry.", g.retrying.load(Ordering::Relaxed));
    out.family("callmgr_calls_held", Kind::Gauge, "Waiting calls held from dialling, by reason.")
        .sample(&[("reason", "paused")], g.held_paused.load(Ordering::Relaxed))
        .sample(&[("reason", "outside_calling_hours")], snap.held_hours)
        .sample(&[("reason", "contact_cap")], snap.held_cap);
    out.single("callmgr_awaiting_outcome_calls", Kind::Gauge, "Attempts in flight waiting for their outcome.", g.awaiting_outcome.load(Ordering::Relaxed));
    out.single(
        "callmgr_awaiting_outcome_oldest_seconds",
        Kind::Gauge,
        "Seconds the oldest attempt in flight has waited for its outcome.",
        g.awaiting_oldest_seconds(now),
    );
    out.single(
        "callmgr_awaiting_outcome_recovered_calls",
        Kind::Gauge,
        "Calls in flight since before the last start, still waiting for their outcome.",
        g.recovered_in_flight.load(Ordering::Relaxed),
    );
    let mut by_status = out.family("callmgr_calls", Kind::Gauge, "Stored calls by status.");
    for (status, n) in &snap.by_status {
        by_status.sample(&[("status", status.as_str())], *n);
    }
    let mut purged = out.family("callmgr_calls_purged_total", Kind::Counter, "Final calls deleted by retention over the store's life, by status.");
    for (status, n) in &snap.purged {
        purged.sample(&[("status", status.as_str())], *n);
    }

    out.single("callmgr_calls_accepted_total", Kind::Counter, "Calls accepted since start.", stats.total(Rate::Accepted));
    out.single("callmgr_dials_total", Kind::Counter, "Dial attempts committed since start.", stats.total(Rate::Dials));
    let mut outcomes = out.family("callmgr_outcomes_total", Kind::Counter, "Attempt outcomes applied since start, by outcome.");
    for (outcome, n) in stats.outcome_totals() {
        outcomes.sample(&[("outcome", outcome.as_str())], n);
    }
    out.single("callmgr_calls_completed_total", Kind::Counter, "Calls that completed (PICKED or FAILED) since start.", stats.total(Rate::Finals));
    out.single("callmgr_calls_cancelled_total", Kind::Counter, "Calls cancelled (campaign stopped, do-not-call) since start.", stats.total(Rate::Cancelled));

    write_campaigns(&mut out, &state, &campaigns);

    let breaker = health.breaker();
    let mut breaker_state = out.family("callmgr_provider_breaker", Kind::Gauge, "The provider's circuit breaker state (1 for the current one).");
    for s in ["closed", "open", "half_open"] {
        breaker_state.sample(&[("state", s)], u64::from(breaker.state == s));
    }
    out.single(
        "callmgr_provider_breaker_consecutive_failures",
        Kind::Gauge,
        "Transport failures in a row (the breaker opens at its threshold).",
        u64::from(breaker.consecutive_failures),
    );
    out.single(
        "callmgr_provider_dial_pace_per_second",
        Kind::Gauge,
        "The dial pace in force (lowered while the provider throttles).",
        health.pace_per_second(),
    );
    let throttled = health.paused_until_ms() > now || pace_lowered(&state);
    out.single(
        "callmgr_provider_throttled",
        Kind::Gauge,
        "1 while the provider throttles us: its Retry-After holds new dials, or the pace is still below max_calls_per_second.",
        u64::from(throttled),
    );
    out.family("callmgr_provider_errors_total", Kind::Counter, "Failed dial requests since start.")
        .sample(&[("kind", "transport")], stats.provider_transport_errors.load(Ordering::Relaxed))
        .sample(&[("kind", "refused")], stats.provider_refusals.load(Ordering::Relaxed))
        .sample(&[("kind", "throttled")], health.throttled.load(Ordering::Relaxed))
        .sample(&[("kind", "ambiguous")], health.ambiguous.load(Ordering::Relaxed));
    out.single(
        "callmgr_provider_dials_not_sent_total",
        Kind::Counter,
        "Dials handed back to the queue unsent (breaker open, throttled beyond the budget) since start.",
        health.not_sent.load(Ordering::Relaxed),
    );
    let (cumulative, sum_ms, count) = stats.latency_histogram();
    let mut latency = out.family("callmgr_provider_request_duration_seconds", Kind::Histogram, "Dial request latency, per send.");
    for (le, n) in LATENCY_BUCKETS_MS.iter().zip(&cumulative) {
        latency.suffixed("_bucket", &[("le", &(*le as f64 / 1000.0).to_string())], *n);
    }
    latency.suffixed("_bucket", &[("le", "+Inf")], cumulative.last().copied().unwrap_or(0)).suffixed("_sum", &[], sum_ms as f64 / 1000.0).suffixed(
        "_count",
        &[],
        count,
    );

    out.single("callmgr_degraded", Kind::Gauge, "1 when system_status is degraded.", u64::from(!degraded_reasons(&state, now).is_empty()));
    out.single("callmgr_dead_letters", Kind::Gauge, "Dead letters stored.", snap.dead_letters);
    out.single("callmgr_writer_queue", Kind::Gauge, "Commands waiting for the writer.", state.writer.queued() as u64);
    out.single("callmgr_disk_free_bytes", Kind::Gauge, "Free space on the data disk.", state.disk.free_mb() * 1024 * 1024);
    out.single("callmgr_disk_low", Kind::Gauge, "1 while the data disk is below limits.disk_free_min_mb (new work refused).", u64::from(state.disk.is_low()));
    if let Some(retention) = retention_metrics(&state, &snap) {
        out.single("callmgr_retention_running", Kind::Gauge, "1 while retention is purging.", u64::from(retention.running));
        out.single("callmgr_retention_last_run_purged", Kind::Gauge, "Calls purged by the last retention run that purged any.", retention.last_run_purged);
        let last_run = state.retention.runs().last_run_at.map(|ms| ms as f64 / 1000.0).unwrap_or(0.0);
        out.single(
            "callmgr_retention_last_run_timestamp_seconds",
            Kind::Gauge,
            "When the last retention run that purged any calls ended (0: never).",
            last_run,
        );
        out.single("callmgr_retention_archive_files", Kind::Gauge, "Retention archive files written over the store's life.", retention.archive_files);
    }
    let schema = SCHEMA_VERSION.to_string();
    out.family("callmgr_build_info", Kind::Gauge, "Always 1; the labels name the running build and the store schema it writes.")
        .sample(&[("version", env!("CARGO_PKG_VERSION")), ("store_schema", &schema)], 1u64);
    write_process(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out.finish()).into_response())
}

/// The per-campaign families, for the campaigns `CAMPAIGN_SERIES_MAX` selects. Every selected
/// campaign has every series (zeros included), so a graph starts at 0 rather than at its first event.
fn write_campaigns(out: &mut Exposition, state: &AppState, campaigns: &[CampaignFigures]) {
    let ids: Vec<String> = campaigns.iter().map(|c| c.campaign.id.to_string()).collect();
    let counts: Vec<_> = campaigns.iter().map(|c| state.stats.campaign_counts(c.campaign.id)).collect();
    let mut info = out.family(
        "callmgr_campaign_info",
        Kind::Gauge,
        "Always 1, for each campaign given per-campaign series (the newest that are not stopped); labels name it.",
    );
    for (id, c) in ids.iter().zip(campaigns) {
        info.sample(&[("campaign_id", id), ("name", &c.campaign.name), ("status", c.campaign.status.as_str())], 1u64);
    }
    let mut dials = out.family("callmgr_campaign_dials_total", Kind::Counter, "Dial attempts committed since start, per campaign.");
    for (id, n) in ids.iter().zip(&counts) {
        dials.sample(&[("campaign_id", id)], n.dials);
    }
    let mut outcomes = out.family("callmgr_campaign_outcomes_total", Kind::Counter, "Attempt outcomes applied since start, per campaign and outcome.");
    for (id, n) in ids.iter().zip(&counts) {
        for (outcome, count) in crate::core::model::Outcome::ALL.iter().zip(n.outcomes) {
            outcomes.sample(&[("campaign_id", id), ("outcome", outcome.as_str())], count);
        }
    }
    let mut calls = out.family("callmgr_campaign_calls", Kind::Gauge, "Stored calls per campaign and status.");
    for (id, c) in ids.iter().zip(campaigns) {
        for (status, n) in &c.by_status {
            calls.sample(&[("campaign_id", id), ("status", status.as_str())], *n);
        }
    }
}

/// The standard `process_*` families, left out when `/proc` cannot be read.
fn write_process(out: &mut Exposition) {
    let Some(p) = crate::service::process::read() else {
        return;
    };
    out.single("process_cpu_seconds_total", Kind::Counter, "Total user and system CPU time spent in seconds.", p.cpu_seconds);
    out.single("process_resident_memory_bytes", Kind::Gauge, "Resident memory size in bytes.", p.resident_memory_bytes);
    out.single("process_virtual_memory_bytes", Kind::Gauge, "Virtual memory size in bytes.", p.virtual_memory_bytes);
    out.single("process_start_time_seconds", Kind::Gauge, "Start time of the process since unix epoch in seconds.", p.start_time_seconds);
    out.single("process_open_fds", Kind::Gauge, "Number of open file descriptors.", p.open_fds);
    out.single("process_max_fds", Kind::Gauge, "Maximum number of open file descriptors.", p.max_fds.map(|n| n as f64).unwrap_or(f64::INFINITY));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_headers_escaped_labels_and_prometheus_numbers() {
        let mut out = Exposition::default();
        out.single("a_total", Kind::Counter, "Help with a \\ and a\nline.", 3u64);
        out.family("b", Kind::Gauge, "B.").sample(&[("name", "say \"hi\"\\\n"), ("k", "v")], 0.25).sample(&[], f64::INFINITY);
        out.family("c_seconds", Kind::Histogram, "C.").suffixed("_bucket", &[("le", "+Inf")], 2u64).suffixed("_count", &[], 2u64);
        let expected = "# HELP a_total Help with a \\\\ and a\\nline.\n# TYPE a_total counter\na_total 3\n\
                        # HELP b B.\n# TYPE b gauge\nb{name=\"say \\\"hi\\\"\\\\\\n\",k=\"v\"} 0.25\nb +Inf\n\
                        # HELP c_seconds C.\n# TYPE c_seconds histogram\nc_seconds_bucket{le=\"+Inf\"} 2\nc_seconds_count 2\n";
        assert_eq!(out.finish(), expected);
    }

    #[test]
    fn numbers_are_spelled_as_prometheus_reads_them() {
        let spelled = |n: Number| n.to_string();
        assert_eq!(spelled(Number::Integer(u64::MAX)), "18446744073709551615");
        assert_eq!(spelled(Number::Float(0.001)), "0.001");
        assert_eq!(spelled(Number::Float(f64::NEG_INFINITY)), "-Inf");
        assert_eq!(spelled(Number::Float(f64::NAN)), "NaN");
    }
}
