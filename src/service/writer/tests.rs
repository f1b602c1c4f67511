//! The writer's commands, one batch at a time, on an in-memory store and a manual clock: what
//! each command answers, what it commits, and which events it sends after the commit.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::*;
use crate::config::StorageConfig;
use crate::core::clock::ManualClock;
use crate::core::model::{CallState, Campaign, CancelReason, Outcome, Placement, Status};
use crate::service::dispatch::SendBoard;
use crate::service::store::tables::CountKey;

const T0: Millis = 1_780_000_000_000;

struct Harness {
    writer: Writer,
    events: Receiver<Event>,
    clock: Arc<ManualClock>,
    store: Arc<Store>,
    board: Arc<SendBoard>,
}

fn settings() -> WriterSettings {
    WriterSettings {
        duplicate_window: Duration::from_secs(300),
        callback_timeout: Duration::from_secs(600),
        callback_url: "http://127.0.0.1:1/api/v1/callback/".into(),
        inbox_max: 64,
        batch_max: 64,
        items_max: 3,
        cancel_chunk_max: 2,
        timezone_max_candidates: 3,
        lookup_budget: None,
    }
}

fn harness() -> Harness {
    harness_with(settings())
}

fn harness_with(settings: WriterSettings) -> Harness {
    let store = Arc::new(
        Store::open_with_backend(redb::backends::InMemoryBackend::new(), "memory", &StorageConfig { quick_repair: false, cache_size_bytes: 4 << 20 }).unwrap(),
    );
    let clock = ManualClock::new(T0);
    let (tx, rx) = crossbeam_channel::unbounded();
    let gauges = Arc::new(Gauges::new(10));
    let stats = Arc::new(LiveStats::new(T0));
    let board = Arc::new(crate::service::dispatch::SendBoard::default());
    let writer = Writer::new(store.clone(), Arc::new(RetryRules::permissive()), clock.clone(), tx, gauges, stats, settings, board.clone()).unwrap();
    Harness { writer, events: rx, clock, store, board }
}

impl Harness {
    /// Runs one client command in its own batch and returns its answer.
    fn ask<T: Send + 'static>(&mut self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.writer.run_batch(vec![make(tx)]).unwrap();
        rx.try_recv().expect("answered after the commit")
    }

    /// Runs internal commands (scheduler, workers) in one batch.
    fn internal(&mut self, commands: Vec<Command>) {
        self.writer.run_batch(commands).unwrap();
    }

    fn events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    fn call(&self, id: CallId) -> Call {
        self.store.read().unwrap().call(id).unwrap().unwrap()
    }

    fn campaign(&mut self, name: &str) -> Campaign {
        let input = NewCampaign {
            name: name.into(),
            description: String::new(),
            is_active: true,
            timezone: None,
            max_attempts: None,
            max_concurrent_calls: None,
            default_region: None,
            caller_id: None,
        };
        self.ask(|reply| Command::CreateCampaign { input, reply }).unwrap()
    }

    fn initiate(&mut self, campaign_id: CampaignId, phone: &str) -> Result<Call, CommandError> {
        let phone_number = phone.to_string();
        self.ask(|reply| Command::InitiateCall { campaign_id, phone_number, reply })
    }

    fn indexes_agree(&self) {
        let problems = self.store.read().unwrap().check_indexes().unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

fn dial_jobs(events: &[Event]) -> Vec<(CallId, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Dial(jobs) => Some(jobs.iter().map(|j| (j.call_id, j.attempt)).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn refused(events: &[Event]) -> Vec<(CallId, Option<u64>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DialRefused(list) => Some(list.iter().map(|(c, _, r)| (*c, *r)).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn initiate_queues_the_call_and_tells_the_scheduler_after_the_commit() {
    let mut h = harness();
    let campaign = h.campaign("c");
    h.events();
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    assert!(matches!(call.state, CallState::Initiated { hold: None, .. }));
    let events = h.events();
    assert!(matches!(&events[..], [Event::Calls(changes)] if changes.len() == 1 && matches!(changes[0].after, Placement::Queued { .. })));
    assert_eq!(h.call(call.call_id), call);
    h.indexes_agree();
}

#[test]
fn duplicates_and_listed_numbers_are_refused_and_write_nothing() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let first = h.initiate(campaign.id, "+14155550101").unwrap();
    match h.initiate(campaign.id, "+14155550101") {
        Err(CommandError::Duplicate { call_id, retry_after_seconds: None, .. }) => assert_eq!(call_id, first.call_id),
        other => panic!("{other:?}"),
    }
    // Another campaign: the open-call rule does not apply, the duplicate window does.
    let other = h.campaign("d");
    h.clock.advance_ms(60_000);
    match h.initiate(other.id, "+14155550101") {
        Err(CommandError::Duplicate { retry_after_seconds: Some(240), .. }) => {}
        other => panic!("{other:?}"),
    }
    let scope = DncScope::Global;
    h.ask(|reply| Command::AddDnc { scope, numbers: vec!["+14155550199".into()], reason: None, reply }).unwrap();
    assert_eq!(h.initiate(campaign.id, "+14155550199"), Err(CommandError::DoNotCall { phone_number: "+14155550199".into() }));
    let counts = h.store.read().unwrap().status_counts(0).unwrap();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1, "only the first call was stored");
    h.indexes_agree();
}

#[test]
fn dispatch_dials_an_active_campaigns_call_and_requeues_a_paused_ones() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    let id = campaign.id;
    h.ask(|reply| Command::ChangeCampaign { id, action: CampaignAction::Pause, reply }).unwrap();
    h.events();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    let events = h.events();
    let CallState::Initiated { queue_seq, .. } = call.state else { unreachable!() };
    assert_eq!(refused(&events), vec![(call.call_id, Some(queue_seq))]);
    assert!(dial_jobs(&events).is_empty());
    h.ask(|reply| Command::ChangeCampaign { id, action: CampaignAction::Resume, reply }).unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    assert_eq!(dial_jobs(&h.events()), vec![(call.call_id, 1)]);
    assert_eq!(h.call(call.call_id).state, CallState::Processing { deadline: T0 + 600_000 });
    h.indexes_agree();
}

#[test]
fn a_number_listed_in_the_same_batch_before_its_dispatch_is_never_dialled() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    h.events();
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let add = Command::AddDnc { scope: DncScope::Campaign(campaign.id), numbers: vec!["+14155550101".into()], reason: Some("asked".into()), reply: tx };
    h.internal(vec![add, Command::Dispatch { call_ids: vec![call.call_id] }]);
    let events = h.events();
    assert!(dial_jobs(&events).is_empty());
    assert_eq!(refused(&events), vec![(call.call_id, None)], "its reserved slot is released");
    assert_eq!(h.call(call.call_id).state, CallState::Cancelled { reason: CancelReason::DoNotCall });
    assert_eq!(h.store.read().unwrap().counted(campaign.id, CountKey::CancelledDoNotCall).unwrap(), 1);
    h.indexes_agree();
}

#[test]
fn callbacks_apply_once_and_repeats_answer_the_same() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    let input =
        CallbackInput { call_id: call.call_id, outcome: Outcome::Rnr, attempt: None, external_call_id: Some("ext-1".into()), duration_seconds: Some(0) };
    let first = h.ask(|reply| Command::Callback { input: input.clone(), reply }).unwrap();
    assert_eq!(first.answer.result.status, Status::Retrying);
    let stored = h.call(call.call_id);
    let repeat = h.ask(|reply| Command::Callback { input: input.clone(), reply }).unwrap();
    assert_eq!(repeat, first);
    assert_eq!(h.call(call.call_id), stored, "a repeat writes nothing");
    let other = CallbackInput { outcome: Outcome::Picked, ..input };
    assert!(matches!(h.ask(|reply| Command::Callback { input: other, reply }), Err(CommandError::Conflict(_))));
    let missing = CallbackInput { call_id: CallId(7), outcome: Outcome::Picked, attempt: None, external_call_id: None, duration_seconds: None };
    assert!(matches!(h.ask(|reply| Command::Callback { input: missing, reply }), Err(CommandError::NotFound(_))));
    h.indexes_agree();
}

#[test]
fn timers_apply_only_at_the_instant_they_were_armed_for() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    h.internal(vec![accepted(call.call_id, 1, "ext-1")]);
    let deadline = T0 + 600_000;
    h.clock.set_ms(deadline);
    h.internal(vec![Command::CallbackTimeouts { due: vec![(call.call_id, deadline - 1)] }]);
    assert_eq!(h.call(call.call_id).status(), Status::Processing, "a timer armed for another deadline is stale");
    h.internal(vec![Command::CallbackTimeouts { due: vec![(call.call_id, deadline)] }]);
    let retrying = h.call(call.call_id);
    assert_eq!(retrying.state, CallState::Retrying { next_retry_at: deadline + 3_600_000 });
    h.clock.set_ms(deadline + 3_600_000);
    h.internal(vec![Command::RetriesDue { due: vec![(call.call_id, deadline + 3_600_000)] }]);
    let again = h.call(call.call_id);
    assert_eq!((again.status(), again.attempt_count), (Status::Initiated, 2));
    h.indexes_agree();
}

#[test]
fn stopping_cancels_waiting_calls_in_chunks_and_ends_calls_in_flight_at_their_outcome() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let calls: Vec<Call> = (0..5).map(|n| h.initiate(campaign.id, &format!("+1415555010{n}")).unwrap()).collect();
    h.internal(vec![Command::Dispatch { call_ids: vec![calls[0].call_id] }]);
    let id = campaign.id;
    h.ask(|reply| Command::ChangeCampaign { id, action: CampaignAction::Stop, reply }).unwrap();
    // cancel_chunk_max is 2: the four waiting calls take two batches.
    let cancelled = |h: &Harness| calls.iter().filter(|c| h.call(c.call_id).status() == Status::Cancelled).count();
    assert_eq!(cancelled(&h), 2);
    h.internal(vec![]);
    assert_eq!(cancelled(&h), 4);
    assert_eq!(h.call(calls[0].call_id).status(), Status::Processing);
    let input = CallbackInput { call_id: calls[0].call_id, outcome: Outcome::Rnr, attempt: None, external_call_id: None, duration_seconds: None };
    let answer = h.ask(|reply| Command::Callback { input, reply }).unwrap();
    assert_eq!(answer.answer.result.status, Status::Cancelled);
    assert!(matches!(h.initiate(campaign.id, "+14155550999"), Err(CommandError::NotFound(_))));
    assert!(matches!(h.ask(|reply| Command::ChangeCampaign { id, action: CampaignAction::Resume, reply }), Err(CommandError::Conflict(_))));
    let patch = CampaignPatch { is_active: Some(false), ..CampaignPatch::default() };
    assert!(matches!(h.ask(|reply| Command::UpdateCampaign { id, patch, reply }), Err(CommandError::Conflict(_))), "PATCH and pause/ share one table");
    h.indexes_agree();
}

#[test]
fn start_queues_every_number_in_chunks_and_reports_what_it_skipped() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let campaign_id = campaign.id;
    let numbers: Vec<(String, Option<String>)> = (0..5).map(|n| (format!("+1415555010{n}"), None)).collect();
    h.ask(|reply| Command::AddNumbers { campaign_id, numbers, reply }).unwrap();
    h.initiate(campaign_id, "+14155550100").unwrap();
    h.ask(|reply| Command::AddDnc { scope: DncScope::Global, numbers: vec!["+14155550101".into()], reason: None, reply }).unwrap();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    h.internal(vec![Command::StartCampaign { id: campaign_id, reply: tx }]);
    assert!(rx.try_recv().is_err(), "items_max is 3: the first chunk does not finish the job");
    h.internal(vec![]);
    let summary = rx.try_recv().unwrap().unwrap();
    assert_eq!(summary, StartSummary { queued: 3, skipped_duplicates: 1, skipped_dnc: 1 });
    h.indexes_agree();
}

#[test]
fn listing_a_number_cancels_its_waiting_calls_in_its_scope_only() {
    let mut h = harness();
    let a = h.campaign("a");
    let b = h.campaign("b");
    let in_a = h.initiate(a.id, "+14155550101").unwrap();
    h.clock.advance_ms(400_000);
    let in_b = h.initiate(b.id, "+14155550101").unwrap();
    h.ask(|reply| Command::AddDnc { scope: DncScope::Campaign(a.id), numbers: vec!["+14155550101".into()], reason: None, reply }).unwrap();
    assert_eq!(h.call(in_a.call_id).status(), Status::Cancelled);
    assert_eq!(h.call(in_b.call_id).status(), Status::Initiated);
    h.ask(|reply| Command::AddDnc { scope: DncScope::Global, numbers: vec!["+14155550101".into()], reason: None, reply }).unwrap();
    assert_eq!(h.call(in_b.call_id).status(), Status::Cancelled);
    let added = h.ask(|reply| Command::AddDnc { scope: DncScope::Global, numbers: vec!["+14155550101".into()], reason: None, reply }).unwrap();
    assert_eq!((added.added_count, added.already_count), (0, 1));
    let phone_number = "+14155550101".to_string();
    h.ask(|reply| Command::RemoveDnc { scope: DncScope::Global, phone_number, reply }).unwrap();
    let phone_number = "+14155550101".to_string();
    assert!(matches!(h.ask(|reply| Command::RemoveDnc { scope: DncScope::Global, phone_number, reply }), Err(CommandError::NotFound(_))));
    h.indexes_agree();
}

#[test]
fn replay_gives_a_dead_lettered_call_one_more_attempt_once() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    for attempt in 1..=3 {
        h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
        let result = ProviderResult::TransportFailed { reason: "connection refused".into() };
        h.internal(vec![Command::ProviderAnswered { call_id: call.call_id, attempt, result }]);
        if attempt < 3 {
            let at = h.call(call.call_id).next_retry_at().unwrap();
            h.clock.set_ms(at);
            h.internal(vec![Command::RetriesDue { due: vec![(call.call_id, at)] }]);
        }
    }
    assert_eq!(h.call(call.call_id).status(), Status::Failed);
    let letters = h.store.read().unwrap().dead_letters(None, 10).unwrap().items;
    assert_eq!(letters.len(), 3);
    let id = letters[2].id;
    let replayed = h.ask(|reply| Command::ReplayDeadLetter { id, reply }).unwrap();
    assert_eq!((replayed.status(), replayed.attempt_count, replayed.max_attempts), (Status::Initiated, 4, 4));
    assert!(matches!(h.ask(|reply| Command::ReplayDeadLetter { id, reply }), Err(CommandError::Conflict(_))));
    h.indexes_agree();
}

#[test]
fn purge_deletes_a_chunk_read_from_a_snapshot_all_or_nothing_and_keeps_lifetime_counts() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let mut ids = Vec::new();
    for n in 0..4 {
        let call = h.initiate(campaign.id, &format!("+1415555010{n}")).unwrap();
        h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
        let input = CallbackInput { call_id: call.call_id, outcome: Outcome::Picked, attempt: None, external_call_id: None, duration_seconds: Some(30) };
        h.ask(|reply| Command::Callback { input, reply }).unwrap();
        ids.push(call.call_id);
    }
    // A waiting call that the do-not-call list cancels: counted apart.
    let listed = h.initiate(campaign.id, "+14155550199").unwrap();
    h.ask(|reply| Command::AddDnc { scope: DncScope::Global, numbers: vec!["+14155550199".into()], reason: None, reply }).unwrap();
    h.internal(vec![]);
    assert_eq!(h.call(listed.call_id).status(), Status::Cancelled);
    let lifetime_before = h.store.read().unwrap().lifetime_status_counts(campaign.id).unwrap();
    h.clock.advance_ms(60_000);
    let read = h.store.read().unwrap();
    let chunk = read.final_calls_up_to(crate::core::clock::Clock::now_ms(&*h.clock), 10).unwrap();
    assert_eq!(chunk.len(), 5);
    assert_eq!(read.archive_seq().unwrap(), 1);
    drop(read);

    // A chunk for the wrong archive file is refused whole.
    let wrong = PurgeChunk { archive_seq: Some(2), calls: chunk.clone() };
    assert!(matches!(h.ask(|reply| Command::Purge { chunk: wrong, reply }), Err(CommandError::Conflict(_))));
    // So is one holding a call that changed since it was read.
    let mut stale = chunk.clone();
    stale[0].updated_at -= 1;
    let stale = PurgeChunk { archive_seq: Some(1), calls: stale };
    assert!(matches!(h.ask(|reply| Command::Purge { chunk: stale, reply }), Err(CommandError::Conflict(_))));
    assert_eq!(h.store.read().unwrap().status_counts(campaign.id).unwrap(), lifetime_before, "nothing was deleted");

    let ok = PurgeChunk { archive_seq: Some(1), calls: chunk };
    assert_eq!(h.ask(|reply| Command::Purge { chunk: ok, reply }), Ok(5));
    let read = h.store.read().unwrap();
    for id in ids.iter().chain([&listed.call_id]) {
        assert_eq!(read.call(*id).unwrap(), None);
    }
    assert_eq!(read.archive_seq().unwrap(), 2);
    assert!(read.status_counts(campaign.id).unwrap().iter().all(|(_, n)| *n == 0));
    assert_eq!(read.lifetime_status_counts(campaign.id).unwrap(), lifetime_before, "lifetime counts stay right");
    assert_eq!(read.counted(0, CountKey::PurgedCancelledDoNotCall).unwrap(), 1);
    assert_eq!(read.counted(0, CountKey::CancelledDoNotCall).unwrap(), 0);
    assert!(read.final_calls_up_to(crate::core::clock::Clock::now_ms(&*h.clock), 10).unwrap().is_empty());
    drop(read);
    h.indexes_agree();
    // The number can be called again; its old calls are gone from every index.
    h.clock.advance_ms(3_600_000);
    h.initiate(campaign.id, "+14155550100").unwrap();
    h.indexes_agree();
}
fn accepted(call_id: CallId, attempt: u32, external_call_id: &str) -> Command {
    Command::ProviderAnswered { call_id, attempt, result: ProviderResult::Accepted { external_call_id: Some(external_call_id.into()) } }
}

fn lookups(events: &[Event]) -> Vec<LookupJob> {
    events.iter().filter_map(|e| if let Event::Lookups(jobs) = e { Some(jobs.clone()) } else { None }).flatten().collect()
}

#[test]
fn a_deadline_that_passes_while_the_dial_is_still_being_sent_waits_for_the_worker() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    let deadline = T0 + 600_000;
    h.clock.set_ms(deadline);
    h.internal(vec![Command::CallbackTimeouts { due: vec![(call.call_id, deadline)] }]);
    assert_eq!(h.call(call.call_id).status(), Status::Processing, "the slot is held while a worker may still send");
    assert!(h.board.is_stopped(call.call_id, 1), "the worker is told to stop resending");
    // The worker gives up and reports: the attempt fails, and the deadline that passed applies too.
    let failed = ProviderResult::TransportFailed { reason: "timeout (resending stopped)".into() };
    h.internal(vec![Command::ProviderAnswered { call_id: call.call_id, attempt: 1, result: failed }]);
    let stored = h.call(call.call_id);
    assert_eq!(stored.status(), Status::Retrying);
    assert!(!h.board.is_stopped(call.call_id, 1), "the mark is cleared once the worker reported");
    h.indexes_agree();
}

#[test]
fn a_dial_reported_not_sent_is_queued_again_with_its_attempt() {
    let mut h = harness();
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    h.events();
    let not_sent = ProviderResult::NotSent { reason: "the provider's circuit breaker is open".into() };
    h.internal(vec![Command::ProviderAnswered { call_id: call.call_id, attempt: 1, result: not_sent }]);
    let stored = h.call(call.call_id);
    assert!(matches!(stored.state, CallState::Initiated { hold: None, .. }), "{:?}", stored.state);
    assert_eq!(stored.attempt_count, 1);
    let events = h.events();
    assert!(events.iter().any(|e| matches!(e, Event::Calls(changes) if matches!(changes[0].after, Placement::Queued { .. }))));
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    assert_eq!(dial_jobs(&h.events()), vec![(call.call_id, 1)], "dialled again as attempt 1");
    h.indexes_agree();
}

#[test]
fn with_status_lookups_a_deadline_asks_the_provider_first() {
    let mut h = harness_with(WriterSettings { lookup_budget: Some(Duration::from_secs(20)), ..settings() });
    let campaign = h.campaign("c");
    let call = h.initiate(campaign.id, "+14155550101").unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![call.call_id] }]);
    h.internal(vec![accepted(call.call_id, 1, "CA1")]);
    h.events();
    let deadline = T0 + 600_000;
    h.clock.set_ms(deadline);
    h.internal(vec![Command::CallbackTimeouts { due: vec![(call.call_id, deadline)] }]);
    let jobs = lookups(&h.events());
    let lookup_deadline = deadline + 20_000;
    assert_eq!(
        jobs,
        vec![LookupJob { call_id: call.call_id, attempt: 1, external_call_id: "CA1".into(), reason: LookupReason::Deadline { deadline: lookup_deadline } }]
    );
    assert_eq!(h.call(call.call_id).state, CallState::Processing { deadline: lookup_deadline });
    let answer = LookupResult::Final { outcome: Outcome::Picked, duration_seconds: Some(12), external_call_id: "CA1".into(), status: "completed".into() };
    h.internal(vec![Command::LookupAnswered { call_id: call.call_id, attempt: 1, reason: jobs[0].reason, answer }]);
    let picked = h.call(call.call_id);
    assert_eq!((picked.status(), picked.total_call_time), (Status::Picked, 12));
    h.indexes_agree();
}

#[test]
fn calls_recovered_in_flight_are_looked_up_without_a_commit() {
    let mut h = harness_with(WriterSettings { lookup_budget: Some(Duration::from_secs(20)), ..settings() });
    let campaign = h.campaign("c");
    let with_id = h.initiate(campaign.id, "+14155550101").unwrap();
    let without_id = h.initiate(campaign.id, "+14155550102").unwrap();
    h.internal(vec![Command::Dispatch { call_ids: vec![with_id.call_id, without_id.call_id] }]);
    h.internal(vec![accepted(with_id.call_id, 1, "CA1")]);
    h.events();
    let before = h.call(with_id.call_id);
    h.internal(vec![Command::ReconcileRecovered { call_ids: vec![with_id.call_id, without_id.call_id] }]);
    let jobs = lookups(&h.events());
    assert_eq!(jobs.iter().map(|j| (j.call_id, j.reason)).collect::<Vec<_>>(), vec![(with_id.call_id, LookupReason::Recovered)]);
    assert_eq!(h.call(with_id.call_id), before);
}
