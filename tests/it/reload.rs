//! SIGHUP reloads the retry rules (calling hours included) and the tokens without a restart;
//! a file that does not validate is logged and the old settings stay, and so does the service.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

const ALL_DAYS: &str = "[monday, tuesday, wednesday, thursday, friday, saturday, sunday]";

fn hangup(server: &Server) {
    assert!(Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().unwrap().success());
}

fn wait_log(server: &Server, what: &str, count: usize) {
    wait_until(&format!("{count} log line(s) with {what:?}"), Duration::from_secs(10), || (server.log_text().matches(what).count() >= count).then_some(()));
}

#[test]
fn sighup_reloads_rules_and_tokens_and_keeps_the_old_ones_when_the_file_is_broken() {
    let provider = FakeProvider::start();
    let open_all_day = format!("timezone: UTC\ncalling_hours: {{days: {ALL_DAYS}, start_time: \"00:00\", end_time: \"24:00\"}}\n");
    let server = Server::start(Options { provider_url: provider.url(), retry_yaml: open_all_day, ..Options::default() });
    let retry_path = server.dir.path().join("retry.yaml");
    let campaign = server.create_campaign(json!({"name": "reload"}));

    // A broken rules file: refused, the service and the old rules stay.
    std::fs::write(&retry_path, "calling_hours: {days: [], start_time: \"08:00\", end_time: \"21:00\"}\n").unwrap();
    hangup(&server);
    wait_log(&server, "reload refused", 1);
    assert!(server.log_text().contains("days is empty"), "the log says why");
    let first = server.initiate(campaign, &phone(1));
    provider.wait_count(1);
    assert_eq!(server.call(first["call_id"].as_str().unwrap())["held_reason"], serde_json::Value::Null);

    // Calling hours that are closed now (they open in twelve hours), and one more token.
    let opens = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(12)).unwrap();
    let start = opens.strftime("%H:%M").to_string();
    let end = opens.checked_add(jiff::SignedDuration::from_mins(30)).unwrap().strftime("%H:%M").to_string();
    let end = if end < start { "24:00".to_string() } else { end };
    std::fs::write(&retry_path, format!("timezone: UTC\ncalling_hours: {{days: {ALL_DAYS}, start_time: \"{start}\", end_time: \"{end}\"}}\n")).unwrap();
    let config = std::fs::read_to_string(&server.config_path)
        .unwrap()
        .replace(&format!("tokens: [{TOKEN}]"), &format!("tokens: [{TOKEN}, {{token: second-token-987, role: viewer}}]"));
    std::fs::write(&server.config_path, config).unwrap();
    assert_eq!(server.request_with("GET", "/api/v1/metrics/", None, Some("second-token-987")).0, 401, "not a token yet");
    hangup(&server);
    wait_log(&server, "reloaded the retry rules", 1);
    let second = server.initiate(campaign, &phone(2));
    let held = wait_until("the new call to be held", Duration::from_secs(10), || {
        let call = server.call(second["call_id"].as_str().unwrap());
        (call["held_reason"] == "outside_calling_hours").then_some(call)
    });
    assert!(held["next_dial_at"].as_str().unwrap().contains(&format!("T{start}")), "{held}");
    assert_eq!(server.request_with("GET", "/api/v1/metrics/", None, Some("second-token-987")).0, 200, "the new viewer token works");
    assert_eq!(server.request_with("POST", "/api/v1/campaigns/", Some(&json!({"name": "x"})), Some("second-token-987")).0, 403);
    assert_eq!(provider.count(), 1);
}
