//! Startup failures say what to do in one line and exit 3, which the unit does not restart on:
//! a store held by another callmgr (naming its pid), a data directory it cannot write, an
//! address in use.

use std::process::Command;

use crate::harness::*;

/// Runs `serve` on `config` to its exit; (exit code, stderr).
fn serve_once(config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(binary()).args(["serve", "--config"]).arg(config).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn config_beside(server: &Server, name: &str, listen: &str, data_dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&server.config_path).unwrap();
    let text = text
        .lines()
        .map(|line| {
            if line.starts_with("listen:") {
                format!("listen: {listen}")
            } else if line.starts_with("data_dir:") {
                format!("data_dir: {}", data_dir.display())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = server.dir.path().join(name);
    std::fs::write(&path, text + "\n").unwrap();
    path
}

#[test]
fn a_second_serve_on_the_same_store_names_the_holder_and_exits_3() {
    let server = Server::start(Options::default());
    let config = config_beside(&server, "second.yaml", "127.0.0.1:0", &server.dir.path().join("data"));
    let (code, stderr) = serve_once(&config);
    assert_eq!(code, Some(3), "{stderr}");
    let line = stderr.lines().last().unwrap();
    assert!(line.contains("callmgr.redb is in use by another process") && line.contains(&format!("(pid {})", server.pid())), "{stderr}");
    assert!(!stderr.contains("refuses further work"), "{stderr}");
}

#[test]
fn an_address_in_use_is_named_and_exits_3() {
    let server = Server::start(Options::default());
    let config = config_beside(&server, "same-port.yaml", &server.addr.to_string(), &server.dir.path().join("other-data"));
    let (code, stderr) = serve_once(&config);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {}: the address is in use", server.addr)), "{stderr}");
}

#[test]
fn a_data_directory_it_cannot_write_is_named_and_exits_3() {
    let server = Server::start(Options::default());
    // A read-only file system: even root cannot write there.
    let readonly = server.dir.path().join("readonly");
    std::fs::create_dir(&readonly).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"]).arg(&readonly).status().unwrap();
    assert!(mounted.success(), "mounting a read-only tmpfs needs root (the tests run as root, as CI does)");
    let config = config_beside(&server, "readonly.yaml", "127.0.0.1:0", &readonly.join("data"));
    let (code, stderr) = serve_once(&config);
    let _ = Command::new("umount").arg(&readonly).status();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("cannot write") && stderr.contains("chown"), "{stderr}");
}

/// A SIGTERM that arrives while the service is still starting stops it cleanly (exit 0) once it
/// has started, instead of killing it. (Before, the handler was installed only when the shutdown
/// future was first polled, after startup: the default action killed the process.)
#[test]
fn sigterm_during_startup_stops_cleanly() {
    let server = Server::start(Options::default());
    let config = config_beside(&server, "early.yaml", "127.0.0.1:0", &server.dir.path().join("early-data"));
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Well inside startup: the store and the phone metadata are still loading.
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success());
    let status = wait_until("the early-stopped service to exit", std::time::Duration::from_secs(30), || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{status:?}");
}
