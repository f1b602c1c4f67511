//! Storage faults injected where they happen: a redb `StorageBackend` that fails the Nth write or
//! sync, and keeps the image a crash at that moment would leave (everything up to the last
//! successful sync). The writer must stop (fail-stop), must not have acknowledged anything that
//! did not commit, and a store reopened from the crash image must hold every acknowledged call
//! with indexes that agree with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use callmgr::config::StorageConfig;
use callmgr::core::clock::{ManualClock, SharedClock};
use callmgr::core::model::CallId;
use callmgr::core::retry::RetryRules;
use callmgr::service::stats::{Gauges, LiveStats};
use callmgr::service::store::Store;
use callmgr::service::writer::{self, Command, CommandError, NewCampaign, Writer, WriterSettings};

use crate::disk::FaultyDisk;

fn storage() -> StorageConfig {
    StorageConfig { quick_repair: false, cache_size_bytes: 4 << 20 }
}

const CALLS_PER_RUN: usize = 120;

/// One run: a healthy store gets a campaign, then a disk that fails as told receives concurrent
/// initiate-calls until the writer stops. Returns (acknowledged call ids, number refused, the
/// fatal error seen, the crash image).
fn run(fail_write_at: Option<u64>, fail_sync_at: Option<u64>) -> (Vec<CallId>, usize, Option<String>, Vec<u8>) {
    // A store with one campaign, written on a healthy disk.
    let healthy = FaultyDisk::new(Vec::new(), None, None);
    {
        let store = Arc::new(Store::open_with_backend(healthy.clone(), "healthy", &storage()).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (writer, thread) = spawn(store, Box::new(|error| panic!("healthy disk failed: {error}")));
        let input = NewCampaign {
            name: "faults".into(),
            description: String::new(),
            is_active: false,
            timezone: None,
            max_attempts: None,
            max_concurrent_calls: None,
            default_region: None,
            caller_id: None,
        };
        runtime.block_on(writer.request(|reply| Command::CreateCampaign { input, reply })).unwrap();
        drop(writer);
        thread.join().unwrap();
    }
    // The same image on a disk that breaks.
    let disk = FaultyDisk::new(healthy.crash_image(), fail_write_at, fail_sync_at);
    let store = match Store::open_with_backend(disk.clone(), "faulty", &storage()) {
        Ok(store) => Arc::new(store),
        // The fault hit while opening: nothing was acknowledged.
        Err(_) => return (Vec::new(), CALLS_PER_RUN, Some("open failed".into()), disk.crash_image()),
    };
    let fatal: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = fatal.clone();
    let (writer, thread) = spawn(store, Box::new(move |error| *seen.lock().unwrap() = Some(error.to_string())));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let answers: Vec<Result<CallId, CommandError>> = runtime.block_on(async {
        let requests = (0..CALLS_PER_RUN).map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move {
                // Spread the requests over several batches.
                tokio::time::sleep(Duration::from_micros(50 * n as u64)).await;
                let phone_number = format!("+1415555{n:04}");
                writer.request(|reply| Command::InitiateCall { campaign_id: 1, phone_number, reply }).await.map(|call| call.call_id)
            })
        });
        let mut out = Vec::new();
        for request in requests.collect::<Vec<_>>() {
            out.push(request.await.unwrap());
        }
        out
    });
    drop(writer);
    thread.join().unwrap();
    let acknowledged: Vec<CallId> = answers.iter().filter_map(|a| a.as_ref().ok().copied()).collect();
    let refused = answers.len() - acknowledged.len();
    for answer in &answers {
        if let Err(error) = answer {
            assert!(matches!(error, CommandError::Unavailable(_)), "only unavailability after the fault: {error}");
        }
    }
    let fatal = fatal.lock().unwrap().clone();
    (acknowledged, refused, fatal, disk.crash_image())
}

fn spawn(store: Arc<Store>, on_fatal: writer::FatalHook) -> (writer::WriterHandle, std::thread::JoinHandle<()>) {
    let clock: SharedClock = ManualClock::new(1_780_000_000_000);
    let (events, _) = crossbeam_channel::unbounded();
    let settings = WriterSettings {
        duplicate_window: Duration::ZERO,
        callback_timeout: Duration::from_secs(600),
        callback_url: "http://127.0.0.1:1/api/v1/callback/".into(),
        inbox_max: 4096,
        batch_max: 16,
        items_max: 100,
        cancel_chunk_max: 100,
        timezone_max_candidates: 3,
        lookup_budget: None,
    };
    let board = Arc::new(callmgr::service::dispatch::SendBoard::default());
    let core =
        Writer::new(store, Arc::new(RetryRules::permissive()), clock, events, Arc::new(Gauges::new(10)), Arc::new(LiveStats::new(0)), settings, board).unwrap();
    writer::spawn(core, on_fatal)
}

#[test]
fn a_failing_disk_stops_the_writer_and_every_acknowledged_call_survives_the_crash() {
    let faults: Vec<(Option<u64>, Option<u64>)> = (2..=9).map(|n| (None, Some(n))).chain([5, 20, 60, 150].map(|n| (Some(n), None))).collect();
    let mut stopped = 0;
    for (fail_write_at, fail_sync_at) in faults {
        let (acknowledged, refused, fatal, image) = run(fail_write_at, fail_sync_at);
        if refused > 0 {
            assert!(fatal.is_some(), "requests were refused, so the writer must have stopped on the fault");
            stopped += 1;
        }
        // Reopen the crash image on a healthy disk: recovery starts from the last commit.
        let store = Store::open_with_backend(FaultyDisk::new(image, None, None), "after the crash", &storage()).unwrap();
        let reader = store.read().unwrap();
        for id in &acknowledged {
            assert!(reader.call(*id).unwrap().is_some(), "fault {fail_write_at:?}/{fail_sync_at:?}: acknowledged call {id} lost");
        }
        let problems = reader.check_indexes().unwrap();
        assert!(problems.is_empty(), "fault {fail_write_at:?}/{fail_sync_at:?}: {problems:#?}");
    }
    assert!(stopped >= 8, "most injected faults hit during the load ({stopped} did)");
}
