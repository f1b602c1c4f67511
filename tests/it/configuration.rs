//! Configuration that exists is valid (issue 12): `check-config` reads and checks every value
//! that `serve` would use, and both refuse a bad one with exit 2 naming the key; relative paths
//! in a file read from the file's folder; `check-config` marks what the environment set.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// What one run of the binary left behind.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `callmgr args…` in `working_dir` with only `env` set, to its exit; a run still going
/// after 30 s (a `serve` that accepted what it should have refused) is killed and fails the test.
fn callmgr(args: &[&str], config: &Path, working_dir: &Path, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(working_dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("callmgr runs");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("callmgr {args:?} still running after 30 s; stdout:\n{}", out.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run { code: status.code(), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A folder holding `callmgr.yaml` (every path in it absolute, plus `extra`) and its retry rules.
fn config_with(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let retry = dir.path().join("retry.yaml");
    std::fs::write(&retry, "defaults: {max_attempts: 3, retry_interval_minutes: 60}\n").unwrap();
    let config = dir.path().join("callmgr.yaml");
    let text = format!("listen: 127.0.0.1:0\ndata_dir: {}\ntokens: [{TOKEN}]\nretry_config: {}\n{extra}", dir.path().join("data").display(), retry.display());
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

/// Both `check-config` and `serve` refuse the configuration with exit 2, naming `key` and each
/// of `expected` on stderr.
fn both_refuse(config: &Path, working_dir: &Path, env: &[(&str, &str)], expected: &[&str]) {
    for command in ["check-config", "serve"] {
        let run = callmgr(&[command], config, working_dir, env);
        assert_eq!(run.code, Some(2), "{command}: {run:#?}");
        for text in expected {
            assert!(run.stderr.contains(text), "{command}: expected {text:?} in {run:#?}");
        }
    }
}

/// `log.level: verbose` passed `check-config`, and `serve` then logged nothing at all: the
/// tracing filter reads a bare word as a target name.
#[test]
fn a_log_level_that_would_log_nothing_is_refused_by_check_config_and_serve() {
    let (dir, config) = config_with("provider: {url: builtin-mock}\nlog: {level: verbose}\n");
    both_refuse(&config, dir.path(), &[], &["key `log.level`: `verbose`", "error, warn, info, debug, trace"]);
    // RUST_LOG set it when serve started, unchecked; it is now part of the configuration.
    let (dir, config) = config_with("provider: {url: builtin-mock}\n");
    both_refuse(&config, dir.path(), &[("RUST_LOG", "verbose")], &["key `log.level (from environment RUST_LOG)`: `verbose`"]);
    let run = callmgr(&["check-config"], &config, dir.path(), &[("RUST_LOG", "callmgr=debug,info")]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("level=callmgr=debug,info format=text   (log.level from RUST_LOG)"), "{run:#?}");
}

/// `provider.mock.delay` and `mix` were parsed only when `serve` started the mock (exit 1), and
/// `check-config` passed them.
#[test]
fn the_builtin_mocks_delay_and_mix_are_refused_by_check_config_and_serve() {
    let (dir, config) = config_with("provider: {url: builtin-mock, mock: {delay: soon}}\n");
    both_refuse(&config, dir.path(), &[], &["key `provider.mock.delay`: `soon`"]);
    let (dir, config) = config_with("provider: {url: builtin-mock, mock: {mix: \"PICKED=70,ANSWERED=30\"}}\n");
    both_refuse(&config, dir.path(), &[], &["key `provider.mock.mix`: mix item `ANSWERED=30`: unknown status"]);
    let (dir, config) = config_with("provider: {url: builtin-mock}\n");
    both_refuse(&config, dir.path(), &[("CALLMGR_PROVIDER__MOCK__DELAY", "5s..1s")], &["provider.mock.delay (from environment CALLMGR_PROVIDER__MOCK__DELAY)"]);
}

/// A relative `retry_config` and `data_dir` in the file read from the file's folder, not from
/// where callmgr runs; a relative path from the environment reads from where callmgr runs; a
/// path that is missing is named by its absolute path.
#[test]
fn relative_paths_read_from_the_files_folder_or_for_the_environment_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, elsewhere) = (dir.path().join("etc"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(etc.join("rules")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(etc.join("rules/retry.yaml"), "defaults: {max_attempts: 2}\n").unwrap();
    let config = etc.join("callmgr.yaml");
    std::fs::write(&config, format!("tokens: [{TOKEN}]\nprovider: {{url: builtin-mock}}\ndata_dir: state\nretry_config: ./rules/retry.yaml\n")).unwrap();

    // Named relatively, from another folder: the paths in it still read from etc/ (`..` is
    // kept, since only the file system knows what it means past a symbolic link).
    let run = callmgr(&["check-config"], Path::new("../etc/callmgr.yaml"), &elsewhere, &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let line = |label: &str| run.stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {run:#?}")).to_string();
    let etc_seen_from_elsewhere = elsewhere.join("../etc");
    assert_eq!(line("config file:"), format!("config file:            {}", etc_seen_from_elsewhere.join("callmgr.yaml").display()));
    assert_eq!(line("data_dir:"), format!("data_dir:               {}", etc_seen_from_elsewhere.join("state").display()));
    assert_eq!(line("retry_config:"), format!("retry_config:           {}", etc_seen_from_elsewhere.join("rules/retry.yaml").display()));

    // From the environment: read from the working directory, and marked.
    let run = callmgr(&["check-config"], &config, &elsewhere, &[("RETRY_SCHEDULE_CONFIG_PATH", "rules/retry.yaml")]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains(&format!("{}: cannot read", elsewhere.join("rules/retry.yaml").display())), "{run:#?}");
    std::fs::create_dir_all(elsewhere.join("rules")).unwrap();
    std::fs::write(elsewhere.join("rules/retry.yaml"), "defaults: {max_attempts: 4}\n").unwrap();
    let run = callmgr(&["check-config"], &config, &elsewhere, &[("RETRY_SCHEDULE_CONFIG_PATH", "rules/retry.yaml")]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("retry_config:           {}   (from RETRY_SCHEDULE_CONFIG_PATH)", elsewhere.join("rules/retry.yaml").display())),
        "{run:#?}"
    );
    assert!(run.stdout.contains("max_attempts 4"), "{run:#?}");

    // A retry file missing from the file's folder is named by its absolute path.
    std::fs::remove_file(etc.join("rules/retry.yaml")).unwrap();
    let run = callmgr(&["check-config"], &config, &elsewhere, &[]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains(&format!("{}: cannot read", etc.join("rules/retry.yaml").display())), "{run:#?}");
}

/// `serve` puts its store where `check-config` says: a relative `data_dir` in the file is in the
/// file's folder, not in the test's working directory (the repository).
#[test]
fn serve_keeps_its_store_in_the_files_folder_for_a_relative_data_dir() {
    let mut server = Server::start(Options::default());
    server.terminate();
    let text = std::fs::read_to_string(&server.config_path).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|line| match line {
            l if l.starts_with("data_dir:") => "data_dir: relative-data".to_string(),
            l if l.starts_with("retry_config:") => "retry_config: retry.yaml".to_string(),
            l => l.to_string(),
        })
        .collect();
    std::fs::write(&server.config_path, text.join("\n") + "\n").unwrap();
    server.launch();
    assert!(server.dir.path().join("relative-data/callmgr.redb").is_file(), "{}", server.log_text());
    assert!(!Path::new("relative-data").exists(), "a store in the working directory");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn check_config_marks_each_value_the_environment_set() {
    let (dir, config) = config_with("provider: {url: builtin-mock}\nworkers: 4\n");
    let env = [
        ("CALLMGR_LISTEN", "0.0.0.0:9000"),
        ("VALID_TOKENS", "token-from-the-environment"),
        ("MAX_CONCURRENT_CALLS", "7"),
        ("CALLMGR_LIMITS__BATCH_MAX", "50"),
    ];
    let run = callmgr(&["check-config"], &config, dir.path(), &env);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let line = |label: &str| run.stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {run:#?}")).to_string();
    assert_eq!(line("listen:"), "listen:                 0.0.0.0:9000   (from CALLMGR_LISTEN)");
    assert_eq!(line("max_concurrent_calls:"), "max_concurrent_calls:   7   (from MAX_CONCURRENT_CALLS)");
    assert!(line("tokens:").ends_with("(admin)   (from VALID_TOKENS)"), "{run:#?}");
    assert!(line("limits:").contains(" batch_max=50 ") && line("limits:").ends_with("   (limits.batch_max from CALLMGR_LIMITS__BATCH_MAX)"), "{run:#?}");
    for from_the_file in ["workers:", "data_dir:", "retry_config:", "provider.url:", "log:"] {
        assert!(!line(from_the_file).contains("from "), "{from_the_file} is marked: {run:#?}");
    }
}
