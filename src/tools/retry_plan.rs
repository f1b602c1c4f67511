//! `callmgr retry-plan`: explains when a call would be retried, with the same `RetryRules` code
//! the service runs. Rules come from the config files; the campaign's timezone and attempt budget
//! and the number's own timezone come from the running service's API when it answers.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::core::model::Outcome;
use crate::core::retry::{RetryQuery, RetryRules};

pub struct RetryPlanArgs {
    pub campaign_id: u64,
    pub at: Timestamp,
    pub outcome: Outcome,
    pub attempt: u32,
    pub phone_number: Option<String>,
    /// Overrides the timezone found for the callee.
    pub timezone: Option<String>,
    pub url: String,
    pub token: String,
}

/// What the service knows of the campaign and the number, if it answered.
struct Facts {
    campaign_timezone: Option<String>,
    max_attempts: Option<u32>,
    number_timezone: Option<String>,
    note: String,
}

fn fetch(agent: &ureq::Agent, url: &str, token: &str) -> Result<Value, String> {
    let mut response = agent.get(url).header("X-Auth-Token", token).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    match status {
        200 => serde_json::from_str(&text).map_err(|e| e.to_string()),
        404 => Err("not found".into()),
        other => Err(format!("HTTP {other}")),
    }
}

fn facts(args: &RetryPlanArgs) -> Facts {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).http_status_as_error(false).build().into();
    let base = args.url.trim_end_matches('/');
    let campaign = match fetch(&agent, &format!("{base}/api/v1/campaigns/{}/", args.campaign_id), &args.token) {
        Ok(c) => c,
        Err(error) => {
            return Facts {
                campaign_timezone: None,
                max_attempts: None,
                number_timezone: None,
                note: format!("campaign {} not read from {base} ({error}): the rules file's timezone and default attempts apply", args.campaign_id),
            };
        }
    };
    let number_timezone = args.phone_number.as_ref().and_then(|phone| {
        let encoded = phone.replace('+', "%2B");
        let page = fetch(&agent, &format!("{base}/api/v1/campaigns/{}/phone-numbers/?phone_number={encoded}", args.campaign_id), &args.token).ok()?;
        page["results"][0]["timezone"].as_str().map(str::to_string)
    });
    Facts {
        campaign_timezone: campaign["timezone"].as_str().map(str::to_string),
        max_attempts: campaign["max_attempts"].as_u64().map(|n| n as u32),
        number_timezone,
        note: format!("campaign {} read from {base}", args.campaign_id),
    }
}

/// Prints the plan; returns the text so tests can check it.
pub fn run(args: &RetryPlanArgs, rules: &RetryRules) -> Result<String, String> {
    let facts = facts(args);
    let zone_name = args.timezone.clone().or(facts.number_timezone.clone()).or(facts.campaign_timezone.clone());
    let timezone = match &zone_name {
        Some(name) => Some(TimeZone::get(name).map_err(|_| format!("unknown timezone `{name}`"))?),
        None => None,
    };
    let max_attempts = facts.max_attempts.unwrap_or_else(|| rules.default_max_attempts());
    let query =
        RetryQuery { outcome: args.outcome, at: args.at, attempt: args.attempt, max_attempts, campaign_id: args.campaign_id, zones: timezone.as_slice() };
    let decision = rules.next_retry(&query);
    let zone_text = match (&args.timezone, &facts.number_timezone, &facts.campaign_timezone) {
        (Some(tz), _, _) => format!("{tz} (--timezone)"),
        (None, Some(tz), _) => format!("{tz} (the number's own)"),
        (None, None, Some(tz)) => format!("{tz} (the campaign's)"),
        _ => "the rules file's".to_string(),
    };
    Ok(format!(
        "{}\noutcome {} of attempt {} at {}, callee timezone {}, attempt budget {}\n{}\n",
        facts.note,
        args.outcome.as_str(),
        args.attempt,
        args.at,
        zone_text,
        max_attempts,
        decision
    ))
}
