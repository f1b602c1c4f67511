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

use crate::core::callee_zone::{self, CalleeZone, TimezoneSource};
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
    /// `timezone_inference.max_candidates` of the config.
    pub max_candidates: usize,
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

/// The callee's zone(s) and why, the way the service resolves them: `--timezone`, else the
/// number's own (as the service reports it), else inferred from the number, else the campaign's,
/// else the rules file's.
fn callee(args: &RetryPlanArgs, facts: &Facts, rules: &RetryRules) -> Result<(CalleeZone, String), String> {
    let given = match (&args.timezone, &facts.number_timezone) {
        (Some(tz), _) => Some((tz.clone(), "--timezone")),
        (None, Some((zone, source))) if source == "given" => Some((zone.clone(), "the number's own")),
        _ => None,
    };
    if let Some((name, why)) = &given {
        TimeZone::get(name).map_err(|_| format!("unknown timezone `{name}`"))?;
        let zone = callee_zone::resolve(Some(name), "", None, rules.default_timezone(), args.max_candidates);
        return Ok((zone, format!("{name} ({why})")));
    }
    let phone = args.phone_number.as_deref().unwrap_or("");
    let zone = callee_zone::resolve(None, phone, facts.campaign_timezone.as_deref(), rules.default_timezone(), args.max_candidates);
    let why = match zone.source {
        TimezoneSource::Inferred => "inferred from the number's leading digits".to_string(),
        TimezoneSource::Ambiguous => {
            format!("inferred from the number's leading digits; ambiguous: an instant counts only if it is inside in all {} zones", zone.zones.len())
        }
        TimezoneSource::Campaign => "the campaign's".to_string(),
        _ if !phone.is_empty() && callee_zone::infer(phone).is_some() => {
            format!("the rules file's: the number's prefix lists more than timezone_inference.max_candidates ({}) zones", args.max_candidates)
        }
        _ => "the rules file's".to_string(),
    };
    let text = format!("{} ({why})", zone.name());
    Ok((zone, text))
}

/// What applies to a number at `now`: its zone(s) and why, the calling hours, and whether a
/// call could be dialled now or when it could. Pure; `check-config --phone` prints it.
pub fn describe_number(phone: &str, campaign_id: u64, rules: &RetryRules, max_candidates: usize, now: Timestamp) -> String {
    let args = RetryPlanArgs {
        campaign_id,
        at: now,
        outcome: Outcome::Rnr,
        attempt: 1,
        phone_number: Some(phone.to_string()),
        timezone: None,
        max_candidates,
        url: String::new(),
        token: String::new(),
    };
    let (zone, zone_text) = match callee(&args, &Facts::default(), rules) {
        Ok(found) => found,
        Err(error) => {
            return format!(
                "number {phone}: {error}
"
            );
        }
    };
    let hours = match rules.calling_hours_for(campaign_id) {
        Some(hours) => hours.to_string(),
        None => "none configured (any time)".to_string(),
    };
    let dial = match rules.calling_hours_open_at(campaign_id, &zone.zones, now) {
        Some(at) if at == now => "could be dialled now".to_string(),
        Some(at) => format!("held until {at} ({})", at.to_zoned(zone.zones[0].clone()).strftime("%a %H:%M %Z")),
        None => "never dialled: no calling hours within 14 days in every candidate zone".to_string(),
    };
    format!(
        "number {phone} (campaign {campaign_id}): callee timezone {zone_text}
  calling hours: {hours}
  at {now}: {dial}
"
    )
}

/// The explanation, from resolved facts: pure (no I/O, no clock).
pub fn plan(args: &RetryPlanArgs, facts: &Facts, rules: &RetryRules) -> Result<String, String> {
    let (zone, zone_text) = callee(args, facts, rules)?;
    let max_attempts = facts.max_attempts.unwrap_or_else(|| rules.default_max_attempts());
    let query = RetryQuery { outcome: args.outcome, at: args.at, attempt: args.attempt, max_attempts, campaign_id: args.campaign_id, zones: &zone.zones };
    let decision = rules.next_retry(&query);
    let hours = match rules.calling_hours_for(args.campaign_id) {
        Some(hours) => hours.to_string(),
        None => "none configured (any time)".to_string(),
    };
    Ok(format!(
        "{}
outcome {} of attempt {} at {}, callee timezone {}, attempt budget {}
calling hours: {hours}
{}
",
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
            max_candidates: 3,
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
    fn the_timezone_comes_from_the_flag_then_the_number_then_inference_then_the_campaign() {
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
        assert!(text.contains("Asia/Kolkata (the number's own)"), "{text}");
        let mut boise = args(None);
        boise.phone_number = Some("+12085550100".into());
        let text = plan(&boise, &Facts { number_timezone: None, ..facts.clone() }, &rules).unwrap();
        assert!(text.contains("America/Boise|America/Los_Angeles (inferred from the number's leading digits; ambiguous"), "{text}");
        let campaign_only = Facts { number_timezone: None, ..facts };
        assert!(plan(&args(None), &campaign_only, &rules).unwrap().contains("America/New_York (the campaign's)"));
        let nothing = plan(&args(None), &Facts::default(), &rules).unwrap();
        assert!(nothing.contains("(the rules file's), attempt budget 4"), "{nothing}");
        assert!(plan(&args(Some("Mars/Base")), &Facts::default(), &rules).unwrap_err().contains("unknown timezone"));
    }

    #[test]
    fn describe_number_says_which_zone_and_when_it_could_be_dialled() {
        let rules = RetryRules::from_yaml_str("timezone: UTC\ncalling_hours: {days: [monday, tuesday, wednesday, thursday, friday, saturday, sunday], start_time: \"08:00\", end_time: \"21:00\"}\n", "t").unwrap();
        // 2026-06-01T03:00:00Z is 23:00 the day before in New York.
        let at: Timestamp = "2026-06-01T03:00:00Z".parse().unwrap();
        let text = describe_number("+12125550100", 1, &rules, 3, at);
        assert!(text.contains("America/New_York (inferred from the number's leading digits)"), "{text}");
        assert!(text.contains("held until 2026-06-01T12:00:00Z"), "{text}");
        let text = describe_number("+12125550100", 1, &rules, 3, "2026-06-01T15:00:00Z".parse().unwrap());
        assert!(text.contains("could be dialled now"), "{text}");
    }

    #[test]
    fn an_unreachable_service_leaves_the_facts_empty_and_says_so() {
        let address = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let facts = facts(&ApiClient::new(&format!("http://{address}"), "t"), 7, None);
        assert_eq!((facts.campaign_timezone, facts.max_attempts), (None, None));
        assert!(facts.note.starts_with("campaign 7 not read from") && facts.note.contains("unreachable"), "{}", facts.note);
    }
}
