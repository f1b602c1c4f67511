//! The pure core: values, their encoding, and the decisions made on them. Nothing here does I/O
//! or reads the clock (`clock` defines the trait the service reads time through); everything a
//! decision depends on is an argument. The service and the tools depend on this; it depends on
//! nothing in the crate outside it.

pub mod callee_zone;
pub mod clock;
pub mod codec;
pub mod counters;
pub mod machine;
pub mod model;
pub mod phone;
pub mod retry;
pub mod timer_wheel;
