//! The sd_notify protocol as systemd sees it (see docs/operations.md): `serve` sends READY=1 only
//! after the store is opened and recovered and the API listens, WATCHDOG=1 periodically while
//! `WATCHDOG_USEC` is set, STOPPING=1 on SIGTERM, then exits 0. Without `NOTIFY_SOCKET` the
//! protocol is a no-op.
//!
//! The test plays systemd: it binds a Unix datagram socket in a temp dir and passes its path in
//! `NOTIFY_SOCKET`. The child's stdout is one end of a Unix stream pair, so the test can read it
//! without blocking: the service writes its `callmgr listening on` line before it sends READY=1,
//! so when READY=1 arrives that line must already be readable.

use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-1234";
/// How long any single step may take before the test fails (generous for a loaded CI machine).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// `WATCHDOG_USEC` given to the service: it pings every third of it (200 ms).
const WATCHDOG_USEC: u64 = 600_000;
/// Pings the test waits for after READY=1.
const WATCHDOG_PINGS_MIN: usize = 3;
/// A bound on the number of notify messages read, whatever happens.
const NOTIFY_MESSAGES_MAX: usize = 10_000;

/// Kills the service (SIGKILL) if the test fails before it exits by itself.
struct Service {
    child: Child,
    stdout: UnixStream,
    /// Everything the service printed so far.
    output: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Service {
    fn start(config: &Path, notify_socket: Option<&Path>) -> Service {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        ours.set_nonblocking(true).expect("non-blocking stdout");
        let mut command = Command::new(env!("CARGO_BIN_EXE_callmgr"));
        // A clean environment: no inherited NOTIFY_SOCKET, RUST_LOG or config overrides.
        command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        if let Some(path) = notify_socket {
            command.env("NOTIFY_SOCKET", path).env("WATCHDOG_USEC", WATCHDOG_USEC.to_string());
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("callmgr starts");
        Service { child, stdout: ours, output: String::new() }
    }

    /// Appends whatever the service has written so far, without waiting for more.
    fn drain_output(&mut self) {
        let mut buffer = [0u8; 8192];
        loop {
            match self.stdout.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => self.output.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("reading the service's stdout: {e}"),
            }
        }
    }

    /// The address from the `callmgr listening on http://ADDR` line, once it is printed.
    fn listening_address(&mut self) -> Option<String> {
        self.drain_output();
        let line = self.output.lines().find(|line| line.contains("callmgr listening on http://"))?;
        let address = line.split("callmgr listening on http://").nth(1)?.split_whitespace().next()?;
        Some(address.to_string())
    }

    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(address) = self.listening_address() {
                return address;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("callmgr exited with {status} before listening; output:\n{}", self.output);
            }
            assert!(Instant::now() < deadline, "callmgr did not listen within {STEP_TIMEOUT:?}; output:\n{}", self.output);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&mut self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            self.drain_output();
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.drain_output();
                return status;
            }
            assert!(Instant::now() < deadline, "callmgr did not exit within {STEP_TIMEOUT:?} of SIGTERM; output:\n{}", self.output);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let retry = dir.join("retry.yaml");
    std::fs::write(&retry, "defaults: {max_attempts: 3}\n").unwrap();
    let config = dir.join("callmgr.yaml");
    // The mock answers after 30 s, so the call below is still in flight when the service stops
    // and the second start has something to recover.
    let text = format!(
        "listen: 127.0.0.1:0\n\
         data_dir: {data}\n\
         tokens: [{TOKEN}]\n\
         provider: {{url: builtin-mock, mock: {{delay: 30s..40s}}}}\n\
         retry_config: {retry}\n\
         limits: {{shutdown_timeout: 3s}}\n\
         log: {{level: info, format: text}}\n",
        data = dir.join("data").display(),
        retry = retry.display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into()
}

fn post(address: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let mut response =
        agent().post(format!("http://{address}{path}")).header("X-Auth-Token", TOKEN).content_type("application/json").send(body.to_string()).expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    assert_eq!(status, 201, "POST {path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

fn readyz_status(address: &str) -> u16 {
    agent().get(format!("http://{address}/readyz")).call().expect("GET /readyz").status().as_u16()
}

/// Stores one campaign with one call in flight, with no notify socket given (the no-op path).
fn seed_store(config: &Path) {
    let mut service = Service::start(config, None);
    let address = service.wait_listening();
    let campaign = post(&address, "/api/v1/campaigns", serde_json::json!({"name": "notify test"}));
    let campaign_id = campaign["id"].as_u64().expect("campaign id");
    post(&address, "/api/v1/initiate-call", serde_json::json!({"phone_number": "+14155550123", "campaign_id": campaign_id}));
    service.terminate();
    let status = service.wait_exit();
    assert!(status.success(), "serve without NOTIFY_SOCKET exited with {status}; output:\n{}", service.output);
}

#[test]
fn serve_notifies_ready_after_recovery_pings_the_watchdog_and_notifies_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    seed_store(&config);

    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut service = Service::start(&config, Some(&socket_path));

    // Every notify message line, in order of arrival.
    let mut messages: Vec<String> = Vec::new();
    let mut address: Option<String> = None;
    let mut terminated = false;
    let mut step_deadline = Instant::now() + STEP_TIMEOUT;
    let mut buffer = [0u8; 4096];
    while messages.len() < NOTIFY_MESSAGES_MAX {
        assert!(Instant::now() < step_deadline, "timed out waiting for the next notify step; messages so far: {messages:?}; output:\n{}", service.output);
        service.drain_output();
        let text = match socket.recv(&mut buffer) {
            Ok(n) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if let Ok(Some(status)) = service.child.try_wait() {
                    panic!("callmgr exited with {status} before STOPPING=1; messages: {messages:?}; output:\n{}", service.output);
                }
                continue;
            }
            Err(e) => panic!("reading the notify socket: {e}"),
        };
        for line in text.lines() {
            if line == "READY=1" {
                // The service wrote these lines before sending READY=1, so they are readable now.
                assert!(address.is_none(), "READY=1 sent twice: {messages:?}");
                assert!(messages.is_empty(), "notify messages before READY=1: {messages:?}");
                let listening = service.listening_address();
                assert!(listening.is_some(), "READY=1 arrived before the `callmgr listening on` line; output:\n{}", service.output);
                let recovered = service.output.lines().find(|l| l.contains("store opened and recovered")).unwrap_or_default().to_string();
                // The seeded call was queued or already dialled when the first run stopped.
                assert!(
                    recovered.contains("campaigns=1") && (recovered.contains("queued=1") || recovered.contains("in_flight=1")),
                    "READY=1 arrived before the recovery of the seeded call was logged: {recovered:?}; output:\n{}",
                    service.output
                );
                let address = address.insert(listening.unwrap());
                assert_eq!(readyz_status(address), 200, "/readyz is not 200 right after READY=1");
                step_deadline = Instant::now() + STEP_TIMEOUT;
            } else if line == "WATCHDOG=1" {
                assert!(address.is_some(), "WATCHDOG=1 before READY=1: {messages:?}");
            } else if line == "STOPPING=1" {
                assert!(terminated, "STOPPING=1 before SIGTERM: {messages:?}");
            }
            messages.push(line.to_string());
        }
        if messages.iter().any(|m| m == "STOPPING=1") {
            break;
        }
        let pings = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
        if !terminated && pings >= WATCHDOG_PINGS_MIN {
            service.terminate();
            terminated = true;
            step_deadline = Instant::now() + STEP_TIMEOUT;
        }
    }
    assert!(messages.iter().any(|m| m == "STOPPING=1"), "no STOPPING=1 within {NOTIFY_MESSAGES_MAX} messages: {messages:?}");

    let status = service.wait_exit();
    assert!(status.success(), "serve exited with {status} after SIGTERM; output:\n{}", service.output);
    assert!(service.output.contains("stopped cleanly"), "no clean stop logged; output:\n{}", service.output);
    let ready_at = messages.iter().position(|m| m == "READY=1").expect("READY=1 sent");
    let stopping_at = messages.iter().position(|m| m == "STOPPING=1").unwrap();
    let pings = messages[ready_at..stopping_at].iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= WATCHDOG_PINGS_MIN, "only {pings} WATCHDOG=1 between READY=1 and STOPPING=1: {messages:?}");
}
