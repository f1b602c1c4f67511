//! The one integration-test binary: each module tests one area against the real `callmgr`
//! binary (started on 127.0.0.1 with an ephemeral port and a temp data dir by `harness`) or,
//! for `simulated_time` and `store_format`, against the library on a manual clock and a
//! committed store file.

mod harness;

mod api;
mod carrier;
mod compliance;
mod configuration;
mod dialing;
mod disk;
mod disk_guard;
mod faults;
mod hardening;
mod lifecycle;
mod mock_provider;
mod openapi;
mod operator;
mod packaging;
mod regressions;
mod reload;
mod retry;
mod simulated_time;
mod simulation;
mod startup;
mod store_format;
mod systemd_notify;
mod tidy;
mod tui;
