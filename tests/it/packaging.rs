//! The fast half of the appliance checks (issue 6): the systemd unit passes `systemd-analyze
//! verify`, and the unit, the packaged config, the maintainer scripts and the .deb metadata agree
//! with each other. The slow half (static release build, building and installing the .deb) is
//! `packaging/check.sh`, which `.ci/run` calls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = "systemd/callmgr.service";
const PACKAGED_CONFIG: &str = "packaging/callmgr.yaml";
const MAINTAINER_SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every `Key=value` of the unit's `[Service]` section (keys may repeat).
fn service_settings() -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(UNIT).lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings.entry(key.to_string()).or_default().push(value.to_string());
        }
    }
    settings
}

fn setting(settings: &BTreeMap<String, Vec<String>>, key: &str) -> String {
    match settings.get(key).map(Vec::as_slice) {
        Some([value]) => value.clone(),
        other => panic!("{UNIT}: expected one {key}=, found {other:?}"),
    }
}

fn seconds(text: &str) -> u64 {
    let duration = humantime::parse_duration(text).unwrap_or_else(|e| panic!("`{text}`: {e}"));
    duration.as_secs()
}

/// Runs the debug binary on the packaged config with a clean environment plus `env`.
fn check_config(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callmgr"));
    command.env_clear().args(["check-config", "--config", PACKAGED_CONFIG]).current_dir(repo());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("callmgr runs")
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("systemd-analyze is missing: install the Debian package `systemd` (apt-get install -y systemd); .ci/run does"));
    // verify insists that ExecStart= binaries exist: point them at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = read(UNIT).replace("/usr/bin/callmgr", env!("CARGO_BIN_EXE_callmgr"));
    let path = dir.path().join("callmgr.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new(analyze).arg("verify").arg(&path).output().expect("systemd-analyze runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "systemd-analyze verify failed ({}):\n{text}", output.status);
    // verify only warns (exit 0) about unknown keys and unparsable values: any word about our
    // unit is a failure.
    let complaints: Vec<&str> = text.lines().filter(|line| line.contains("callmgr")).collect();
    assert!(complaints.is_empty(), "systemd-analyze verify complains:\n{}", complaints.join("\n"));
}

#[test]
fn unit_has_the_notify_restart_and_hardening_contract() {
    let settings = service_settings();
    let expected = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30s"),
        ("ExecStartPre", "/usr/bin/callmgr check-config --config /etc/callmgr/callmgr.yaml"),
        ("ExecStart", "/usr/bin/callmgr serve --config /etc/callmgr/callmgr.yaml"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WorkingDirectory", "/var/lib/callmgr"),
        ("User", "callmgr"),
        ("Group", "callmgr"),
        ("StateDirectory", "callmgr"),
        ("ConfigurationDirectory", "callmgr"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2 3"),
        ("KillSignal", "SIGTERM"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ];
    for (key, value) in expected {
        assert_eq!(setting(&settings, key), value, "{UNIT}: {key}=");
    }
    assert_eq!(settings["SystemCallFilter"].first().map(String::as_str), Some("@system-service"));
    let files: u64 = setting(&settings, "LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(files >= 16_384, "LimitNOFILE={files} is too low for thousands of callback connections");
}

/// The stop timeout must outlast the service's own drain: limits.shutdown_timeout for requests,
/// plus at most 1 s for the threads (src/service.rs), plus margin.
#[test]
fn unit_stop_timeout_outlasts_the_packaged_shutdown_budget() {
    let dir = tempfile::tempdir().unwrap();
    let retry = dir.path().join("retry.yaml");
    std::fs::write(&retry, "defaults: {max_attempts: 3}\n").unwrap();
    let output = check_config(&[
        ("VALID_TOKENS", "packaging-test-token"),
        ("EXTERNAL_SERVICE_URL", "http://127.0.0.1:9/x"),
        ("RETRY_SCHEDULE_CONFIG_PATH", retry.to_str().unwrap()),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "check-config on {PACKAGED_CONFIG} failed: {}{stdout}", String::from_utf8_lossy(&output.stderr));
    let budget = stdout.split("shutdown_timeout=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("shutdown_timeout printed");
    let stop = seconds(&setting(&service_settings(), "TimeoutStopSec"));
    assert!(stop >= seconds(budget) + 5, "TimeoutStopSec={stop}s leaves no margin over shutdown_timeout={budget} + 1 s");
}

/// The packaged config refuses to run until the operator sets a token (exit 2, naming the file
/// and the key); the unit's RestartPreventExitStatus=2 relies on that code.
#[test]
fn packaged_config_refuses_to_start_without_a_token() {
    let output = check_config(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "check-config on {PACKAGED_CONFIG}: {stderr}");
    assert!(stderr.contains(PACKAGED_CONFIG) && stderr.contains("tokens"), "message does not name the file and `tokens`: {stderr}");
}

/// Paths that the unit, the packaged config and the .deb metadata must agree on.
#[test]
fn unit_config_and_deb_metadata_agree() {
    let config = read(PACKAGED_CONFIG);
    let value = |key: &str| -> String {
        let line = config.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("{PACKAGED_CONFIG}: no {key}"));
        line[key.len() + 1..].split('#').next().unwrap().trim().to_string()
    };
    assert_eq!(value("data_dir"), "/var/lib/callmgr", "data_dir must be the unit's StateDirectory");
    assert_eq!(value("retry_config"), "/etc/callmgr/retry_config.yaml");

    let manifest = read("Cargo.toml");
    let deb = manifest.split("[package.metadata.deb]").nth(1).expect("Cargo.toml has [package.metadata.deb]");
    let deb = deb.split("\n[").next().unwrap();
    assert!(deb.contains(r#"maintainer-scripts = "packaging/debian/""#), "maintainer-scripts");
    let assets = [
        ("target/release/callmgr", "usr/bin/callmgr", "755"),
        ("systemd/callmgr.service", "lib/systemd/system/callmgr.service", "644"),
        ("packaging/callmgr.yaml", "etc/callmgr/callmgr.yaml", "640"),
        ("packaging/retry_config.yaml", "etc/callmgr/retry_config.yaml", "640"),
        ("packaging/generated/man/*.1.gz", "usr/share/man/man1/", "644"),
        ("packaging/generated/completions/callmgr", "usr/share/bash-completion/completions/callmgr", "644"),
    ];
    for (source, destination, mode) in assets {
        let entry = format!(r#"["{source}", "{destination}", "{mode}"]"#);
        assert!(deb.contains(&entry), "[package.metadata.deb] assets lacks {entry}");
    }
    for line in deb.lines().filter(|l| l.trim_start().starts_with("[\"")) {
        let source = line.split('"').nth(1).unwrap();
        // target/ holds the binary and packaging/generated/ what packaging/build.sh writes.
        if !source.starts_with("target/") && !source.starts_with("packaging/generated/") {
            assert!(repo().join(source).exists(), "deb asset {source} does not exist");
        }
    }
}

#[test]
fn maintainer_scripts_parse_and_guard_systemctl() {
    use std::os::unix::fs::PermissionsExt;
    for name in MAINTAINER_SCRIPTS {
        let path = repo().join("packaging/debian").join(name);
        let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{name} is not executable");
        let output = Command::new("sh").arg("-n").arg(&path).output().expect("sh runs");
        assert!(output.status.success(), "{name}: sh -n: {}", String::from_utf8_lossy(&output.stderr));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("\nset -e\n"), "{name}: #!/bin/sh and set -e");
        // systemd is not PID 1 in containers and chroots: every systemctl call that needs a
        // running systemd is guarded and may fail.
        for line in text.lines().filter(|l| l.trim_start().starts_with("systemctl ")) {
            assert!(line.trim_end().ends_with("|| true"), "{name}: unguarded `{}`", line.trim());
        }
    }
    let postinst = read("packaging/debian/postinst");
    assert!(postinst.contains("/etc/callmgr/callmgr.yaml"), "postinst must say where to set the token");
    // The service has no token yet: postinst may only restart one that already runs (upgrade).
    for line in postinst.lines().map(str::trim).filter(|l| l.starts_with("systemctl ")) {
        assert!(line.starts_with("systemctl daemon-reload") || line.starts_with("systemctl try-restart"), "postinst must not start the service: `{line}`");
    }
}
