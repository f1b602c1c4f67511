//! `callmgr tui` as an operator sees it: the real binary in a tmux pane against a live
//! `callmgr serve`, read back with `tmux capture-pane`. Every wait polls the screen with a
//! deadline. tmux must be installed (`.ci/run` installs it); without it these tests fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::{Options, Server, TOKEN};
use serde_json::json;

/// Long enough for a debug build to start and make its first polls on a busy 2-core machine.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);
const PANE_WIDTH: u16 = 120;
const PANE_HEIGHT: u16 = 40;

/// Fails the test at once, with the fix, when tmux is missing.
fn require_tmux() {
    match Command::new("tmux").arg("-V").output() {
        Ok(output) if output.status.success() => {}
        _ => panic!("tmux is not installed: the dashboard tests run `callmgr tui` in a tmux pane (apt-get install -y tmux)"),
    }
}

/// A tmux server of its own (`-L`), so tests never touch the user's sessions or each other;
/// dropping it kills the server and with it the dashboard, also when a test fails.
struct Tmux {
    socket: String,
    session: String,
    /// Where the wrapper shell writes the dashboard's exit status.
    exit_file: PathBuf,
}

impl Tmux {
    /// Starts `command` in a detached `PANE_WIDTH`x`PANE_HEIGHT` pane. A shell wraps it and
    /// writes its exit status to a file: tmux 3.3 can leave an exited pane process unreaped
    /// (`pane_dead_status` stays empty) on a busy machine, so its own record is not reliable.
    /// The pane stays after the exit, so the screen left behind can be read.
    fn start(name: &str, dir: &Path, command: &[String]) -> Tmux {
        let config = dir.join("tmux.conf");
        std::fs::write(&config, "set-option -g -w remain-on-exit on\nset-option -g status off\n").expect("tmux config written");
        let exit_file = dir.join(format!("{name}.exit"));
        let tmux = Tmux { socket: format!("callmgr-test-{}-{name}", std::process::id()), session: name.to_string(), exit_file };
        let script = format!("\"$0\" \"$@\"; echo $? > '{}'", tmux.exit_file.display());
        let mut args: Vec<String> = ["-f", config.to_str().expect("utf-8 path"), "new-session", "-d", "-s", name, "-x"].iter().map(|s| s.to_string()).collect();
        args.extend([PANE_WIDTH.to_string(), "-y".into(), PANE_HEIGHT.to_string(), "sh".into(), "-c".into(), script]);
        args.extend(command.iter().cloned());
        let output = tmux.run(&args);
        assert!(output.status.success(), "tmux new-session failed: {}", String::from_utf8_lossy(&output.stderr));
        tmux
    }

    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", &self.session]).stdout).into_owned()
    }

    fn send_key(&self, key: &str) {
        let output = self.run(&["send-keys", "-t", &self.session, key]);
        assert!(output.status.success(), "tmux send-keys {key}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// The dashboard's exit status once the wrapper has written all of it.
    fn exit_status(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.exit_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_string())
    }

    /// Polls the screen until `condition` holds; on timeout fails with the last screen.
    fn wait_for_screen(&self, what: &str, server: &Server, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out after {SCREEN_TIMEOUT:?} waiting for {what}; screen:\n{screen}\nserver log:\n{}", server.log_text());
            }
            assert_eq!(self.exit_status(), None, "callmgr tui exited while waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses `q`, waits for the dashboard to exit with status 0, and returns the screen it
    /// left behind.
    fn quit(&self, server: &Server) -> String {
        self.send_key("q");
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                assert_eq!(status, "0", "callmgr tui exits with status 0 after q; screen:\n{}", self.screen());
                return self.screen();
            }
            assert!(
                Instant::now() < deadline,
                "callmgr tui still running {SCREEN_TIMEOUT:?} after q; screen:\n{}\nserver log:\n{}",
                self.screen(),
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tui_command(server: &Server) -> Vec<String> {
    vec![
        env!("CARGO_BIN_EXE_callmgr").to_string(),
        "tui".into(),
        "--url".into(),
        format!("http://{}", server.addr),
        "--token".into(),
        TOKEN.into(),
        "--interval".into(),
        "200ms".into(),
    ]
}

/// The slot gauge as the dashboard writes it.
fn gauge(used: u32, max: u32) -> String {
    format!("{used} / {max} in use")
}

#[test]
fn dashboard_shows_the_live_campaign_pauses_and_resumes_it_and_quits() {
    require_tmux();
    let server = Server::start(Options::default());
    let campaign = server.create_campaign(json!({"name": "Tmux dashboard check"}));
    // The mock provider answers after an hour, so this call holds one slot for the whole test.
    server.initiate(campaign, "+14155550123");
    crate::harness::wait_until("the call to hold a slot", Duration::from_secs(20), || {
        (server.get("/api/v1/metrics/")["current_concurrent_calls"] == 1).then_some(())
    });

    let tmux = Tmux::start("dashboard", server.dir.path(), &tui_command(&server));
    let screen = tmux.wait_for_screen("the campaign row and the slot gauge", &server, |s| s.contains("Tmux dashboard check") && s.contains(&gauge(1, 100)));
    assert!(screen.contains("● healthy"), "{screen}");
    assert!(screen.lines().any(|l| l.contains("Tmux dashboard check") && l.contains("active")), "{screen}");

    tmux.send_key("?");
    tmux.wait_for_screen("the help overlay", &server, |s| s.contains("Help — keys"));
    tmux.send_key("Escape");
    tmux.wait_for_screen("the help overlay to close", &server, |s| !s.contains("Help — keys") && s.contains("Tmux dashboard check"));

    tmux.send_key("p");
    tmux.wait_for_screen("the pause result and the paused row", &server, |s| {
        s.contains(&format!("campaign {campaign} (Tmux dashboard check) paused"))
            && s.lines().any(|l| l.contains("Tmux dashboard check") && l.contains("paused"))
    });
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["status"], "paused", "the pause went through the API");

    tmux.send_key("r");
    tmux.wait_for_screen("the resume result", &server, |s| s.contains(&format!("campaign {campaign} (Tmux dashboard check) resumed")));
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["status"], "active", "the resume went through the API");

    let left_behind = tmux.quit(&server);
    assert!(!left_behind.contains("Tmux dashboard check"), "the alternate screen is gone after exit:\n{left_behind}");
}

#[test]
fn dashboard_shows_disconnected_while_the_service_is_down_and_reconnects() {
    require_tmux();
    let mut server = Server::start(Options::default());
    server.create_campaign(json!({"name": "Survives restarts"}));
    let tmux = Tmux::start("restart", server.dir.path(), &tui_command(&server));
    tmux.wait_for_screen("the campaign row", &server, |s| s.contains("Survives restarts") && s.contains(&gauge(0, 100)));

    // Restart on the same address, so the running dashboard can find the service again.
    let address = server.addr;
    assert_eq!(server.terminate(), Some(0));
    let screen = tmux.wait_for_screen("the disconnected banner", &server, |s| s.contains("disconnected — retrying"));
    assert!(screen.contains("Survives restarts"), "the last data stays on screen while disconnected:\n{screen}");
    let config = std::fs::read_to_string(&server.config_path).expect("config readable");
    std::fs::write(&server.config_path, config.replace("listen: 127.0.0.1:0", &format!("listen: {address}"))).expect("config written");
    server.launch();
    assert_eq!(server.addr, address);
    tmux.wait_for_screen("the dashboard to reconnect", &server, |s| !s.contains("disconnected") && s.contains("● healthy") && s.contains("Survives restarts"));

    tmux.quit(&server);
}
