//! TEMPORARY stand-in with the agreed API; replaced by the real retry engine.
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::model::Outcome;

pub struct RetryRules {
    tz: TimeZone,
    max_attempts: u32,
    interval: SignedDuration,
    ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryConfigError(String);

pub struct RetryQuery<'a> {
    pub outcome: Outcome,
    pub at: Timestamp,
    pub attempt: u32,
    pub max_attempts: u32,
    pub campaign_id: u64,
    pub timezone: Option<&'a TimeZone>,
}

#[derive(Debug)]
pub struct RetryReason(String);
impl std::fmt::Display for RetryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug)]
pub enum RetryDecision {
    Retry { at: Timestamp, reason: RetryReason },
    GiveUp { reason: String },
}

impl RetryRules {
    pub fn from_yaml_str(_text: &str, _source_name: &str) -> Result<RetryRules, RetryConfigError> {
        Ok(Self::permissive())
    }
    pub fn load(path: &std::path::Path) -> Result<RetryRules, RetryConfigError> {
        std::fs::read_to_string(path).map_err(|e| RetryConfigError(format!("{}: {e}", path.display())))?;
        Ok(Self::permissive())
    }
    pub fn permissive() -> RetryRules {
        RetryRules { tz: TimeZone::UTC, max_attempts: 3, interval: SignedDuration::from_mins(60), ignored: vec![] }
    }
    pub fn with_default_max_attempts(mut self, n: u32) -> RetryRules {
        self.max_attempts = n;
        self
    }
    pub fn default_max_attempts(&self) -> u32 {
        self.max_attempts
    }
    pub fn default_timezone(&self) -> &TimeZone {
        &self.tz
    }
    pub fn ignored_keys(&self) -> &[String] {
        &self.ignored
    }
    pub fn describe(&self) -> String {
        "permissive".into()
    }
    pub fn next_retry(&self, q: &RetryQuery<'_>) -> RetryDecision {
        if q.outcome == Outcome::Picked {
            return RetryDecision::GiveUp { reason: "Outcome PICKED is final".into() };
        }
        if q.attempt >= q.max_attempts {
            return RetryDecision::GiveUp { reason: format!("Max retry attempts reached ({})", q.max_attempts) };
        }
        RetryDecision::Retry { at: q.at + self.interval, reason: RetryReason("defaults".into()) }
    }
}
