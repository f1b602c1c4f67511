pub mod callee_zone;
pub mod clock;
pub mod machine;
pub mod model;
pub mod phone;
pub mod retry;
pub mod timer_wheel;
