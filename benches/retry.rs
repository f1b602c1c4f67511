//! Cost of one `RetryRules::next_retry` call, the question the state machine asks
//! on every failed attempt. Target: well under 5 µs per call.
//!
//! `reference_week` uses the reference system's windows (weekdays 09:00-17:00 hourly, weekends
//! 10:00-12:00 hourly and 19:00-20:00 every 30 minutes) with outcome times spread over a week
//! that contains New York's spring-forward, in four timezones. `no_window` is the worst case:
//! every slot is capped below the next attempt, so the whole 14-day horizon is searched.
//! `calling_hours` adds calling hours (weekdays 08:00-21:00, Saturday 09:00-17:00) to the same
//! queries; `ambiguous_callee` asks for the Boise and Los Angeles pair of a `+1208` number, so the
//! retry must be inside the windows and calling hours in both.

use std::hint::black_box;

use callmgr::core::model::Outcome;
use callmgr::core::retry::{RetryQuery, RetryRules};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

const REFERENCE_RULES: &str = r#"
timezone: "America/New_York"
defaults: {max_attempts: 3, retry_interval_minutes: 60}
global_rules:
  - name: "Weekday business hours"
    days: [monday, tuesday, wednesday, thursday, friday]
    time_slots:
      - {start_time: "09:00", end_time: "17:00", retry_interval_minutes: 60}
  - name: "Weekend"
    days: [saturday, sunday]
    time_slots:
      - {start_time: "10:00", end_time: "12:00", retry_interval_minutes: 60}
      - {start_time: "19:00", end_time: "20:00", retry_interval_minutes: 30}
"#;

const QUERY_COUNT: usize = 1024;

fn next_retry(c: &mut Criterion) {
    let timezones: Vec<TimeZone> =
        ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata"].into_iter().map(|name| TimeZone::get(name).expect("a known timezone")).collect();
    // Monday 2026-03-02 00:00Z; New York springs forward on Sunday 2026-03-08.
    let week_start: Timestamp = "2026-03-02T00:00:00Z".parse().expect("a valid instant");
    let week_seconds = 7 * 86_400;
    let queries = |attempt: u32| -> Vec<RetryQuery<'_>> {
        (0..QUERY_COUNT)
            .map(|i| {
                // Evenly over the week, with a few odd seconds so that minutes vary too.
                let offset = (i as i64 * week_seconds) / QUERY_COUNT as i64 + (i as i64 * 37) % 60;
                RetryQuery {
                    outcome: Outcome::Rnr,
                    at: week_start + SignedDuration::from_secs(offset),
                    attempt,
                    max_attempts: 3,
                    campaign_id: 1,
                    zones: std::slice::from_ref(&timezones[i % timezones.len()]),
                }
            })
            .collect()
    };

    let reference = RetryRules::from_yaml_str(REFERENCE_RULES, "bench").expect("valid rules");
    let reference_queries = queries(1);
    c.bench_function("next_retry/reference_week", |b| {
        let mut index = 0;
        b.iter(|| {
            index = (index + 1) % QUERY_COUNT;
            black_box(reference.next_retry(black_box(&reference_queries[index])))
        })
    });

    // Every slot serves the first attempt only, so there is never a window for a retry.
    let capped_text = REFERENCE_RULES.replace("{start_time:", "{max_attempts: 1, start_time:");
    let capped = RetryRules::from_yaml_str(&capped_text, "bench").expect("valid rules");
    let capped_queries = queries(1);
    assert_eq!(capped.next_retry(&capped_queries[0]).to_string(), "no retry: No retry window available");
    c.bench_function("next_retry/no_window", |b| {
        let mut index = 0;
        b.iter(|| {
            index = (index + 1) % QUERY_COUNT;
            black_box(capped.next_retry(black_box(&capped_queries[index])))
        })
    });

    let with_hours_text = format!(
        "{REFERENCE_RULES}calling_hours:\n  - {{days: [monday, tuesday, wednesday, thursday, friday], start_time: \"08:00\", end_time: \"21:00\"}}\n  - {{days: [saturday], start_time: \"09:00\", end_time: \"17:00\"}}\n"
    );
    let with_hours = RetryRules::from_yaml_str(&with_hours_text, "bench").expect("valid rules");
    c.bench_function("next_retry/calling_hours", |b| {
        let mut index = 0;
        b.iter(|| {
            index = (index + 1) % QUERY_COUNT;
            black_box(with_hours.next_retry(black_box(&reference_queries[index])))
        })
    });

    let boise_and_los_angeles: Vec<TimeZone> =
        ["America/Boise", "America/Los_Angeles"].into_iter().map(|name| TimeZone::get(name).expect("a known timezone")).collect();
    let ambiguous_queries: Vec<RetryQuery<'_>> = reference_queries.iter().map(|query| RetryQuery { zones: &boise_and_los_angeles, ..query.clone() }).collect();
    c.bench_function("next_retry/ambiguous_callee", |b| {
        let mut index = 0;
        b.iter(|| {
            index = (index + 1) % QUERY_COUNT;
            black_box(with_hours.next_retry(black_box(&ambiguous_queries[index])))
        })
    });
}

criterion_group!(benches, next_retry);
criterion_main!(benches);
