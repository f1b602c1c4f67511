//! `callmgr retry-plan`: explains when a call would be retried, with the same `RetryRules` code
//! the service runs. Rules come from the config files; the campaign's timezone and attempt budget
//! and the number's own timezone come from the running service's API when it answers.
//!
//! Two steps, kept apart: [`facts`] asks the service (through [`ApiClient`]) and never decides
//! anything; [`plan`] is pure and decides from the facts, the arguments and the rules. Whatever
//! else the explanation needs later (calling hours, contact limits) joins `plan` the same way:
//! resolved into `Facts` first, then explained from them.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::core::model::Outcome;
use crate::core::retry::{RetryQuery, RetryRules};
use crate::tools::client::{ApiClient, ClientOptions};

/// The service answers within this, or the rules file's defaults apply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RetryPlanArgs {
    pub campaign_id: u64,
    pub at: Timestamp,
    pub outcome: Outcome,
    pub attempt: u32,
    /// The callee's number in E.164, to look its own timezone up.
    pub phone_number: Option<String>,
    /// Overrides the timezone found for the callee.
    pub timezone: Option<String>,
    pub url: String,
    pub token: String,
}

/// What the service knows of the campaign and the number, if it answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub campaign_timezone: Option<String>,
    pub max_attempts: Option<u32>,
    /// The number's timezone as the service resolves it (`A|B` when ambiguous), and how
    /// (`given`, `inferred`, `ambiguous`, `campaign`, `default`).
    pub number_timezone: Option<(String, String)>,
    /// Where the facts came from, or why they are missing.
    pub note: String,
}

/// Asks the service for the campaign (and the number, when given). Never fails: a service that
/// does not answer leaves the facts empty, and the note says why.
pub fn facts(client: &ApiClient, campaign_id: u64, phone_number: Option<&str>) -> Facts {
    let base = client.base_url();
    let campaign = match client.campaign(campaign_id) {
        Ok(campaign) => campaign,
        Err(error) => {
            return Facts {
                note: format!("campaign {campaign_id} not read from {base} ({error}): the rules file's timezone and default attempts apply"),
                ..Facts::default()
            };
        }
    };
    let number_timezone = phone_number.and_then(|phone| {
        let page = client.campaign_numbers(campaign_id, Some(phone)).ok()?;
        page.results.into_iter().next().map(|n| (n.timezone, n.timezone_source))
    });
    Facts {
        campaign_timezone: campaign.timezone,
        max_attempts: campaign.max_attempts,
        number_timezone,
        note: format!("campaign {campaign_id} read from {base}"),
    }
}

/// The explanation, from resolved facts: pure (no I/O, no clock).
pub fn plan(args: &RetryPlanArgs, facts: &Facts, rules: &RetryRules) -> Result<String, String> {
    // An ambiguous number lists its candidate zones as `A|B`; the plan is shown for the first.
    let number_zone = facts.number_timezone.as_ref().map(|(zone, source)| match zone.split_once('|') {
        Some((first, _)) => (first.to_string(), format!("{zone} ({source}: the number's candidates; shown for {first})")),
        None => (zone.clone(), format!("{zone} (the number's, {source})")),
    });
    let (zone_name, zone_text) = match (&args.timezone, &number_zone, &facts.campaign_timezone) {
        (Some(tz), _, _) => (Some(tz.clone()), format!("{tz} (--timezone)")),
        (None, Some((zone, text)), _) => (Some(zone.clone()), text.clone()),
        (None, None, Some(tz)) => (Some(tz.clone()), format!("{tz} (the campaign's)")),
        _ => (None, "the rules file's".to_string()),
    };
    let timezone = match &zone_name {
        Some(name) => Some(TimeZone::get(name).map_err(|_| format!("unknown timezone `{name}`"))?),
        None => None,
    };
    let max_attempts = facts.max_attempts.unwrap_or_else(|| rules.default_max_attempts());
    let query =
        RetryQuery { outcome: args.outcome, at: args.at, attempt: args.attempt, max_attempts, campaign_id: args.campaign_id, zones: timezone.as_slice() };
    let decision = rules.next_retry(&query);
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

/// Prints nothing; returns the plan's text.
pub fn run(args: &RetryPlanArgs, rules: &RetryRules) -> Result<String, String> {
    let options = ClientOptions { request_timeout: REQUEST_TIMEOUT, ..ClientOptions::default() };
    let client = ApiClient::with_options(&args.url, &args.token, &options);
    let facts = facts(&client, args.campaign_id, args.phone_number.as_deref());
    plan(args, &facts, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(timezone: Option<&str>) -> RetryPlanArgs {
        RetryPlanArgs {
            campaign_id: 1,
            at: "2026-11-21T15:07:23Z".parse().unwrap(),
            outcome: Outcome::Rnr,
            attempt: 1,
            phone_number: None,
            timezone: timezone.map(str::to_string),
            url: String::new(),
            token: String::new(),
        }
    }

    fn rules() -> RetryRules {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retry.yaml");
        std::fs::write(&path, "defaults: {max_attempts: 4, retry_interval_minutes: 60}\n").unwrap();
        RetryRules::load(&path).unwrap()
    }

    #[test]
    fn the_timezone_comes_from_the_flag_then_the_number_then_the_campaign() {
        let rules = rules();
        let facts = Facts {
            campaign_timezone: Some("America/New_York".into()),
            max_attempts: Some(2),
            number_timezone: Some(("Asia/Kolkata".into(), "given".into())),
            note: "campaign 1 read from x".into(),
        };
        let text = plan(&args(Some("Europe/Paris")), &facts, &rules).unwrap();
        assert!(text.contains("callee timezone Europe/Paris (--timezone), attempt budget 2"), "{text}");
        let text = plan(&args(None), &facts, &rules).unwrap();
        assert!(text.contains("Asia/Kolkata (the number's, given)"), "{text}");
        let ambiguous = Facts { number_timezone: Some(("America/Boise|America/Los_Angeles".into(), "ambiguous".into())), ..facts.clone() };
        let text = plan(&args(None), &ambiguous, &rules).unwrap();
        assert!(text.contains("shown for America/Boise"), "{text}");
        let campaign_only = Facts { number_timezone: None, ..facts };
        assert!(plan(&args(None), &campaign_only, &rules).unwrap().contains("America/New_York (the campaign's)"));
        let nothing = plan(&args(None), &Facts::default(), &rules).unwrap();
        assert!(nothing.contains("the rules file's, attempt budget 4"), "{nothing}");
        assert!(plan(&args(Some("Mars/Base")), &Facts::default(), &rules).unwrap_err().contains("unknown timezone"));
    }

    #[test]
    fn an_unreachable_service_leaves_the_facts_empty_and_says_so() {
        let address = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let facts = facts(&ApiClient::new(&format!("http://{address}"), "t"), 7, None);
        assert_eq!((facts.campaign_timezone, facts.max_attempts), (None, None));
        assert!(facts.note.starts_with("campaign 7 not read from") && facts.note.contains("unreachable"), "{}", facts.note);
    }
}
