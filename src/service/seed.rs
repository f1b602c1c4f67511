//! Synthetic stores for benchmarks (`callmgr bench seed`): calls are made by the state machine
//! (`new_call`, then `step` with a dispatch and an outcome) and written through the store's own
//! `put_call`, many per transaction, so a store of millions of calls takes minutes and has every
//! index a real one would. Never used by `serve`.

use std::path::Path;
use std::time::Instant;

use jiff::tz::TimeZone;

use crate::config::StorageConfig;
use crate::core::machine::{self, Context, Event, NumberFacts};
use crate::core::model::{CallId, Campaign, CampaignStatus, Millis, Outcome};
use crate::core::retry::RetryRules;
use crate::service::store::{Store, StoreError, WriteTables};

/// Calls written per transaction.
const SEED_CHUNK: u64 = 20_000;
const HOUR_MS: Millis = 3_600_000;
const DAY_MS: Millis = 24 * HOUR_MS;

/// What the seeded calls look like.
#[derive(Clone, Copy, Debug)]
pub enum SeedShape {
    /// Every call waits for a retry, due over the next week (nothing fires while booting).
    Retrying,
    /// Finished calls (70 % PICKED, 30 % FAILED) whose last change is spread evenly over the
    /// last `days` days, as a store that has run that long holds them.
    Finished { days: u32 },
}

#[derive(Debug)]
pub struct SeedReport {
    pub calls: u64,
    pub seconds: f64,
    pub file_bytes: u64,
}

/// Adds `calls` calls of `shape` to the store in `data_dir` (campaign 1, created if missing).
pub fn seed(data_dir: &Path, storage: &StorageConfig, calls: u64, shape: SeedShape, now: Millis) -> Result<SeedReport, StoreError> {
    let started = Instant::now();
    let store = Store::open(data_dir, storage)?;
    let rules = RetryRules::permissive();
    let zones = [TimeZone::UTC];
    let mut campaign = Campaign {
        id: 1,
        name: "seeded".into(),
        description: "synthetic calls for benchmarks".into(),
        status: CampaignStatus::Active,
        timezone: None,
        max_attempts: Some(3),
        max_concurrent_calls: None,
        default_region: None,
        caller_id: None,
        created_at: now,
        updated_at: now,
    };
    let mut made = 0u64;
    while made < calls {
        let txn = store.begin_write()?;
        {
            let mut t = WriteTables::open(&txn)?;
            match t.campaign(1)? {
                Some(existing) => campaign = existing,
                None => {
                    t.next_id("next_campaign_id")?;
                    t.put_campaign(&campaign)?;
                }
            }
            let context = Context { campaign: &campaign, zones: &zones, rules: &rules, callback_timeout_ms: 600_000 };
            let end = (made + SEED_CHUNK).min(calls);
            for i in made..end {
                // When this call's outcome happened, and what it was.
                let (at, outcome, max_attempts) = match shape {
                    // next_retry_at = at + 1 h: spread over the next week.
                    SeedShape::Retrying => (now + (i as i64 * 7 * DAY_MS / calls.max(1) as i64), Outcome::Rnr, 3),
                    SeedShape::Finished { days } => {
                        let at = now - days as i64 * DAY_MS + (i as i64 * days as i64 * DAY_MS / calls.max(1) as i64);
                        if i % 10 < 7 { (at, Outcome::Picked, 3) } else { (at, Outcome::Rnr, 1) }
                    }
                };
                let created = at - 60_000;
                let id = CallId(((created.max(0) as u128) << 80) | i as u128);
                let queue_seq = t.next_queue_seq()?;
                let call = machine::new_call(id, 1, format!("+1{:010}", 2_000_000_000 + i), None, max_attempts, created, queue_seq);
                let dial = Event::Dispatch { number: NumberFacts::default() };
                let dialled = machine::step(&call, dial, created + 1_000, &context).expect("a new call dials").call;
                let callback = Event::Callback { outcome, attempt: None, external_call_id: None, duration_seconds: Some(30) };
                let ended = machine::step(&dialled, callback, at, &context).expect("an outcome applies to a call in flight").call;
                t.put_call(None, &ended)?;
            }
            made = end;
        }
        txn.commit()?;
    }
    drop(store);
    let file_bytes = std::fs::metadata(data_dir.join("callmgr.redb")).map(|m| m.len()).unwrap_or(0);
    Ok(SeedReport { calls, seconds: started.elapsed().as_secs_f64(), file_bytes })
}
