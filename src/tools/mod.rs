//! Client tools of the HTTP API and stand-ins for its peers: the dashboard, the importer,
//! retry-plan, the load generator and the mock provider. They talk to the service over HTTP
//! only (`protocol` types), never through `crate::service`.

pub mod bench;
pub mod import;
pub mod mock_provider;
pub mod retry_plan;
pub mod tui;
