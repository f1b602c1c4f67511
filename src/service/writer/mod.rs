//! The group-commit writer: the one thread that owns write transactions.
//!
//! Commands arrive on a bounded channel. The thread takes what is waiting (up to
//! `writer_batch_max`), applies each command to one transaction, advances long jobs by a chunk,
//! commits with an fsync, and only then sends replies and scheduler events. A refused command
//! writes nothing (each handler validates before it writes). A storage error is fatal: the
//! thread stops, its `on_fatal` hook runs (the service exits), and the next boot recovers from
//! the last commit. This module never talks HTTP and never dials.
//!
//! The handlers live in one file per family: `campaigns`, `calls`, `dialing` (dispatch, provider
//! answers, timers), `dnc`, `jobs` (work spread over several transactions), and `purge`
//! (retention's chunks of final calls). `context`
//! resolves what the state machine needs before a call is stepped.

mod calls;
mod campaigns;
mod context;
mod dialing;
mod dnc;
mod jobs;
mod purge;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

pub use calls::{BulkSource, BulkSummary, CallbackInput, CallbackReply, ReplaySummary};
pub use campaigns::{AddedNumbers, CampaignPatch, NewCampaign, StartSummary};
pub use dialing::{LookupResult, ProviderResult};
pub use dnc::{DncAdded, DncScope};
pub use purge::PurgeChunk;

use crate::core::clock::SharedClock;
use crate::core::counters::{Counter, day_of};
use crate::core::machine::{LookupReason, Transition};
use crate::core::model::{Call, CallChange, CallId, CampaignAction, CampaignId, DeadLetter, Millis};
use crate::core::retry::RetryRules;
use crate::service::dispatch::SendBoard;
use crate::service::events::{CampaignInfo, DialJob, Event, LookupJob};
use crate::service::stats::{Gauges, LiveStats};
use crate::service::store::{Store, StoreError, WriteTables};
use context::Campaigns;
use jobs::LongJob;

/// A refused command, in domain terms; the API maps each variant to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    /// A call to the number is too recent or still open; `retry_after_seconds` when it is the
    /// duplicate window that refuses (how long until it ends).
    #[error("{message}")]
    Duplicate { call_id: CallId, message: String, retry_after_seconds: Option<u64> },
    #[error("Number {phone_number} is on the do-not-call list")]
    DoNotCall { phone_number: String },
    #[error("{0}")]
    Unavailable(String),
}

/// What a command handler can fail with: refused (answered, nothing written) or the storage
/// failed (fail-stop). `?` works for both.
#[derive(Debug)]
pub enum WriteError {
    Refused(CommandError),
    Storage(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(error: StoreError) -> Self {
        WriteError::Storage(error)
    }
}

impl From<CommandError> for WriteError {
    fn from(error: CommandError) -> Self {
        WriteError::Refused(error)
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// The longest the writer waits to fill a batch when the previous one showed concurrent load
/// (a fraction of one fsync, which costs milliseconds here).
const WRITER_LINGER_MAX: Duration = Duration::from_micros(500);

pub enum Command {
    CreateCampaign {
        input: NewCampaign,
        reply: Reply<crate::core::model::Campaign>,
    },
    UpdateCampaign {
        id: CampaignId,
        patch: CampaignPatch,
        reply: Reply<crate::core::model::Campaign>,
    },
    ChangeCampaign {
        id: CampaignId,
        action: CampaignAction,
        reply: Reply<crate::core::model::Campaign>,
    },
    StartCampaign {
        id: CampaignId,
        reply: Reply<StartSummary>,
    },
    AddNumbers {
        campaign_id: CampaignId,
        numbers: Vec<(String, Option<String>)>,
        reply: Reply<AddedNumbers>,
    },
    InitiateCall {
        campaign_id: CampaignId,
        phone_number: String,
        reply: Reply<Call>,
    },
    BulkInitiate {
        campaign_id: CampaignId,
        source: BulkSource,
        reply: Reply<BulkSummary>,
    },
    Callback {
        input: CallbackInput,
        reply: Reply<CallbackReply>,
    },
    ReplayDeadLetter {
        id: u64,
        reply: Reply<Call>,
    },
    /// Replays these dead letters (chosen by the API from a snapshot); each is checked again.
    ReplayDeadLetters {
        ids: Vec<u64>,
        reply: Reply<ReplaySummary>,
    },
    /// A provider's progress report that is not an outcome (Twilio's `ringing`, `in-progress`).
    ProviderProgress {
        call_id: CallId,
        attempt: u32,
        status: String,
        external_call_id: Option<String>,
        reply: Reply<()>,
    },
    AddDnc {
        scope: DncScope,
        numbers: Vec<String>,
        reason: Option<String>,
        reply: Reply<DncAdded>,
    },
    RemoveDnc {
        scope: DncScope,
        phone_number: String,
        reply: Reply<()>,
    },
    /// From the retention thread: delete this chunk of final calls (all or none); answers how
    /// many were deleted.
    Purge {
        chunk: PurgeChunk,
        reply: Reply<u64>,
    },
    /// From the scheduler: dial these queued calls if every gate is open (their slots are reserved).
    Dispatch {
        call_ids: Vec<CallId>,
    },
    /// From a SIGHUP reload: decide with these rules from now on.
    ReplaceRules {
        rules: Arc<RetryRules>,
        reply: Reply<()>,
    },
    /// From a worker: the provider's answer to one dial request.
    ProviderAnswered {
        call_id: CallId,
        attempt: u32,
        result: ProviderResult,
    },
    /// From a worker: what the provider said when asked about an attempt.
    LookupAnswered {
        call_id: CallId,
        attempt: u32,
        reason: LookupReason,
        answer: LookupResult,
    },
    /// At boot: these calls were in flight when the service stopped; look up their attempts
    /// at once where the provider can be asked.
    ReconcileRecovered {
        call_ids: Vec<CallId>,
    },
    /// From the scheduler: these (call, callback deadline) timers fired.
    CallbackTimeouts {
        due: Vec<(CallId, Millis)>,
    },
    /// From the scheduler: these (call, next_retry_at) timers fired.
    RetriesDue {
        due: Vec<(CallId, Millis)>,
    },
    /// From the scheduler: these (call, held until) timers fired.
    HoldsExpired {
        due: Vec<(CallId, Millis)>,
    },
}

/// The senders' side of the writer's inbox.
#[derive(Clone)]
pub struct WriterHandle {
    inbox: Sender<Command>,
}

impl WriterHandle {
    /// Sends a command and waits for its reply; a full inbox is refused at once (503), never queued without bound.
    pub async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        match self.inbox.try_send(make(tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CommandError::Unavailable("The writer is saturated; retry shortly".into())),
            Err(TrySendError::Disconnected(_)) => return Err(CommandError::Unavailable("The service is shutting down".into())),
        }
        rx.await.unwrap_or_else(|_| Err(CommandError::Unavailable("The service is shutting down".into())))
    }

    /// For internal senders (scheduler): refused when full, so the caller never blocks; the
    /// refused command comes back (boxed: it is large, and this is the rare path).
    pub fn try_send(&self, command: Command) -> Result<(), Box<Command>> {
        self.inbox.try_send(command).map_err(|e| Box::new(e.into_inner()))
    }

    /// For background threads off the async runtime (retention): waits for room and then for
    /// the reply, blocking the calling thread.
    pub fn request_blocking<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        if self.inbox.send(make(tx)).is_err() {
            return Err(CommandError::Unavailable("The service is shutting down".into()));
        }
        rx.blocking_recv().unwrap_or_else(|_| Err(CommandError::Unavailable("The service is shutting down".into())))
    }

    /// For worker threads: waits for room (backpressure); false once the writer is gone.
    pub fn send(&self, command: Command) -> bool {
        self.inbox.send(command).is_ok()
    }

    pub fn queued(&self) -> usize {
        self.inbox.len()
    }
}

/// What the writer needs from the configuration.
#[derive(Clone, Debug)]
pub struct WriterSettings {
    pub duplicate_window: Duration,
    pub callback_timeout: Duration,
    pub callback_url: Arc<str>,
    pub inbox_max: usize,
    pub batch_max: usize,
    /// Numbers per request and per `start` chunk.
    pub items_max: usize,
    /// Calls cancelled per transaction when a campaign stops or a number is listed.
    pub cancel_chunk_max: usize,
    /// A number whose prefix lists more zones than this gets no inferred timezone.
    pub timezone_max_candidates: usize,
    /// With a provider that can be asked about a call (Twilio): how long an attempt waits for the
    /// answer to the status lookup made at its callback deadline. `None`: no lookups (webhook).
    pub lookup_budget: Option<Duration>,
}

/// Everything a batch produces, released only after its commit.
#[derive(Default)]
struct Outbox {
    replies: Vec<Box<dyn FnOnce() + Send>>,
    changes: Vec<CallChange>,
    dial: Vec<DialJob>,
    lookups: Vec<LookupJob>,
    /// Attempts whose dial request is still with a worker but that ended: stop sending them.
    stop_sends: Vec<(CallId, u32)>,
    /// Attempts whose worker reported: forget their stop marks.
    sends_done: Vec<(CallId, u32)>,
    refused: Vec<(CallId, CampaignId, Option<u64>)>,
    campaigns: Vec<CampaignInfo>,
    slots_changed: bool,
}

impl Outbox {
    fn reply<T: Send + 'static>(&mut self, reply: Reply<T>, result: Result<T, CommandError>) {
        self.replies.push(Box::new(move || {
            let _ = reply.send(result);
        }));
    }

    /// Answers a handler's result; a storage failure propagates (nothing is answered).
    fn finish<T: Send + 'static>(&mut self, reply: Reply<T>, result: Result<T, WriteError>) -> Result<(), StoreError> {
        match result {
            Ok(value) => self.reply(reply, Ok(value)),
            Err(WriteError::Refused(error)) => self.reply(reply, Err(error)),
            Err(WriteError::Storage(error)) => return Err(error),
        }
        Ok(())
    }

    fn note_change(&mut self, change: CallChange) {
        use crate::core::model::Placement::InFlight;
        if matches!(change.before, InFlight { .. }) != matches!(change.after, InFlight { .. }) {
            self.slots_changed = true;
        }
        if change.before != change.after {
            self.changes.push(change);
        }
    }
}

/// What the writer does when the store fails: the service exits (fail-stop); tests record it.
pub type FatalHook = Box<dyn Fn(&StoreError) + Send>;

pub struct Writer {
    store: Arc<Store>,
    rules: Arc<RetryRules>,
    clock: SharedClock,
    /// Committed facts for the scheduler; the scheduler drains it without waiting on us.
    events: Sender<Event>,
    gauges: Arc<Gauges>,
    stats: Arc<LiveStats>,
    settings: WriterSettings,
    uuid_context: uuid::ContextV7,
    /// Campaigns and timezones, loaded through the current transaction on first use.
    campaigns: Campaigns,
    /// Work spread over several transactions, advanced one chunk per batch.
    jobs: VecDeque<LongJob>,
    /// Dial requests handed to the workers that they have not reported yet: call → attempt.
    outstanding_dials: HashMap<CallId, u32>,
    /// Callback deadlines that passed while the attempt's dial request was still out: they
    /// apply when the worker reports (call → the deadline).
    deferred_timeouts: HashMap<CallId, Millis>,
    /// Where the workers look before each send whether the attempt is still current.
    board: Arc<SendBoard>,
}

impl Writer {
    /// A writer over `store`; resumes the long jobs a crash interrupted.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        rules: Arc<RetryRules>,
        clock: SharedClock,
        events: Sender<Event>,
        gauges: Arc<Gauges>,
        stats: Arc<LiveStats>,
        settings: WriterSettings,
        board: Arc<SendBoard>,
    ) -> Result<Writer, StoreError> {
        let mut writer = Writer {
            store,
            rules,
            clock,
            events,
            gauges,
            stats,
            settings,
            uuid_context: uuid::ContextV7::new(),
            campaigns: Campaigns::default(),
            jobs: VecDeque::new(),
            outstanding_dials: HashMap::new(),
            deferred_timeouts: HashMap::new(),
            board,
        };
        writer.resume_interrupted_jobs()?;
        Ok(writer)
    }

    /// Runs the thread loop until every `WriterHandle` is dropped and the inbox is empty, or the
    /// store fails (then `on_fatal` runs and nothing of the failed batch was acknowledged).
    pub fn run(mut self, inbox: Receiver<Command>, on_fatal: FatalHook) {
        let mut last_batch_len = 0usize;
        loop {
            let mut batch = Vec::new();
            if self.jobs.is_empty() {
                match inbox.recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            while batch.len() < self.settings.batch_max {
                match inbox.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            // Group commit: under concurrent load, the first request after a commit would otherwise
            // get an fsync of its own while the rest arrive behind it. When the last batch showed
            // concurrency, wait briefly for about as many commands again; alone, commit at once.
            let want = last_batch_len.min(self.settings.batch_max);
            if last_batch_len > 1 && batch.len() < want {
                let deadline = std::time::Instant::now() + WRITER_LINGER_MAX;
                while batch.len() < want {
                    match inbox.recv_deadline(deadline) {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
            }
            last_batch_len = batch.len();
            if let Err(error) = self.run_batch(batch) {
                tracing::error!(%error, "storage failure in the writer: stopping (fail-stop); the next start recovers from the last commit");
                on_fatal(&error);
                // Refuse everything else (dropping a command drops its reply: the sender sees
                // the service stopping) until the last sender is gone.
                for command in inbox.iter() {
                    drop(command);
                }
                return;
            }
            self.gauges.writer_heartbeat(self.clock.now_ms());
        }
        tracing::debug!("writer stopped: every sender is gone");
    }

    /// Whether long jobs are waiting for their next chunk (an empty batch advances them).
    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Applies a batch in one transaction and commits it; replies and events go out only after
    /// the commit returned.
    pub fn run_batch(&mut self, batch: Vec<Command>) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut out = Outbox::default();
        let txn = self.store.begin_write()?;
        {
            let mut tables = WriteTables::open(&txn)?;
            for command in batch {
                self.apply(&mut tables, command, now, &mut out)?;
            }
            self.run_jobs(&mut tables, now, &mut out)?;
            if out.slots_changed {
                let processing = tables.processing_count()?;
                tables.raise_to(day_of(now), Counter::PeakConcurrent, processing)?;
            }
        }
        if let Err(error) = txn.commit() {
            // What this batch changed in memory may not be in the store: forget it.
            self.campaigns.forget();
            return Err(error.into());
        }
        for reply in out.replies {
            reply();
        }
        for (call_id, attempt) in out.sends_done {
            self.board.clear(call_id, attempt);
        }
        for (call_id, attempt) in out.stop_sends {
            self.board.stop(call_id, attempt);
        }
        let send = |event: Event| {
            // The scheduler drains its inbox without ever waiting on us, so this cannot deadlock.
            let _ = self.events.send(event);
        };
        for info in out.campaigns {
            send(Event::Campaign(info));
        }
        if !out.changes.is_empty() {
            send(Event::Calls(out.changes));
        }
        if !out.refused.is_empty() {
            send(Event::DialRefused(out.refused));
        }
        if !out.dial.is_empty() {
            send(Event::Dial(out.dial));
        }
        if !out.lookups.is_empty() {
            send(Event::Lookups(out.lookups));
        }
        Ok(())
    }

    fn apply(&mut self, t: &mut WriteTables<'_>, command: Command, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        match command {
            Command::CreateCampaign { input, reply } => {
                let result = self.create_campaign(t, input, now, out);
                out.finish(reply, result)
            }
            Command::UpdateCampaign { id, patch, reply } => {
                let result = self.update_campaign(t, id, patch, now, out);
                out.finish(reply, result)
            }
            Command::ChangeCampaign { id, action, reply } => {
                let result = self.change_campaign(t, id, action, now, out);
                out.finish(reply, result)
            }
            Command::StartCampaign { id, reply } => match self.start_campaign(t, id) {
                Ok(()) => {
                    self.jobs.push_back(LongJob::Start { campaign_id: id, after: None, summary: StartSummary::default(), reply });
                    Ok(())
                }
                Err(error) => out.finish(reply, Err(error)),
            },
            Command::AddNumbers { campaign_id, numbers, reply } => {
                let result = self.add_numbers(t, campaign_id, numbers, now);
                out.finish(reply, result)
            }
            Command::InitiateCall { campaign_id, phone_number, reply } => {
                let result = self.initiate(t, campaign_id, phone_number, now, out);
                out.finish(reply, result)
            }
            Command::BulkInitiate { campaign_id, source, reply } => {
                let result = self.bulk_initiate(t, campaign_id, source, now, out);
                out.finish(reply, result)
            }
            Command::Callback { input, reply } => {
                let result = self.callback(t, input, now, out);
                out.finish(reply, result)
            }
            Command::ReplayDeadLetter { id, reply } => {
                let result = self.replay(t, id, now, out);
                out.finish(reply, result)
            }
            Command::ReplayDeadLetters { ids, reply } => {
                let result = self.replay_many(t, ids, now, out);
                out.finish(reply, result)
            }
            Command::ProviderProgress { call_id, attempt, status, external_call_id, reply } => {
                let result = self.provider_progress(t, call_id, attempt, &status, external_call_id.as_deref(), now, out);
                out.finish(reply, result)
            }
            Command::AddDnc { scope, numbers, reason, reply } => {
                let result = self.add_dnc(t, scope, numbers, reason, now);
                out.finish(reply, result)
            }
            Command::RemoveDnc { scope, phone_number, reply } => {
                let result = self.remove_dnc(t, scope, &phone_number);
                out.finish(reply, result)
            }
            Command::Purge { chunk, reply } => {
                let result = self.purge(t, chunk);
                out.finish(reply, result)
            }
            Command::ReplaceRules { rules, reply } => {
                self.rules = rules;
                out.reply(reply, Ok(()));
                Ok(())
            }
            Command::Dispatch { call_ids } => self.dispatch(t, call_ids, now, out),
            Command::ProviderAnswered { call_id, attempt, result } => self.provider_answered(t, call_id, attempt, result, now, out),
            Command::LookupAnswered { call_id, attempt, reason, answer } => self.lookup_answered(t, call_id, attempt, reason, answer, now, out),
            Command::ReconcileRecovered { call_ids } => self.reconcile_recovered(t, call_ids, now, out),
            Command::CallbackTimeouts { due } => self.callback_timeouts(t, due, now, out),
            Command::RetriesDue { due } => self.retries_due(t, due, now, out),
            Command::HoldsExpired { due } => self.holds_expired(t, due, now, out),
        }
    }

    /// Writes a transition's record, counters and dead letter, and queues its effects (a status
    /// lookup; a stop for a dial request still out for an attempt that just ended).
    fn commit_transition(
        &mut self,
        t: &mut WriteTables<'_>,
        old: &Call,
        mut transition: Transition,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Call, StoreError> {
        if let Some(lookup) = transition.lookup.take() {
            out.lookups.push(LookupJob { call_id: old.call_id, attempt: lookup.attempt, external_call_id: lookup.external_call_id, reason: lookup.reason });
        }
        let call = transition.call;
        if !transition.changed {
            return Ok(call);
        }
        let still_in_flight = matches!(call.state, crate::core::model::CallState::Processing { .. }) && call.attempt_count == old.attempt_count;
        if !still_in_flight && self.outstanding_dials.get(&call.call_id) == Some(&old.attempt_count) {
            out.stop_sends.push((call.call_id, old.attempt_count));
        }
        if let Some(answer) = &transition.answer {
            self.stats.record_outcome(now, call.campaign_id, answer.outcome);
        }
        if call.status().is_final() && !old.status().is_final() {
            self.stats.record_final(now, call.status());
        }
        let day = day_of(now);
        for (counter, n) in transition.counters {
            t.bump(day, counter, n)?;
        }
        if let Some(error) = transition.dead_letter {
            let mut letter = DeadLetter {
                id: 0,
                call_id: call.call_id,
                campaign_id: call.campaign_id,
                phone_number: call.phone_number.clone(),
                attempt: old.attempt_count,
                error,
                created_at: now,
                replayed_at: None,
            };
            t.add_dead_letter(&mut letter)?;
            tracing::warn!(call_id = %call.call_id, dead_letter = letter.id, attempt = letter.attempt, error = %letter.error, "dial request never reached the provider: dead letter recorded");
        }
        let change = t.put_call(Some(old), &call)?;
        out.note_change(change);
        if old.status() != call.status() {
            tracing::debug!(call_id = %call.call_id, from = %old.status().as_str(), to = %call.status().as_str(), attempt = call.attempt_count, "call changed state");
        }
        Ok(call)
    }
}

/// The writer's inbox: the handle senders share, and the receiving end for `Writer::run` (or for
/// a test that runs batches itself).
pub fn inbox(capacity: usize) -> (WriterHandle, Receiver<Command>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (WriterHandle { inbox: tx }, rx)
}

/// Starts the writer thread. It ends when every `WriterHandle` is dropped and its inbox is
/// empty, or at a storage failure (then `on_fatal` runs).
pub fn spawn(writer: Writer, on_fatal: FatalHook) -> (WriterHandle, std::thread::JoinHandle<()>) {
    let (handle, rx) = inbox(writer.settings.inbox_max);
    let thread = std::thread::Builder::new().name("callmgr-writer".into()).spawn(move || writer.run(rx, on_fatal)).expect("the writer thread starts");
    (handle, thread)
}
