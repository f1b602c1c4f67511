//! `serve`: opens the store, rebuilds the in-memory state from it, starts the threads, and only
//! then opens the API; on shutdown, drains in a fixed order within a time budget.
//!
//! Start order: store → recovery scan → writer → scheduler (recovered) → workers → retention
//! (when configured) → listener → ready (`/readyz` 200, systemd READY=1).
//! Stop order: stop accepting and finish in-flight requests → scheduler stops dispatching (drops
//! the dial channel) → retention finishes its chunk → workers finish their current request and
//! report it → the last writer handle drops → the writer commits what is queued and exits.

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
use dispatch::ProviderClient;
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

/// Runs the service until `shutdown` resolves. `provider_url` is where dial requests go (the
/// configured endpoint, or the address of a mock provider the caller started).
pub async fn serve(
    config: Config,
    rules: RetryRules,
    clock: SharedClock,
    provider_url: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let boot_started = Instant::now();
    for key in rules.ignored_keys() {
        tracing::warn!(file = %config.retry_config.display(), key, "retry config key is accepted for compatibility and ignored");
    }
    if config.uses_dev_token() {
        tracing::warn!("the development token `dev-token-12345` is accepted: set your own tokens before exposing this service");
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

    let gauges = Arc::new(Gauges::new(config.max_concurrent_calls));
    let stats = Arc::new(LiveStats::new(clock.now_ms()));
    let rules = Arc::new(rules);
    let (events_tx, events_rx) = crossbeam_channel::bounded(config.limits.event_queue_max);
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
        },
    )?;
    // Fail-stop: after a storage error the file's state is unknown; exit so that the supervisor
    // restarts the service and recovery starts from the last commit.
    let (writer, writer_thread) = writer::spawn(writer_core, Box::new(|_| std::process::exit(EXIT_STORAGE_FAILURE)));

    // Every job in the dial channel holds a slot, so it never holds more than the limit.
    let (dial_tx, dial_rx) = crossbeam_channel::bounded(config.max_concurrent_calls as usize);
    let scheduler = Scheduler::recover(
        recovered,
        clock.clone(),
        writer.clone(),
        dial_tx,
        gauges.clone(),
        stats.clone(),
        SchedulerSettings {
            max_concurrent_calls: config.max_concurrent_calls,
            max_calls_per_second: config.max_calls_per_second,
            retry_release_max: config.limits.retry_release_max,
        },
    );
    let (stop_scheduler, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let scheduler_thread = std::thread::Builder::new().name("callmgr-scheduler".into()).spawn(move || scheduler.run(events_rx, stop_rx))?;

    let client = Arc::new(ProviderClient::new(
        provider_url,
        config.provider.api_key.clone(),
        config.provider.timeout,
        config.provider.max_send_attempts,
        config.workers,
    ));
    let workers = dispatch::spawn_workers(config.workers, dial_rx, writer.clone(), client, stats.clone(), clock.clone());

    let retention_status = Arc::new(retention::RetentionStatus::default());
    let (stop_retention, retention_stop_rx) = crossbeam_channel::bounded::<()>(1);
    let retention_thread = match config.retention.final_calls {
        Some(final_calls) => Some(retention::spawn(
            store.clone(),
            writer.clone(),
            rules.clone(),
            clock.clone(),
            retention::RetentionSettings {
                final_calls,
                archive_dir: config.retention.archive_dir.clone(),
                check_interval: config.retention.check_interval,
                chunk_max: config.limits.purge_chunk_max,
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
    let state = AppState {
        writer: writer.clone(),
        store: store.clone(),
        config: config.clone(),
        rules: rules.clone(),
        gauges: gauges.clone(),
        stats,
        clock: clock.clone(),
        exports,
        retention: retention_status,
        backups: Arc::new(backup::BackupGate::default()),
        disk,
    };
    let app = api::router(state);
    gauges.ready.store(true, Ordering::Release);
    tracing::info!(address = %bound, callback_url = %callback_url, boot_ms = boot_started.elapsed().as_millis() as u64, "callmgr listening on http://{bound}");
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("ready")]);
    let watchdog = tokio::spawn(watchdog(gauges.clone(), writer.clone(), clock.clone()));

    let shutdown_timeout = config.limits.shutdown_timeout;
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = http::run(listener, app, http_settings, async move {
        shutdown.await;
        tracing::info!("stopping: no new connections; finishing requests in flight");
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        let _ = drain_tx.send(());
    });
    let server = tokio::spawn(server);
    let _ = drain_rx.await;
    // In-flight requests get the whole budget; whatever is left goes to the threads below.
    let deadline = Instant::now() + shutdown_timeout;
    match tokio::time::timeout(shutdown_timeout, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("requests still open after {}; closing them", crate::config::fmt_duration(shutdown_timeout)),
    }
    watchdog.abort();
    disk_watch.abort();
    gauges.ready.store(false, Ordering::Release);
    let _ = stop_scheduler.send(());
    // Retention ends its chunk (the writer is still there to answer) and stops.
    drop(stop_retention);
    drop(writer);
    let joined = tokio::task::spawn_blocking(move || {
        if let Some(thread) = retention_thread {
            let _ = thread.join();
        }
        let _ = scheduler_thread.join();
        for worker in workers {
            let _ = worker.join();
        }
        let _ = writer_thread.join();
    });
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    if tokio::time::timeout(left, joined).await.is_err() {
        tracing::warn!(
            "workers still waiting on the provider at the end of the shutdown budget; their calls stay PROCESSING and resolve by callback or timeout"
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
