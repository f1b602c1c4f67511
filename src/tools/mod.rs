//! The client tools: each is a client of the service's HTTP API through [`client::ApiClient`]
//! (or, for the mock provider, plays the provider's side of the protocol). Arrows: tools →
//! `protocol` and `core` only, never `crate::service` (`tests/it/tidy.rs` checks it).

pub mod bench;
pub mod client;
pub mod import;
pub mod manual;
pub mod mock_provider;
pub mod retry_plan;
pub mod tui;
