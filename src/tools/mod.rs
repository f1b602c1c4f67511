pub mod bench;
pub mod import;
pub mod mock_provider;
pub mod retry_plan;
pub mod tui;
