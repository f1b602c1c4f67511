//! `serve`: opens the store, rebuilds the in-memory state from it, starts the threads, and only
//! then opens the API; on shutdown, drains in a fixed order within a time budget.
//!
//! Start order: store → recovery scan → writer → scheduler (recovered) → workers → retention
//! (when configured) → listener → ready (`/readyz` 200, systemd READY=1).
//! Stop order: stop accepting and finish in-flight requests → scheduler stops dispatching (drops
//! the dial channel) → retention finishes its chunk → workers wake from any wait and stop (one in
//! a provider request finishes that request and reports it) → the last writer handle drops → the
//! writer commits what is queued and exits. All of it within `limits.shutdown_timeout`, whatever
//! the provider does: a thread still busy at the end of the budget is left behind, and what it
//! did not report stays PROCESSING in the store, exactly as after a crash.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use sd_notify::NotifyState;

pub mod api;
pub mod archive;
pub mod backup;
pub mod disk;
pub mod dispatch;
pub mod events;
pub mod http;
pub mod process;
pub mod reload;
pub mod retention;
pub mod scheduler;
pub mod seed;
pub mod startup;
pub mod stats;
pub mod store;
pub mod writer;

use crate::config::Config;
use crate::core::clock::SharedClock;
use crate::core::retry::RetryRules;
use api::AppState;
use dispatch::{ProviderClient, ProviderHealth, SendBoard, TwilioClient, WebhookClient, Workers};
use scheduler::{Scheduler, SchedulerSettings};
use stats::{Gauges, LiveStats};
use store::Store;
use writer::{Writer, WriterSettings};

/// The exit code after a storage failure (EX_SOFTWARE): systemd restarts the service.
pub const EXIT_STORAGE_FAILURE: i32 = 70;

/// How often the data disk's free space is read.
const DISK_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// A writer that has had work waiting longer than this is considered stuck (no watchdog ping).
const WRITER_STALL_MS: i64 = 30_000;
const SCHEDULER_STALL_MS: i64 = 5_000;

/// Runs the service until `shutdown` resolves. `provider_url` is where the provider is reached:
/// the webhook endpoint, or the Twilio API's base URL (the configured one, or the address of a
/// mock provider the caller started).
pub async fn serve(
    config: Config,
    rules: RetryRules,
    clock: SharedClock,
    provider_url: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: tokio::sync::mpsc::Receiver<reload::Reload>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let boot_started = Instant::now();
    for key in rules.ignored_keys() {
        tracing::warn!(file = %config.retry_config.display(), key, "retry config key is accepted for compatibility and ignored");
    }
    if config.uses_dev_token() {
        tracing::warn!("the development token `dev-token-12345` is accepted: set your own tokens before exposing this service");
    }
    if let Some(problem) = config.callback_timeout_problem() {
        tracing::warn!("{problem} (serving anyway: a deadline that passes while a dial request is being resent waits for that request)");
    }

    let store = {
        let (dir, storage) = (config.data_dir.clone(), config.storage.clone());
        tokio::task::spawn_blocking(move || Store::open(&dir, &storage)).await?.map_err(|error| startup::explain_store_error(&config.data_dir, error))?
    };
    let store = Arc::new(store);
    // The phone metadata and the timezone prefix map load once, before the API opens, so the
    // first request does not pay for them.
    tokio::task::spawn_blocking(|| {
        crate::core::phone::warm_up();
        crate::core::callee_zone::warm_up();
    })
    .await?;
    let recovered = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.read().and_then(|r| r.recover())).await?.context("reading the store for recovery")?
    };
    tracing::info!(
        path = %store.path().display(),
        campaigns = recovered.campaigns.len(),
        queued = recovered.ready.len(),
        in_flight = recovered.in_flight.len(),
        retrying = recovered.retrying.len(),
        "store opened and recovered"
    );

    let http_settings = http::HttpSettings::from_limits(&config.limits);
    // Each worker may hold a connection to the provider, and each export a thread and a snapshot.
    http::raise_open_file_limit(&http_settings, config.workers + config.limits.exports_max);
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|error| startup::explain_bind_error(config.listen, error))?;
    let bound = listener.local_addr()?;
    let callback_url: Arc<str> = config.callback_url(bound).into();
    let public_base: Arc<str> = config.public_base(bound).into();
    let board = Arc::new(SendBoard::default());
    let health = Arc::new(ProviderHealth::new(config.provider.breaker_failures, config.provider.breaker_cooldown.as_millis() as i64));
    let twilio = config.provider.twilio.clone();

    let gauges = Arc::new(Gauges::new(config.max_concurrent_calls));
    let stats = Arc::new(LiveStats::new(clock.now_ms()));
    let rules = Arc::new(rules);
    let live = Arc::new(reload::Live::new(&config.tokens, rules.clone()));
    let (events_tx, events_rx) = crossbeam_channel::bounded(config.limits.event_queue_max);
    let worker_events = events_tx.clone();
    let writer_core = Writer::new(
        store.clone(),
        rules.clone(),
        clock.clone(),
        events_tx,
        gauges.clone(),
        stats.clone(),
        WriterSettings {
            duplicate_window: config.duplicate_window,
            callback_timeout: config.callback_timeout,
            callback_url: callback_url.clone(),
            inbox_max: config.limits.writer_inbox_max,
            batch_max: config.limits.writer_batch_max,
            items_max: config.limits.batch_max,
            cancel_chunk_max: config.limits.cancel_chunk_max,
            timezone_max_candidates: config.timezone_max_candidates,
            // Long enough for the lookup to wait for a free worker and then take its own timeout.
            lookup_budget: twilio.is_some().then(|| config.provider.timeout * 3 + Duration::from_secs(5)),
        },
        board.clone(),
    )?;
    // Fail-stop: after a storage error the file's state is unknown; exit so that the supervisor
    // restarts the service and recovery starts from the last commit.
    let (writer, writer_thread) = writer::spawn(writer_core, Box::new(|_| std::process::exit(EXIT_STORAGE_FAILURE)));

    // Every job in the dial channel holds a slot, so it never holds more than the limit.
    let (dial_tx, dial_rx) = crossbeam_channel::bounded(config.max_concurrent_calls as usize);
    let recovered_in_flight: Vec<_> = recovered.in_flight.iter().map(|(_, call_id, _)| *call_id).collect();
    let (lookup_tx, lookup_rx) = crossbeam_channel::bounded(config.max_concurrent_calls as usize);
    let scheduler = Scheduler::recover(
        recovered,
        clock.clone(),
        writer.clone(),
        dial_tx,
        health.clone(),
        gauges.clone(),
        stats.clone(),
        SchedulerSettings {
            max_concurrent_calls: config.max_concurrent_calls,
            max_calls_per_second: config.max_calls_per_second,
            retry_release_max: config.limits.retry_release_max,
            callback_timeout_ms: config.callback_timeout.as_millis() as i64,
        },
    )
    .with_lookups(lookup_tx);
    let (stop_scheduler, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let scheduler_thread = std::thread::Builder::new().name("callmgr-scheduler".into()).spawn(move || scheduler.run(events_rx, stop_rx))?;

    let client = match twilio {
        None => ProviderClient::Webhook(WebhookClient::new(provider_url, config.provider.api_key.clone(), config.provider.timeout, config.workers)),
        Some(settings) => ProviderClient::Twilio(TwilioClient::new(settings, provider_url, public_base.clone(), config.provider.timeout, config.workers)),
    };
    let pool = Arc::new(Workers {
        writer: writer.clone(),
        client: Arc::new(client),
        stats: stats.clone(),
        clock: clock.clone(),
        board,
        health: health.clone(),
        events: worker_events,
        max_send_attempts: config.provider.max_send_attempts,
        throttle_budget: config.provider.throttle_budget,
    });
    // Dropping `stop_workers` wakes every worker from its waits.
    let (stop_workers, workers_stopping) = crossbeam_channel::bounded::<()>(0);
    let workers = dispatch::spawn_workers(config.workers, dial_rx, lookup_rx, pool, workers_stopping);
    if config.provider.twilio.is_some() && !recovered_in_flight.is_empty() {
        // Calls in flight at the last stop are looked up at once, not after their callback timeout.
        tracing::info!(calls = recovered_in_flight.len(), "asking the provider about the calls that were in flight at the last stop");
        let writer = writer.clone();
        std::thread::Builder::new().name("callmgr-reconcile".into()).spawn(move || {
            for chunk in recovered_in_flight.chunks(1000) {
                if !writer.send(writer::Command::ReconcileRecovered { call_ids: chunk.to_vec() }) {
                    break;
                }
            }
        })?;
    }

    let retention_status = Arc::new(retention::RetentionStatus::default());
    let (stop_retention, retention_stop_rx) = crossbeam_channel::bounded::<()>(1);
    let retention_thread = match config.retention.final_calls {
        Some(final_calls) => Some(retention::spawn(
            store.clone(),
            writer.clone(),
            live.clone(),
            clock.clone(),
            retention::RetentionSettings {
                final_calls,
                archive_dir: config.retention.archive_dir.clone(),
                check_interval: config.retention.check_interval,
                chunk_max: config.limits.purge_chunk_max,
                timezone_max_candidates: config.timezone_max_candidates,
            },
            retention_status.clone(),
            retention_stop_rx,
        )?),
        None => None,
    };

    let exports = Arc::new(tokio::sync::Semaphore::new(config.limits.exports_max));
    let disk = Arc::new(disk::DiskGuard::new(config.data_dir.clone(), config.limits.disk_free_min_mb));
    if let Err(error) = disk.check() {
        tracing::warn!(%error, "cannot read the data disk's free space");
    }
    let disk_watch = tokio::spawn(disk::watch(disk.clone(), DISK_CHECK_PERIOD));
    let state = AppState::new(api::AppParts {
        writer: writer.clone(),
        store: store.clone(),
        config: config.clone(),
        live: live.clone(),
        gauges: gauges.clone(),
        stats,
        clock: clock.clone(),
        public_base: public_base.clone(),
        provider_health: health,
        exports,
        retention: retention_status,
        backups: Arc::new(backup::BackupGate::default()),
        disk,
    });
    let app = api::router(state);
    let reloading = tokio::spawn(reload::apply(reloads, live, writer.clone(), config.clone()));
    gauges.ready.store(true, Ordering::Release);
    tracing::info!(address = %bound, callback_url = %callback_url, boot_ms = boot_started.elapsed().as_millis() as u64, "callmgr listening on http://{bound}");
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("ready")]);
    let watchdog = tokio::spawn(watchdog(gauges.clone(), writer.clone(), clock.clone()));

    let shutdown_timeout = config.limits.shutdown_timeout;
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<Instant>();
    let server = http::run(listener, app, http_settings, async move {
        shutdown.await;
        tracing::info!("stopping: no new connections; finishing requests in flight");
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        let _ = drain_tx.send(Instant::now());
    });
    let server = tokio::spawn(server);
    let stop_started = drain_rx.await.unwrap_or_else(|_| Instant::now());
    // The whole stop fits in the budget: requests in flight, then the threads, then exit.
    let deadline = stop_started + shutdown_timeout;
    match tokio::time::timeout_at(deadline.into(), server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("requests still open after {}; closing them", crate::config::fmt_duration(shutdown_timeout)),
    }
    watchdog.abort();
    disk_watch.abort();
    reloading.abort();
    gauges.ready.store(false, Ordering::Release);
    let _ = stop_scheduler.send(());
    // Retention ends its chunk (the writer is still there to answer) and stops; the workers wake
    // from any wait and stop.
    drop(stop_retention);
    drop(stop_workers);
    drop(writer);
    // Joined on a plain thread, not the runtime's blocking pool: the runtime must not wait for a
    // worker stuck in a provider request when it shuts down.
    let (joined_tx, joined_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new().name("callmgr-stop".into()).spawn(move || {
        if let Some(thread) = retention_thread {
            let _ = thread.join();
        }
        let _ = scheduler_thread.join();
        for worker in workers {
            let _ = worker.join();
        }
        let _ = writer_thread.join();
        let _ = joined_tx.send(());
    })?;
    if tokio::time::timeout_at(deadline.into(), joined_rx).await.is_err() {
        tracing::warn!(
            "a worker is still waiting on the provider at the end of limits.shutdown_timeout; stopping anyway: what it did not report stays PROCESSING and is resolved after the restart like a crash"
        );
    } else {
        tracing::info!("stopped cleanly");
    }
    Ok(())
}

/// Pings the systemd watchdog while the scheduler loops and the writer keeps up; a stuck thread
/// stops the pings and systemd restarts the service. A no-op without `WATCHDOG_USEC`.
async fn watchdog(gauges: Arc<Gauges>, writer: writer::WriterHandle, clock: SharedClock) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let mut ticker = tokio::time::interval(period / 3);
    loop {
        ticker.tick().await;
        let now = clock.now_ms();
        let scheduler_ok = gauges.scheduler_alive(now, SCHEDULER_STALL_MS);
        let writer_ok = writer.queued() == 0 || now - gauges.writer_heartbeat_ms() < WRITER_STALL_MS;
        if scheduler_ok && writer_ok {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(scheduler_ok, writer_ok, "a core thread is stuck: withholding the watchdog ping");
        }
    }
}
