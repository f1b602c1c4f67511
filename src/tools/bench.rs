//! `callmgr bench`: the load generator. It starts its own `callmgr serve` (and, end to end, a
//! zero-delay `callmgr mock-provider`) from this same binary with a temporary config and data
//! dir, unless `--url` points at a running service, then drives it over HTTP and reports rates
//! and latencies. Latency at a fixed rate is measured from each request's intended start, so a
//! stalled server is not hidden (no coordinated omission).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::protocol::api;
use crate::tools::client::{ApiClient, ClientOptions};

/// Token of the servers the bench starts itself.
const BENCH_TOKEN: &str = "bench-token-0123456789";

#[derive(Clone, Debug)]
pub struct InitiateArgs {
    pub url: Option<String>,
    pub token: String,
    pub connections: usize,
    /// Requests per second in total (open loop); `None` = as fast as the connections go.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Extra `KEY=VALUE` environment for the server the bench starts.
    pub server_env: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct EndToEndArgs {
    pub calls: u64,
    pub connections: usize,
    /// Numbers per bulk request.
    pub batch: usize,
    pub max_concurrent_calls: u32,
    pub workers: usize,
    /// Keep feeding for this long instead of stopping after `calls` (memory soak).
    pub duration: Option<Duration>,
    pub server_env: Vec<(String, String)>,
    /// Speak the Twilio REST API (signed status callbacks) instead of callmgr's webhook.
    pub twilio: bool,
}

/// Account and auth token of the mock provider in Twilio mode.
const BENCH_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
const BENCH_AUTH_TOKEN: &str = "bench-twilio-auth-token";

/// A child process that is killed when dropped.
struct Spawned {
    child: Child,
    pub address: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Runs `callmgr ARGS…` and waits for its `listening on http://ADDR` line.
fn spawn(args: &[&str], env: &[(String, String)]) -> Result<Spawned, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().map_err(|e| format!("starting {args:?}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(address) => Ok(Spawned { child, address }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{args:?} did not start listening"))
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("callmgr-bench-{}-{}", std::process::id(), jiff::Timestamp::now().as_nanosecond()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a config (and its retry file) in `dir` with the bench's token, a temporary data dir,
/// warn-level logs and these extra top-level keys; returns the config's path.
fn write_config(dir: &TempDir, keys: &str) -> Result<String, String> {
    let retry = dir.0.join("retry.yaml");
    std::fs::write(&retry, "defaults: {max_attempts: 3, retry_interval_minutes: 60}\n").map_err(|e| e.to_string())?;
    let config = dir.0.join("callmgr.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\ntokens: [{BENCH_TOKEN}]\nretry_config: {}\nlog: {{level: \"warn,callmgr::service=info\"}}\n{keys}",
        dir.0.join("data").display(),
        retry.display()
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    Ok(config.to_str().expect("utf-8 temp path").to_string())
}

/// Writes a bench config and starts `serve` on it; `provider` is the `provider:` mapping's body.
fn start_server(dir: &TempDir, provider: &str, max_concurrent_calls: u32, workers: usize, env: &[(String, String)]) -> Result<Spawned, String> {
    let config = write_config(
        dir,
        &format!(
            "max_concurrent_calls: {max_concurrent_calls}\nmax_calls_per_second: 1000000\nduplicate_window: 0s\ncallback_timeout: 10m\n\
             provider: {{{provider}, timeout: 10s}}\nworkers: {workers}\nlimits: {{writer_inbox_max: 65536}}\n"
        ),
    )?;
    spawn(&["serve", "--config", &config], env)
}

/// A client for one bench thread: generous timeouts, and enough idle connections for its share.
fn client(base: &str, token: &str) -> ApiClient {
    let options = ClientOptions { request_timeout: Duration::from_secs(30), idle_connections_per_host: 1024, ..ClientOptions::default() };
    ApiClient::with_options(base, token, &options)
}

fn create_campaign(client: &ApiClient) -> Result<u64, String> {
    client
        .create_campaign(&api::NewCampaign { name: "bench".into(), ..Default::default() })
        .map(|c| c.id)
        .map_err(|e| format!("creating the bench campaign: {e}"))
}

/// Resident memory of a process, from /proc, in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Latency percentiles of microsecond samples.
fn percentiles(samples: &mut [u64]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    format!("p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms", at(0.5), at(0.99), at(0.999), at(1.0))
}

/// Numbers unique across runs: a random block per run, then a counter.
fn number_source() -> Arc<AtomicU64> {
    let block = (jiff::Timestamp::now().as_nanosecond() as u64 / 1000) % 90_000;
    Arc::new(AtomicU64::new((10_000 + block) * 100_000))
}

fn next_number(source: &AtomicU64) -> String {
    format!("+1{:010}", 2_000_000_000 + source.fetch_add(1, Ordering::Relaxed) % 7_000_000_000)
}

pub fn initiate(args: &InitiateArgs) -> Result<String, String> {
    let dir = TempDir::new();
    let (server, base, token) = match &args.url {
        Some(url) => (None, url.trim_end_matches('/').to_string(), args.token.clone()),
        None => {
            let server = start_server(&dir, "url: \"http://127.0.0.1:9/unused\"", 100, 1, &args.server_env)?;
            let base = format!("http://{}", server.address);
            // Pause the campaign so nothing is dialled: this measures the durable accept path.
            (Some(server), base, BENCH_TOKEN.to_string())
        }
    };
    let campaign = create_campaign(&client(&base, &token))?;
    client(&base, &token).pause(campaign).map_err(|e| format!("pausing the bench campaign: {e}"))?;
    let numbers = number_source();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let statuses: Arc<Mutex<std::collections::BTreeMap<u16, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|i| {
            let (latencies, statuses, stop, numbers, base, token) =
                (latencies.clone(), statuses.clone(), stop.clone(), numbers.clone(), base.clone(), token.clone());
            let interval = args.rate.map(|r| Duration::from_secs_f64(args.connections as f64 / r));
            let (duration, connections) = (args.duration, args.connections);
            std::thread::spawn(move || {
                let client = client(&base, &token);
                let mut mine = Vec::new();
                let mut codes = std::collections::BTreeMap::new();
                // Spread the connections' schedules over one interval.
                let mut intended = started + interval.map(|iv| iv.mul_f64(i as f64 / connections as f64)).unwrap_or_default();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < duration {
                    if interval.is_some() {
                        let now = Instant::now();
                        if intended > now {
                            std::thread::sleep(intended - now);
                        }
                    } else {
                        intended = Instant::now();
                    }
                    let request = api::InitiateCall { phone_number: next_number(&numbers), campaign_id: campaign };
                    // 201 for an accepted call, the error's status otherwise (0: no answer).
                    let status = client.initiate_call(&request).map(|_| 201).unwrap_or_else(|e| e.status().unwrap_or(0));
                    mine.push(intended.elapsed().as_micros() as u64);
                    *codes.entry(status).or_insert(0u64) += 1;
                    if let Some(iv) = interval {
                        intended += iv;
                    }
                }
                latencies.lock().unwrap().extend(mine);
                let mut all = statuses.lock().unwrap();
                for (code, n) in codes {
                    *all.entry(code).or_insert(0) += n;
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut samples = std::mem::take(&mut *latencies.lock().unwrap());
    let total = samples.len();
    let created = statuses.lock().unwrap().get(&201).copied().unwrap_or(0);
    let report = format!(
        "initiate-call: {} connections, {}; {total} requests in {elapsed:.1} s = {:.0} req/s ({} acknowledged 201 = {:.0}/s durable); statuses {:?}; latency {}",
        args.connections,
        args.rate.map(|r| format!("open loop at {r:.0}/s")).unwrap_or_else(|| "closed loop".into()),
        total as f64 / elapsed,
        created,
        created as f64 / elapsed,
        statuses.lock().unwrap(),
        percentiles(&mut samples)
    );
    drop(server);
    Ok(report)
}

pub fn end_to_end(args: &EndToEndArgs) -> Result<String, String> {
    let dir = TempDir::new();
    let mut mock_args = vec!["mock-provider", "--listen", "127.0.0.1:0", "--delay-ms", "0", "--mix", "PICKED=100", "--token", BENCH_TOKEN, "--seed", "1"];
    if args.twilio {
        mock_args.extend(["--protocol", "twilio", "--account-sid", BENCH_ACCOUNT_SID, "--auth-token", BENCH_AUTH_TOKEN]);
    }
    let mock = spawn(&mock_args, &[])?;
    let provider = if args.twilio {
        format!(
            "kind: twilio, base_url: \"http://{}\", account_sid: {BENCH_ACCOUNT_SID}, auth_token: {BENCH_AUTH_TOKEN}, from: \"+15005550006\", twiml: \"<Response/>\"",
            mock.address
        )
    } else {
        format!("url: \"http://{}/api/initiate-call\"", mock.address)
    };
    let server = start_server(&dir, &provider, args.max_concurrent_calls, args.workers, &args.server_env)?;
    let base = format!("http://{}", server.address);
    let watcher = client(&base, BENCH_TOKEN);
    let campaign = create_campaign(&watcher)?;
    let numbers = number_source();
    let submitted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rss_start = rss_mib(server.pid());
    let started = Instant::now();
    let finals = |client: &ApiClient| -> Result<u64, String> {
        let stats = client.campaign(campaign).map_err(|e| e.to_string())?.stats.ok_or("the campaign answer has no stats")?;
        Ok(["PICKED", "FAILED", "CANCELLED"].iter().map(|k| stats.calls_by_status.get(*k).copied().unwrap_or(0)).sum())
    };
    // Feeders keep at most this many calls accepted but not final, so the run measures the
    // lifecycle rather than how deep a queue can grow.
    let backlog_max = (args.max_concurrent_calls as u64 * 4).max(args.batch as u64 * args.connections as u64 * 2);
    let done = Arc::new(AtomicU64::new(0));
    let feeders: Vec<_> = (0..args.connections)
        .map(|_| {
            let (numbers, submitted, stop, base, done) = (numbers.clone(), submitted.clone(), stop.clone(), base.clone(), done.clone());
            let (calls, batch, duration) = (args.calls, args.batch, args.duration);
            std::thread::spawn(move || -> Result<(), String> {
                let client = client(&base, BENCH_TOKEN);
                loop {
                    if stop.load(Ordering::Relaxed) || duration.is_some_and(|d| started.elapsed() >= d) {
                        return Ok(());
                    }
                    if submitted.load(Ordering::Relaxed).saturating_sub(done.load(Ordering::Relaxed)) > backlog_max {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    let claimed = submitted.fetch_add(batch as u64, Ordering::Relaxed);
                    if duration.is_none() && claimed >= calls {
                        submitted.fetch_sub(batch as u64, Ordering::Relaxed);
                        return Ok(());
                    }
                    let n = if duration.is_none() { (calls - claimed).min(batch as u64) as usize } else { batch };
                    let request = api::BulkInitiate { campaign_id: campaign, phone_numbers: (0..n).map(|_| next_number(&numbers)).collect() };
                    let accepted = client.bulk_initiate(&request).map_err(|e| format!("bulk submit: {e}"))?;
                    if accepted.failed != 0 {
                        return Err(format!("bulk submit: {} numbers refused, first {:?}", accepted.failed, accepted.failed_numbers.first()));
                    }
                    if (n as u64) < batch as u64 {
                        submitted.fetch_sub(batch as u64 - n as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut last_sample = Instant::now();
    let timeout = args.duration.unwrap_or(Duration::ZERO) + Duration::from_secs(600);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now_final = finals(&watcher)?;
        done.store(now_final, Ordering::Relaxed);
        if last_sample.elapsed() >= Duration::from_secs(10) {
            samples.push((started.elapsed().as_secs(), now_final, rss_mib(server.pid()).unwrap_or(0.0)));
            last_sample = Instant::now();
        }
        let feeding_over = match args.duration {
            Some(d) => started.elapsed() >= d,
            None => submitted.load(Ordering::Relaxed) >= args.calls,
        };
        if feeding_over && now_final >= submitted.load(Ordering::Relaxed) {
            break;
        }
        if started.elapsed() > timeout {
            stop.store(true, Ordering::Relaxed);
            return Err(format!("timed out with {now_final} of {} calls final", submitted.load(Ordering::Relaxed)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for f in feeders {
        f.join().map_err(|_| "a feeder panicked".to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let completed = finals(&watcher)?;
    let rss_end = rss_mib(server.pid());
    let soak: Vec<String> = samples.iter().map(|(t, n, rss)| format!("t={t}s final={n} rss={rss:.0}MiB")).collect();
    Ok(format!(
        "end to end: {completed} calls accepted, dialled, called back and final in {elapsed:.1} s = {:.0} completed calls/s \
         ({} protocol, {} slots, {} workers, bulk batches of {}, {} feeders, mock provider delay 0, mix PICKED=100); server RSS start {:.0} MiB, end {:.0} MiB{}",
        completed as f64 / elapsed,
        if args.twilio { "twilio" } else { "webhook" },
        args.max_concurrent_calls,
        args.workers,
        args.batch,
        args.connections,
        rss_start.unwrap_or(0.0),
        rss_end.unwrap_or(0.0),
        if soak.is_empty() { String::new() } else { format!("\n  samples: {}", soak.join("; ")) }
    ))
}

#[derive(Clone, Debug)]
pub struct BootArgs {
    /// RETRYING calls written into the store before the boots are timed.
    pub retrying: u64,
    pub quick_repair: bool,
}

/// Polls `/readyz` until 200; returns the time since `since`.
fn wait_ready(base: &str, since: Instant) -> Result<Duration, String> {
    let client = client(base, BENCH_TOKEN);
    let deadline = since + Duration::from_secs(600);
    loop {
        if let Ok(true) = client.ready() {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            return Err("not ready after 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Boot time and memory with `retrying` calls waiting for a retry: after a clean stop and after SIGKILL.
pub fn boot(args: &BootArgs) -> Result<String, String> {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let written = Instant::now();
    let mut seed_args = vec!["bench".to_string(), "seed".into(), "--data-dir".into(), data.display().to_string(), "--calls".into(), args.retrying.to_string()];
    seed_args.extend(["--shape".into(), "retrying".into()]);
    if args.quick_repair {
        seed_args.push("--quick-repair".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = std::process::Command::new(exe).args(&seed_args).status().map_err(|e| format!("bench seed: {e}"))?;
    if !status.success() {
        return Err(format!("bench seed failed: {status}"));
    }
    let written = written.elapsed();
    let file_mib = std::fs::metadata(data.join("callmgr.redb")).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0);
    let config = write_config(&dir, &format!("provider: {{url: \"http://127.0.0.1:9/unused\"}}\nstorage: {{quick_repair: {}}}\n", args.quick_repair))?;
    let mut lines = vec![format!(
        "boot with {} RETRYING calls (store {file_mib:.0} MiB, written in {:.1} s; quick_repair {}):",
        args.retrying,
        written.as_secs_f64(),
        args.quick_repair
    )];
    // Each start is labelled by how the previous process ended; it then ends the way the next label says.
    let runs = [("first start (file written cleanly)", false), ("after a clean stop (SIGTERM)", true), ("after SIGKILL (redb repairs the file)", false)];
    for (label, then_kill) in runs {
        let started = Instant::now();
        let mut server = spawn(&["serve", "--config", &config], &[])?;
        let ready = wait_ready(&format!("http://{}", server.address), started)?;
        let rss = rss_mib(server.pid()).unwrap_or(0.0);
        let metrics = client(&format!("http://{}", server.address), BENCH_TOKEN).metrics().map_err(|e| e.to_string())?;
        lines.push(format!("  {label}: /readyz 200 after {:.2} s, RSS {rss:.0} MiB, retrying {}", ready.as_secs_f64(), metrics.retrying));
        if then_kill {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        // Otherwise dropping it sends SIGTERM and waits: a clean stop.
    }
    Ok(lines.join("\n"))
}
