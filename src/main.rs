//! The `callmgr` binary: parse the command line, run the subcommand, map the error to an exit
//! code: 0 success, 1 failure, 2 bad configuration or usage, 3 a service that cannot start (the
//! store held, a directory it cannot write, the address in use), 70 a storage failure while
//! serving (`service::EXIT_STORAGE_FAILURE`; systemd restarts on it).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use callmgr::cli::{BackupCliArgs, BenchCommand, Cli, Command, ImportCliArgs, MockProviderArgs, RetryPlanCliArgs};
use callmgr::config::{self, Config, LogFormat};
use callmgr::core::clock::SystemClock;
use callmgr::core::retry::RetryRules;
use callmgr::tools::mock_provider::{self, MockProvider, MockSettings};

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
    /// A runtime failure: exit 1, or 3 when the service could not start (a held store, a
    /// directory it cannot write, a port in use), which the systemd unit does not restart on.
    fn runtime(error: anyhow::Error) -> Failure {
        match error.downcast_ref::<callmgr::service::startup::StartupError>() {
            Some(startup) => Failure { code: callmgr::service::startup::EXIT_STARTUP, message: startup.to_string() },
            None => Failure { code: 1, message: format!("{error:#}") },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args.config),
        Command::CheckConfig { config, avg_call_seconds, phone, campaign } => check_config(&config.config, avg_call_seconds, &phone, campaign),
        Command::MockProvider(args) => mock_provider(args),
        Command::RetryPlan(args) => retry_plan(args),
        Command::Bench(command) => bench(command),
        Command::Tui(args) => {
            callmgr::tools::tui::run(callmgr::tools::tui::TuiArgs { url: args.client.url, token: args.client.token, interval: args.interval })
                .map_err(|e| Failure { code: e.exit_code(), message: e.to_string() })
        }
        Command::Import(args) => import(args),
        Command::Backup(args) => backup(args),
        Command::Restore(args) => restore(&args.file, &args.data_dir),
        Command::Compact(args) => compact(&args.data_dir),
        Command::Completions { shell } => {
            callmgr::tools::manual::write_completions(shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out_dir } => match callmgr::tools::manual::write_man_pages(&out_dir) {
            Ok(written) => {
                println!("wrote {} manual pages to {}", written.len(), out_dir.display());
                Ok(())
            }
            Err(e) => Err(Failure { code: 1, message: format!("cannot write the manual pages to {}: {e}", out_dir.display()) }),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("callmgr: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The service configuration and the retry rules it names, both validated.
fn load(path: &std::path::Path) -> Result<(Config, RetryRules), Failure> {
    let working_dir = config::process_working_dir().map_err(|e| Failure::runtime(anyhow::anyhow!("cannot read the working directory: {e}")))?;
    let config = config::load(path, &config::process_env(), &working_dir).map_err(|e| Failure::usage(e.to_string()))?;
    let mut rules = RetryRules::load(&config.retry_config).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(n) = config.retry_max_attempts_override {
        rules = rules.with_default_max_attempts(n);
    }
    Ok((config, rules))
}

/// `serve` passes `log.level` (which `RUST_LOG` may have set, checked with the rest of the
/// configuration); `mock-provider` reads no configuration and takes `RUST_LOG` as it is.
fn init_logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("callmgr-async").build().map_err(|e| Failure::runtime(e.into()))
}

/// Resolves on SIGTERM or SIGINT.
/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called (inside the
/// runtime, before anything starts), not when the future is first polled: a SIGTERM that
/// arrives while the service is still starting must drain it, not kill it.
fn termination() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// On each SIGHUP, reads the configuration and the retry rules again and, when both validate,
/// hands them to the service; a file that does not validate is logged and the old settings stay.
/// The handler is installed now, before anything starts (SIGHUP's default action would kill us).
fn reload_on_hangup(path: std::path::PathBuf) -> tokio::sync::mpsc::Receiver<callmgr::service::reload::Reload> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut hangups = signal(SignalKind::hangup()).expect("SIGHUP handler installs");
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            let loaded = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || load(&path)).await
            };
            match loaded {
                Ok(Ok((config, rules))) => {
                    tracing::info!(config = %path.display(), "SIGHUP: the configuration and the retry rules validate; applying the retry rules and tokens");
                    if tx.send(callmgr::service::reload::Reload { config, rules }).await.is_err() {
                        return;
                    }
                }
                Ok(Err(failure)) => tracing::error!(problem = %failure.message, "SIGHUP: reload refused, the old settings stay"),
                Err(error) => tracing::error!(%error, "SIGHUP: reading the files failed, the old settings stay"),
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
    });
    rx
}

fn serve(path: &std::path::Path) -> Result<(), Failure> {
    let (config, rules) = load(path)?;
    init_logging(config.log_level.env_filter(), config.log_format);
    let clock = Arc::new(SystemClock);
    let runtime = runtime()?;
    let result = runtime
        .block_on(async move {
            let shutdown = termination();
            let reloads = reload_on_hangup(path.to_path_buf());
            let provider_url = match &config.provider.target {
                config::ProviderTarget::Url(url) => url.clone(),
                config::ProviderTarget::BuiltinMock => start_builtin_mock(&config).await?,
            };
            callmgr::service::serve(config, rules, clock, provider_url, shutdown, reloads).await
        })
        .map_err(Failure::runtime);
    // `serve` kept its stop within limits.shutdown_timeout; nothing left on the runtime may extend it.
    runtime.shutdown_background();
    result
}

/// `provider.url: builtin-mock`: the mock provider in this process (the first-run demo), speaking
/// the configured protocol. Returns where the service reaches it.
async fn start_builtin_mock(config: &Config) -> anyhow::Result<String> {
    let protocol = match &config.provider.twilio {
        None => mock_provider::Protocol::Webhook,
        Some(twilio) => mock_provider::Protocol::Twilio { account_sid: twilio.account_sid.clone(), auth_token: twilio.auth_token.clone() },
    };
    // The mock's webhook callbacks carry a token allowed to post them.
    let callback_token = config
        .tokens
        .iter()
        .find(|t| t.role == config::Role::Provider)
        .or_else(|| config.tokens.iter().find(|t| t.role == config::Role::Admin))
        .map(|t| t.secret.clone())
        .unwrap_or_default();
    let settings = MockSettings {
        delay: config.provider.mock_delay,
        mix: config.provider.mock_mix.clone(),
        seed: config.provider.mock_seed.unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64),
        protocol,
        token: callback_token,
        callback_secret: config.provider.callback_secret.clone(),
        callback_url: None,
    };
    let twilio = config.provider.twilio.is_some();
    let address = MockProvider::start(settings).serve_in_process().await?;
    tracing::warn!(mock = %address, protocol = if twilio { "twilio" } else { "webhook" }, "provider.url is builtin-mock: calls go to an in-process mock provider and NO REAL CALLS ARE PLACED");
    Ok(if twilio { format!("http://{address}") } else { format!("http://{address}/api/initiate-call") })
}

fn check_config(path: &std::path::Path, avg_call_seconds: f64, phones: &[String], campaign: u64) -> Result<(), Failure> {
    let (config, rules) = load(path)?;
    if !(avg_call_seconds.is_finite() && avg_call_seconds > 0.0) {
        return Err(Failure::usage("--avg-call-seconds must be above 0"));
    }
    if let Some(problem) = config.callback_timeout_problem() {
        return Err(Failure::usage(problem));
    }
    print!("{}", config.describe());
    println!("retry rules ({}):\n{}", config.retry_config.display(), rules.describe());
    for key in rules.ignored_keys() {
        println!("warning: retry config key `{key}` is accepted for compatibility and ignored");
    }
    if config.uses_dev_token() {
        println!("warning: the development token dev-token-12345 is accepted; set your own tokens for production");
    }
    for raw in phones {
        let phone = callmgr::core::phone::parse(raw, config.default_region.as_ref(), config.phone_validation)
            .map_err(|e| Failure::usage(format!("--phone `{raw}`: {e}")))?;
        print!("{}", callmgr::tools::retry_plan::describe_number(&phone, campaign, &rules, config.timezone_max_candidates, jiff::Timestamp::now()));
    }
    let slots = config.max_concurrent_calls as f64;
    let by_slots = slots * 86_400.0 / avg_call_seconds;
    let by_pace = config.max_calls_per_second * 86_400.0;
    println!(
        "capacity estimate: {slots} slots × 86400 s / {avg_call_seconds} s per call ≈ {:.0} calls/day (Little's law); \
         pacing allows {:.0}/day; the lower, {:.0}/day, applies. 500,000/day needs ≥ {:.0} slots at this call length.",
        by_slots,
        by_pace,
        by_slots.min(by_pace),
        (500_000.0 * avg_call_seconds / 86_400.0).ceil()
    );
    println!("ok");
    Ok(())
}

fn mock_provider(args: MockProviderArgs) -> Result<(), Failure> {
    init_logging(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")), LogFormat::Text);
    // Bare numbers in --delay-ms are milliseconds.
    let with_unit = |part: &str| if part.trim().chars().all(|c| c.is_ascii_digit()) { format!("{}ms", part.trim()) } else { part.trim().to_string() };
    let delay_text = match args.delay_ms.split_once("..") {
        Some((a, b)) => format!("{}..{}", with_unit(a), with_unit(b)),
        None => with_unit(&args.delay_ms),
    };
    let protocol = match args.protocol.as_str() {
        "twilio" => mock_provider::Protocol::Twilio {
            account_sid: args.account_sid,
            auth_token: args.auth_token.ok_or_else(|| Failure::usage("--auth-token is required with --protocol twilio"))?,
        },
        _ => mock_provider::Protocol::Webhook,
    };
    let settings = MockSettings {
        delay: mock_provider::parse_delay(&delay_text).map_err(|e| Failure::usage(format!("--delay-ms: {e}")))?,
        mix: mock_provider::parse_mix(&args.mix).map_err(|e| Failure::usage(format!("--mix: {e}")))?,
        seed: args.seed.unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64),
        protocol,
        token: args.token,
        callback_secret: args.callback_secret,
        callback_url: args.callback_url,
    };
    runtime()?.block_on(async move {
        let shutdown = termination();
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| Failure::runtime(anyhow::anyhow!("listening on {}: {e}", args.listen)))?;
        let address = listener.local_addr().map_err(|e| Failure::runtime(e.into()))?;
        tracing::info!(seed = settings.seed, protocol = settings.protocol.name(), delay = %delay_text, mix = %args.mix, "mock provider listening on http://{address}");
        let mock = MockProvider::start(settings);
        axum::serve(listener, mock.router()).with_graceful_shutdown(shutdown).await.map_err(|e| Failure::runtime(e.into()))
    })
}

fn retry_plan(args: RetryPlanCliArgs) -> Result<(), Failure> {
    let (config, rules) = load(&args.config.config)?;
    let at: jiff::Timestamp = args.at.parse().map_err(|e| Failure::usage(format!("--at `{}` is not an RFC 3339 instant: {e}", args.at)))?;
    let outcome = callmgr::core::model::Outcome::parse(&args.status.to_ascii_uppercase())
        .ok_or_else(|| Failure::usage(format!("--status `{}` must be PICKED, DISCONNECTED, RNR or FAILED", args.status)))?;
    if args.attempt == 0 {
        return Err(Failure::usage("--attempt starts at 1"));
    }
    let phone_number = args
        .phone
        .as_deref()
        .map(|p| callmgr::core::phone::normalize_lenient(p).ok_or_else(|| Failure::usage(format!("--phone `{p}` is not a phone number"))))
        .transpose()?;
    let plan = callmgr::tools::retry_plan::RetryPlanArgs {
        campaign_id: args.campaign,
        at,
        outcome,
        attempt: args.attempt,
        phone_number,
        timezone: args.timezone,
        max_candidates: config.timezone_max_candidates,
        url: args.client.url,
        token: args.client.token,
    };
    let text = callmgr::tools::retry_plan::run(&plan, &rules).map_err(Failure::usage)?;
    print!("{text}");
    Ok(())
}

/// `callmgr import`: the summary goes to stdout from the importer; errors map to 1 (rows
/// rejected, service failure) or 2 (usage: file, campaign, token, service unreachable).
fn import(args: ImportCliArgs) -> Result<(), Failure> {
    use callmgr::tools::import::{Destination, ImportArgs};
    let destination = match (args.dnc, args.campaign) {
        (true, campaign) => Destination::DoNotCall { campaign, reason: args.reason },
        (false, Some(campaign)) => Destination::Campaign(campaign),
        (false, None) => return Err(Failure::usage("--campaign is required unless --dnc is given")),
    };
    let args = ImportArgs {
        file: args.file,
        destination,
        column: args.column,
        timezone_column: args.timezone_column,
        delimiter: args.delimiter,
        region: args.region,
        rejects: args.rejects,
        batch: args.batch,
        url: args.client.url,
        token: args.client.token,
    };
    callmgr::tools::import::run(args).map(drop).map_err(|e| Failure { code: e.exit_code(), message: e.to_string() })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `callmgr backup`: through the service, or directly from a stopped store with --data-dir.
fn backup(args: BackupCliArgs) -> Result<(), Failure> {
    use callmgr::service::backup;
    let report = match &args.data_dir {
        Some(data_dir) => {
            let out = args.out.as_deref().ok_or_else(|| Failure::usage("--out FILE is required with --data-dir"))?;
            let report = backup::offline(data_dir, out, now_ms()).map_err(|e| Failure::runtime(e.into()))?;
            callmgr::protocol::api::Backup {
                path: report.path.display().to_string(),
                size_bytes: report.size_bytes,
                calls: report.calls,
                campaigns: report.campaigns,
                entries: report.entries,
                snapshot_at: callmgr::core::model::rfc3339(report.snapshot_at),
                duration_ms: report.duration_ms,
            }
        }
        None => {
            // A backup of a large store takes minutes; the client waits for it.
            let options = callmgr::tools::client::ClientOptions { request_timeout: std::time::Duration::from_secs(24 * 3600), ..Default::default() };
            let client = callmgr::tools::client::ApiClient::with_options(&args.url, &args.token, &options);
            let request = callmgr::protocol::api::BackupRequest { out: args.out.as_ref().map(|p| p.display().to_string()) };
            client.backup(&request).map_err(|e| Failure::runtime(e.into()))?
        }
    };
    println!(
        "backup written: {} ({} bytes, {} calls, {} campaigns, {} entries; snapshot at {}; {} ms)",
        report.path, report.size_bytes, report.calls, report.campaigns, report.entries, report.snapshot_at, report.duration_ms
    );
    Ok(())
}

/// `callmgr restore FILE --data-dir DIR`: verify, print what the file holds, put it in place.
fn restore(file: &std::path::Path, data_dir: &std::path::Path) -> Result<(), Failure> {
    let report =
        callmgr::service::backup::restore(file, data_dir, now_ms()).map_err(|e| Failure::runtime(anyhow::anyhow!("restore refused, nothing changed: {e}")))?;
    let found = &report.found;
    let by_status: Vec<String> = found.calls_by_status.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{}={n}", s.as_str())).collect();
    println!(
        "checked {}: schema {}, {} campaigns, {} numbers, {} calls ({}), {} purged earlier, {} dead letters, {} do-not-call entries, {} entries; every record decodes and every index agrees",
        file.display(),
        found.schema_version,
        found.campaigns,
        found.numbers,
        found.calls,
        if by_status.is_empty() { "none".to_string() } else { by_status.join(" ") },
        found.purged_calls,
        found.dead_letters,
        found.dnc_entries,
        found.entries
    );
    match &report.replaced {
        Some(replaced) => println!("restored to {}; the store it replaced is kept as {}", report.installed.display(), replaced.display()),
        None => println!("restored to {} (there was no store before)", report.installed.display()),
    }
    Ok(())
}

/// `callmgr compact --data-dir DIR`.
fn compact(data_dir: &std::path::Path) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let (before, after) = callmgr::service::backup::compact(data_dir).map_err(|e| Failure::runtime(e.into()))?;
    println!(
        "compacted {}: {before} bytes before, {after} bytes after ({} bytes returned) in {:.1} s",
        callmgr::service::store::copy::store_file(data_dir).display(),
        before.saturating_sub(after),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(command: BenchCommand) -> Result<(), Failure> {
    let duration = |text: &str| config::parse_duration(text).map_err(|e| Failure::usage(format!("--duration: {e}")));
    let report = match command {
        BenchCommand::Initiate { url, token, connections, rate, duration: d } => {
            let args =
                callmgr::tools::bench::InitiateArgs { url, token, connections: connections.max(1), rate, duration: duration(&d)?, server_env: Vec::new() };
            callmgr::tools::bench::initiate(&args)
        }
        BenchCommand::E2e { calls, duration: d, connections, batch, max_concurrent_calls, workers, protocol } => {
            let args = callmgr::tools::bench::EndToEndArgs {
                calls,
                connections: connections.max(1),
                batch: batch.max(1),
                max_concurrent_calls,
                workers,
                duration: d.as_deref().map(duration).transpose()?,
                server_env: Vec::new(),
                twilio: protocol == "twilio",
            };
            callmgr::tools::bench::end_to_end(&args)
        }
        BenchCommand::Seed { data_dir, calls, shape, days, quick_repair } => {
            let shape = match shape.as_str() {
                "retrying" => callmgr::service::seed::SeedShape::Retrying,
                "finished" => callmgr::service::seed::SeedShape::Finished { days },
                other => return Err(Failure::usage(format!("--shape `{other}` must be `retrying` or `finished`"))),
            };
            let storage = config::StorageConfig { quick_repair, cache_size_bytes: 256 << 20 };
            let now = jiff::Timestamp::now().as_millisecond();
            callmgr::service::seed::seed(&data_dir, &storage, calls, shape, now)
                .map(|r| {
                    format!(
                        "seeded {} calls in {:.1} s; store {} bytes ({:.0} bytes per call)",
                        r.calls,
                        r.seconds,
                        r.file_bytes,
                        r.file_bytes as f64 / r.calls.max(1) as f64
                    )
                })
                .map_err(|e| e.to_string())
        }
        BenchCommand::Boot { retrying, quick_repair } => callmgr::tools::bench::boot(&callmgr::tools::bench::BootArgs { retrying, quick_repair }),
    };
    println!("{}", report.map_err(|e| Failure::runtime(anyhow::anyhow!(e)))?);
    Ok(())
}
