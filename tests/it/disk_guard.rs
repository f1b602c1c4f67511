//! The data disk's free-space guard against the real binary: below `limits.disk_free_min_mb`,
//! new calls get a JSON 503 that says why and `/readyz` says so too, while the callback of a call
//! already in flight is still applied; when space is freed it recovers by itself.

use std::os::fd::AsFd;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

const MIB: u64 = 1024 * 1024;
/// Taken from the disk to push it below the limit.
const FILL_BYTES: u64 = 512 * MIB;

fn free_bytes(dir: &std::path::Path) -> u64 {
    let stat = rustix::fs::statvfs(dir).unwrap();
    stat.f_bavail * stat.f_frsize
}

#[test]
fn a_low_disk_refuses_new_calls_keeps_callbacks_and_recovers() {
    let provider = FakeProvider::start();
    let probe = tempfile::tempdir().unwrap();
    // The limit sits half the fill below today's free space: the fill crosses it, its removal
    // crosses back (other tests' writes are far smaller than the margin).
    let min_free_mb = (free_bytes(probe.path()).saturating_sub(FILL_BYTES / 2)) / MIB;
    let server =
        Server::start(Options { provider_url: provider.url(), extra_yaml: format!("limits: {{disk_free_min_mb: {min_free_mb}}}\n"), ..Options::default() });
    let campaign = server.create_campaign(json!({"name": "disk"}));
    let call = server.initiate(campaign, &phone(1));
    let call_id = call["call_id"].as_str().unwrap().to_string();
    server.wait_status(&call_id, "PROCESSING");

    let fill_path = server.dir.path().join("fill");
    let fill = std::fs::File::create(&fill_path).unwrap();
    rustix::fs::fallocate(fill.as_fd(), rustix::fs::FallocateFlags::empty(), 0, FILL_BYTES).unwrap();
    fill.sync_all().unwrap();
    let (status, body) = wait_until("the guard to refuse new calls", Duration::from_secs(10), || {
        let answer = server.post("/api/v1/initiate-call/", json!({"phone_number": phone(2), "campaign_id": campaign}));
        (answer.0 == 503).then_some(answer)
    });
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("disk_free_min_mb"), "{body}");
    let (ready, text) = server.raw("GET", "/readyz", None, None);
    assert!(ready == 503 && text.contains("disk_free_min_mb"), "{ready} {text}");
    let metrics = server.metrics();
    assert_eq!((metrics["system_status"].as_str(), metrics["disk"]["low"].as_bool()), (Some("degraded"), Some(true)), "{metrics}");
    // The call already accepted still gets its outcome.
    let (status, answer) = server.callback(json!({"call_id": call_id, "status": "PICKED", "call_duration": 20}));
    assert_eq!((status, answer["status"].as_str()), (200, Some("PICKED")), "{answer}");

    drop(fill);
    std::fs::remove_file(&fill_path).unwrap();
    wait_until("the guard to accept new calls again", Duration::from_secs(10), || {
        let (status, _) = server.post("/api/v1/initiate-call/", json!({"phone_number": phone(3), "campaign_id": campaign}));
        (status == 201).then_some(())
    });
    assert_eq!(server.raw("GET", "/readyz", None, None).0, 200);
}
