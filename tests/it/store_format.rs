//! A data file written by an earlier format must open in this build: upgrades keep the data.
//! `tests/fixtures/store-v1.redb` was written by record format 1 / schema 1 (regenerate it only
//! when adding a new fixture for a new format: `CALLMGR_WRITE_STORE_FIXTURE=1 cargo test --test it store_format`).

use std::path::Path;

use callmgr::config::StorageConfig;
use callmgr::core::machine::new_call;
use callmgr::core::model::{Call, CallId, Campaign, CampaignStatus, DeadLetter, NumberEntry, Outcome, Status};
use callmgr::service::store::{CallFilter, Store, WriteTables};

const T0: i64 = 1_780_000_000_000;

fn storage() -> StorageConfig {
    StorageConfig { quick_repair: false, cache_size_bytes: 16 << 20 }
}

fn write_fixture(dir: &Path) {
    let store = Store::open(dir, &storage()).unwrap();
    let txn = store.begin_write().unwrap();
    {
        let mut t = WriteTables::open(&txn).unwrap();
        assert_eq!(t.next_id("next_campaign_id").unwrap(), 1);
        t.put_campaign(&Campaign {
            id: 1,
            name: "Fixture".into(),
            description: "format 1".into(),
            status: CampaignStatus::Active,
            timezone: Some("Europe/London".into()),
            max_attempts: Some(4),
            max_concurrent_calls: Some(10),
            created_at: T0,
            updated_at: T0,
        })
        .unwrap();
        t.add_number(1, "+442079460958", &NumberEntry { timezone: Some("Europe/London".into()), added_at: T0 }).unwrap();
        let mut queued = new_call(CallId(1 << 64), 1, "+442079460958".into(), Some("Europe/London".into()), 4, T0);
        t.put_call(None, &mut queued).unwrap();
        let mut retrying = new_call(CallId((1 << 64) + 1), 1, "+14155550101".into(), None, 4, T0);
        t.put_call(None, &mut retrying).unwrap();
        let before = retrying.clone();
        retrying.status = Status::Retrying;
        retrying.last_outcome = Some(Outcome::Rnr);
        retrying.next_retry_at = Some(T0 + 3_600_000);
        retrying.queue_seq = None;
        t.put_call(Some(&before), &mut retrying).unwrap();
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
fn a_format_1_store_opens_and_reads_back() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.redb");
    if std::env::var_os("CALLMGR_WRITE_STORE_FIXTURE").is_some() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        std::fs::copy(dir.path().join("callmgr.redb"), &fixture).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join("callmgr.redb")).expect("the committed fixture exists");
    let store = Store::open(dir.path(), &storage()).unwrap();
    let reader = store.read().unwrap();
    let campaign = reader.campaign(1).unwrap().unwrap();
    assert_eq!((campaign.name.as_str(), campaign.max_attempts, campaign.timezone.as_deref()), ("Fixture", Some(4), Some("Europe/London")));
    assert_eq!(reader.number(1, "+442079460958").unwrap().unwrap().timezone.as_deref(), Some("Europe/London"));
    let calls: Vec<Call> = reader.calls(&CallFilter::default(), None, 10, 100).unwrap().items;
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].status, calls[0].queue_seq), (Status::Initiated, Some(1)));
    assert_eq!((calls[1].status, calls[1].last_outcome, calls[1].next_retry_at), (Status::Retrying, Some(Outcome::Rnr), Some(T0 + 3_600_000)));
    let counts = reader.status_counts(1).unwrap();
    assert!(counts.contains(&(Status::Initiated, 1)) && counts.contains(&(Status::Retrying, 1)));
    assert_eq!(reader.dead_letters(None, 10).unwrap().items[0].error, "HTTP 503");
    let recovered = reader.recover().unwrap();
    assert_eq!(recovered.ready, vec![(1, CallId(1 << 64), 1)]);
    assert_eq!(recovered.retrying, vec![(T0 + 3_600_000, CallId((1 << 64) + 1), 1)]);
    // And it accepts new writes in this build.
    drop(reader);
    let txn = store.begin_write().unwrap();
    {
        let mut t = WriteTables::open(&txn).unwrap();
        assert_eq!(t.next_id("next_campaign_id").unwrap(), 2);
    }
    txn.commit().unwrap();
}
