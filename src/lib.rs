//! The `callmgr` library: `core` (pure values and decisions), `protocol` (what goes over the
//! wire), `service` (the running service), `tools` (clients and stand-ins), with `config` and
//! `cli` beside them. ARCHITECTURE.md has the map and the rules between the layers.

pub mod cli;
pub mod config;
pub mod core;
pub mod protocol;
pub mod service;
pub mod tools;
