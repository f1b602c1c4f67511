//! A data file written by an earlier format must open in this build: upgrades keep the data.
//! `tests/fixtures/store-v1.redb` was written by the first release (record format 1, schema 1);
//! `store-v2.redb` by record format 2 / schema 2. Regenerate only the newest one, and only when
//! its format changes: `CALLMGR_WRITE_STORE_FIXTURE=2 cargo test --test it store_format`.

use std::path::{Path, PathBuf};

use callmgr::config::StorageConfig;
use callmgr::core::machine::{self, Context, Event, NumberFacts};
use callmgr::core::model::{CallId, CallState, Campaign, CampaignStatus, CancelReason, DeadLetter, DncEntry, Hold, HoldReason, NumberEntry, Outcome, Status};
use callmgr::core::retry::RetryRules;
use callmgr::service::store::tables::CountKey;
use callmgr::service::store::{CallFilter, Store, WriteTables};

const T0: i64 = 1_780_000_000_000;
const HOUR: i64 = 3_600_000;

fn storage() -> StorageConfig {
    StorageConfig { quick_repair: false, cache_size_bytes: 16 << 20 }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A copy of the fixture, opened by this build.
fn open_copy(name: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(name), dir.path().join("callmgr.redb")).expect("the committed fixture exists");
    let store = Store::open(dir.path(), &storage()).unwrap();
    (dir, store)
}

fn accepts_new_writes(store: &Store, next_campaign_id: u64) {
    let txn = store.begin_write().unwrap();
    {
        let mut t = WriteTables::open(&txn).unwrap();
        assert_eq!(t.next_id("next_campaign_id").unwrap(), next_campaign_id);
    }
    txn.commit().unwrap();
}

#[test]
fn a_format_1_store_opens_and_reads_back() {
    let (_dir, store) = open_copy("store-v1.redb");
    let reader = store.read().unwrap();
    let campaign = reader.campaign(1).unwrap().unwrap();
    assert_eq!((campaign.name.as_str(), campaign.max_attempts, campaign.timezone.as_deref()), ("Fixture", Some(4), Some("Europe/London")));
    assert_eq!((campaign.default_region, campaign.caller_id), (None, None));
    assert_eq!(reader.number(1, "+442079460958").unwrap().unwrap().timezone.as_deref(), Some("Europe/London"));
    let calls = reader.calls(&CallFilter::default(), None, 10, 100).unwrap().items;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].state, CallState::Initiated { queue_seq: 1, hold: None });
    assert_eq!(calls[1].state, CallState::Retrying { next_retry_at: T0 + HOUR });
    assert_eq!(calls[1].last_outcome(), None, "format 1 kept no outcome for a call that was never dialled");
    let counts = reader.status_counts(1).unwrap();
    assert!(counts.contains(&(Status::Initiated, 1)) && counts.contains(&(Status::Retrying, 1)));
    assert_eq!(reader.dead_letters(None, 10).unwrap().items[0].error, "HTTP 503");
    let recovered = reader.recover().unwrap();
    assert_eq!(recovered.ready, vec![(1, CallId(1 << 64), 1)]);
    assert_eq!(recovered.retrying, vec![(T0 + HOUR, CallId((1 << 64) + 1), 1)]);
    assert!(recovered.held.is_empty());
    drop(reader);
    accepts_new_writes(&store, 2);
}

/// Format 2: a call per state the new record can express, held calls, the do-not-call list.
fn write_fixture_v2(dir: &Path) {
    let store = Store::open(dir, &storage()).unwrap();
    let rules = RetryRules::permissive();
    let campaign = Campaign {
        id: 1,
        name: "Fixture 2".into(),
        description: "format 2".into(),
        status: CampaignStatus::Active,
        timezone: Some("America/New_York".into()),
        max_attempts: Some(3),
        max_concurrent_calls: Some(10),
        default_region: Some("US".into()),
        caller_id: Some("+14155550000".into()),
        created_at: T0,
        updated_at: T0,
    };
    let zones = [jiff::tz::TimeZone::UTC];
    let context = Context { campaign: &campaign, zones: &zones, rules: &rules, callback_timeout_ms: 600_000 };
    let txn = store.begin_write().unwrap();
    {
        let mut t = WriteTables::open(&txn).unwrap();
        assert_eq!(t.next_id("next_campaign_id").unwrap(), 1);
        t.put_campaign(&campaign).unwrap();
        t.add_number(1, "+12125550101", &NumberEntry { timezone: None, added_at: T0 }).unwrap();
        t.add_dnc(0, "+12125550199", &DncEntry { reason: Some("asked".into()), added_at: T0 }).unwrap();
        let mut make = |n: u128, phone: &str| {
            let seq = t.next_queue_seq().unwrap();
            machine::new_call(CallId((2 << 64) + n), 1, phone.into(), None, 3, T0, seq)
        };
        let queued = make(1, "+12125550101");
        let mut held = make(2, "+12125550102");
        let dialled = machine::step(&make(3, "+12125550103"), Event::Dispatch { number: NumberFacts::default() }, T0 + 1, &context).unwrap().call;
        let rnr = Event::Callback { outcome: Outcome::Rnr, attempt: Some(1), external_call_id: Some("ext-1"), duration_seconds: Some(0) };
        let retrying = machine::step(&dialled, rnr, T0 + 2, &context).unwrap().call;
        let cancelled = machine::step(&make(4, "+12125550199"), Event::Cancel { reason: CancelReason::DoNotCall }, T0 + 3, &context).unwrap().call;
        let CallState::Initiated { queue_seq, .. } = held.state else { unreachable!() };
        held.state = CallState::Initiated { queue_seq, hold: Some(Hold { reason: HoldReason::OutsideCallingHours, until: T0 + 10 * HOUR }) };
        for call in [&queued, &held, &dialled, &retrying, &cancelled] {
            // Each call is written once in its final shape; `dialled` and `retrying` share an id,
            // so the second write replaces the first through `put_call` as the writer would.
            let old = if call.call_id == retrying.call_id && call.status() == Status::Retrying { Some(&dialled) } else { None };
            t.put_call(old, call).unwrap();
        }
        let mut letter = DeadLetter {
            id: 0,
            call_id: retrying.call_id,
            campaign_id: 1,
            phone_number: retrying.phone_number.clone(),
            attempt: 1,
            error: "HTTP 503".into(),
            created_at: T0,
            replayed_at: None,
        };
        t.add_dead_letter(&mut letter).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_format_2_store_opens_and_reads_back() {
    if std::env::var("CALLMGR_WRITE_STORE_FIXTURE").as_deref() == Ok("2") {
        let dir = tempfile::tempdir().unwrap();
        write_fixture_v2(dir.path());
        std::fs::copy(dir.path().join("callmgr.redb"), fixture("store-v2.redb")).unwrap();
    }
    let (_dir, store) = open_copy("store-v2.redb");
    let reader = store.read().unwrap();
    let campaign = reader.campaign(1).unwrap().unwrap();
    assert_eq!((campaign.default_region.as_deref(), campaign.caller_id.as_deref()), (Some("US"), Some("+14155550000")));
    let calls = reader.calls(&CallFilter::default(), None, 10, 100).unwrap().items;
    let states: Vec<Status> = calls.iter().map(|c| c.status()).collect();
    assert_eq!(states, vec![Status::Initiated, Status::Initiated, Status::Retrying, Status::Cancelled]);
    assert_eq!(calls[1].hold(), Some(Hold { reason: HoldReason::OutsideCallingHours, until: T0 + 10 * HOUR }));
    let attempt = &calls[2].attempts[0];
    assert_eq!((attempt.attempt, attempt.outcome, attempt.external_call_id.as_deref()), (1, Some(Outcome::Rnr), Some("ext-1")));
    assert_eq!(calls[3].state, CallState::Cancelled { reason: CancelReason::DoNotCall });
    assert_eq!(reader.counted(1, CountKey::HeldOutsideCallingHours).unwrap(), 1);
    assert_eq!(reader.counted(1, CountKey::CancelledDoNotCall).unwrap(), 1);
    assert_eq!(reader.dnc_entries(None, None, None, 10).unwrap().items[0].1, "+12125550199");
    let recovered = reader.recover().unwrap();
    assert_eq!((recovered.ready.len(), recovered.held.len(), recovered.retrying.len()), (1, 1, 1));
    drop(reader);
    accepts_new_writes(&store, 2);
}
