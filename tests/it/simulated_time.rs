//! The writer and the scheduler on a manual clock: an hour-long retry interval and a ten-minute
//! callback timeout play out in milliseconds, with the test standing in for the workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callmgr::config::StorageConfig;
use callmgr::core::clock::{ManualClock, SharedClock};
use callmgr::core::model::{CallId, CallState, Status};
use callmgr::core::retry::RetryRules;
use callmgr::service::dispatch::{ProviderHealth, SendBoard};
use callmgr::service::events::{DialJob, Event};
use callmgr::service::scheduler::{Scheduler, SchedulerSettings};
use callmgr::service::stats::{Gauges, LiveStats};
use callmgr::service::store::{Recovered, Store};
use callmgr::service::writer::{self, Command, NewCampaign, Writer, WriterSettings};

const T0: i64 = 1_780_000_000_000;
const MINUTE: i64 = 60_000;

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn timeout_and_retry_follow_the_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &StorageConfig { quick_repair: false, cache_size_bytes: 16 << 20 }).unwrap());
    let manual = ManualClock::new(T0);
    let clock: SharedClock = manual.clone();
    let gauges = Arc::new(Gauges::new(1));
    let stats = Arc::new(LiveStats::new(T0));
    let (events_tx, events_rx) = crossbeam_channel::bounded(1024);
    let settings = WriterSettings {
        duplicate_window: Duration::ZERO,
        callback_timeout: Duration::from_secs(600),
        callback_url: "http://127.0.0.1:1/api/v1/callback/".into(),
        inbox_max: 64,
        batch_max: 64,
        items_max: 100,
        cancel_chunk_max: 100,
        timezone_max_candidates: 3,
        lookup_budget: None,
    };
    let rules = Arc::new(RetryRules::permissive());
    let board = Arc::new(SendBoard::default());
    let core = Writer::new(store.clone(), rules, clock.clone(), events_tx.clone(), gauges.clone(), stats.clone(), settings, board).unwrap();
    let (writer, writer_thread) = writer::spawn(core, Box::new(|error| panic!("storage failed: {error}")));
    let (dial_tx, dial_rx) = crossbeam_channel::bounded::<DialJob>(4);
    let scheduler = Scheduler::recover(
        Recovered::default(),
        clock.clone(),
        writer.clone(),
        dial_tx,
        Arc::new(ProviderHealth::new(u32::MAX, 1_000)),
        gauges,
        stats,
        SchedulerSettings { max_concurrent_calls: 1, max_calls_per_second: 1000.0, retry_release_max: 100, callback_timeout_ms: 600_000 },
    );
    let dialled = |job: DialJob| (job.call_id, job.attempt);
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let scheduler_thread = std::thread::spawn(move || scheduler.run(events_rx, stop_rx));

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let campaign = runtime
        .block_on(writer.request(|reply| Command::CreateCampaign {
            input: NewCampaign {
                name: "sim".into(),
                description: String::new(),
                is_active: true,
                timezone: None,
                max_attempts: None,
                max_concurrent_calls: None,
                default_region: None,
                caller_id: None,
            },
            reply,
        }))
        .unwrap();
    let call =
        runtime.block_on(writer.request(|reply| Command::InitiateCall { campaign_id: campaign.id, phone_number: "+14155550101".into(), reply })).unwrap();
    let status_of = |id: CallId| store.read().unwrap().call(id).unwrap().unwrap();

    let first = dialled(dial_rx.recv_timeout(Duration::from_secs(10)).expect("attempt 1 is dialled"));
    assert_eq!(first, (call.call_id, 1));
    assert_eq!(status_of(call.call_id).state, CallState::Processing { deadline: T0 + 10 * MINUTE });
    // The worker's report: the provider took the call (until then a deadline would wait for it).
    let accepted = writer::ProviderResult::Accepted { external_call_id: None };
    assert!(writer.send(Command::ProviderAnswered { call_id: call.call_id, attempt: 1, result: accepted }));

    // Ten minutes pass in an instant: the callback timeout fires and schedules the retry an hour on.
    manual.advance_ms(10 * MINUTE);
    events_tx.send(Event::Wake).unwrap();
    let retrying = wait_for("the timeout", || Some(status_of(call.call_id)).filter(|c| c.status() == Status::Retrying));
    assert_eq!(retrying.error_message.as_deref(), Some("No callback within 10m"));
    assert_eq!(retrying.next_retry_at(), Some(T0 + 70 * MINUTE));
    assert!(dial_rx.try_recv().is_err(), "nothing is dialled before the retry is due");

    // Just before the hour nothing happens; at the hour, attempt 2 is dialled.
    manual.advance_ms(60 * MINUTE - 1);
    events_tx.send(Event::Wake).unwrap();
    assert!(dial_rx.recv_timeout(Duration::from_millis(300)).is_err(), "dialled before next_retry_at");
    manual.advance_ms(1);
    events_tx.send(Event::Wake).unwrap();
    let second = dialled(dial_rx.recv_timeout(Duration::from_secs(10)).expect("attempt 2 is dialled when due"));
    assert_eq!(second, (call.call_id, 2));

    stop_tx.send(()).unwrap();
    scheduler_thread.join().unwrap();
    drop((writer, events_tx));
    writer_thread.join().unwrap();
}
