//! `callmgr tui` as an operator sees it: the real binary in a tmux pane against a live
//! `callmgr serve`, read back with `tmux capture-pane`: pause, resume and stop (with its
//! confirmation), the calls and dead-letter screens, a refused token, and the terminal restored
//! after SIGTERM and SIGHUP. Every wait polls the screen with a deadline. tmux must be installed
//! (`.ci/run` installs it); without it these tests fail.

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
        // The shell then stays (until the tmux server ends), so that the screen the dashboard
        // left behind stays readable: tmux blanks a pane whose process has ended.
        let script = format!("\"$0\" \"$@\"; echo $? > '{}'; exec sleep 600", tmux.exit_file.display());
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

    /// The dashboard's process: the child of the wrapper shell that tmux started in the pane.
    fn dashboard_pid(&self) -> u32 {
        let output = self.run(&["list-panes", "-t", &self.session, "-F", "#{pane_pid}"]);
        let shell: u32 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("tmux names the pane's process");
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).expect("the wrapper shell's children are listed");
        children.split_whitespace().next().and_then(|pid| pid.parse().ok()).expect("the wrapper shell runs the dashboard")
    }

    /// Waits for the dashboard to exit and returns its status and the screen it left behind.
    fn wait_exit(&self, what: &str) -> (String, String) {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                return (status, self.screen());
            }
            assert!(Instant::now() < deadline, "callmgr tui still running {SCREEN_TIMEOUT:?} after {what}; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After the exit: polls the screen left behind until `condition` holds (tmux may show the
    /// last output a moment after the process ended).
    fn wait_for_left_screen(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out after {SCREEN_TIMEOUT:?} waiting for {what} after the exit; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
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
        let (status, screen) = self.wait_exit("q");
        assert_eq!(status, "0", "callmgr tui exits with status 0 after q; screen:\n{screen}\nserver log:\n{}", server.log_text());
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tui_command(server: &Server) -> Vec<String> {
    tui_command_with_token(server, TOKEN)
}

fn tui_command_with_token(server: &Server, token: &str) -> Vec<String> {
    vec![
        crate::harness::binary().to_str().expect("a utf-8 path").to_string(),
        "tui".into(),
        "--url".into(),
        format!("http://{}", server.addr),
        "--token".into(),
        token.into(),
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

    // Enter opens the campaign's calls; Esc comes back.
    tmux.send_key("Enter");
    tmux.wait_for_screen("the campaign's calls", &server, |s| {
        s.contains(&format!("Calls of campaign {campaign}")) && s.contains("+14155550123") && s.contains("PROCESSING")
    });
    tmux.send_key("Escape");
    tmux.wait_for_screen("the campaigns again", &server, |s| s.contains("Waiting on"));

    // Stop asks first: n leaves the campaign running, y stops it.
    tmux.send_key("s");
    tmux.wait_for_screen("the stop question", &server, |s| s.contains(&format!("Stop campaign {campaign} (Tmux dashboard check)?")));
    tmux.send_key("n");
    tmux.wait_for_screen("the cancelled question", &server, |s| s.contains("cancelled: nothing was changed") && !s.contains("Stop campaign"));
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["status"], "active", "n changes nothing");
    tmux.send_key("s");
    tmux.wait_for_screen("the stop question again", &server, |s| s.contains("y yes · n no"));
    tmux.send_key("y");
    tmux.wait_for_screen("the stop result and the stopped row", &server, |s| {
        s.contains(&format!("campaign {campaign} (Tmux dashboard check) stopped"))
            && s.lines().any(|l| l.contains("Tmux dashboard check") && l.contains("stopped"))
    });
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign}/"))["status"], "stopped", "the stop went through the API");

    // The dead letters screen; replaying them all asks first, then goes through the bulk replay.
    tmux.send_key("d");
    tmux.wait_for_screen("the dead letters screen", &server, |s| s.contains("no dead letters"));
    tmux.send_key("A");
    tmux.wait_for_screen("the replay question", &server, |s| s.contains("Replay every dead letter?"));
    tmux.send_key("y");
    tmux.wait_for_screen("the bulk replay's answer", &server, |s| s.contains("0 dead letters replayed"));
    tmux.send_key("Escape");

    tmux.quit(&server);
    tmux.wait_for_left_screen("the alternate screen to go", |s| !s.contains("Tmux dashboard check"));
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

#[test]
fn a_refused_token_ends_the_dashboard_with_exit_2_and_says_why() {
    require_tmux();
    let server = Server::start(Options::default());
    let tmux = Tmux::start("token", server.dir.path(), &tui_command_with_token(&server, "not-the-token"));
    let (status, screen) = tmux.wait_exit("a refused token");
    assert_eq!(status, "2", "screen:\n{screen}");
    tmux.wait_for_left_screen("the message", |s| s.contains("refused the token (401 unauthorized)"));
}

#[test]
fn sigterm_and_sighup_restore_the_terminal() {
    require_tmux();
    let server = Server::start(Options::default());
    server.create_campaign(json!({"name": "Signals"}));
    for (name, signal, code) in [("sigterm", "-TERM", "143"), ("sighup", "-HUP", "129")] {
        let tmux = Tmux::start(name, server.dir.path(), &tui_command(&server));
        tmux.wait_for_screen("the campaign row", &server, |s| s.contains("Signals") && s.contains("● healthy"));
        let pid = tmux.dashboard_pid();
        let sent = Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("kill runs");
        assert!(sent.success());
        let (status, screen) = tmux.wait_exit(signal);
        assert_eq!(status, code, "exit status 128 + the signal; screen:\n{screen}");
        let screen = tmux.wait_for_left_screen("the message on the restored screen", |s| s.contains("callmgr: ended by signal"));
        assert!(!screen.contains("Signals") && !screen.contains("● healthy"), "the alternate screen is gone:\n{screen}");
    }
}
