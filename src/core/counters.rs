//! Daily counters (the `recent_metrics` of the metrics endpoint): what the state machine asks the
//! writer to add to today's figures. The codes are stored in keys: never renumber.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Initiated = 1,
    Picked = 2,
    Disconnected = 3,
    Rnr = 4,
    Failed = 5,
    Retries = 6,
    PeakConcurrent = 7,
    CallDurationSeconds = 8,
    DeadLetters = 9,
    Dialled = 10,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::Initiated,
        Counter::Picked,
        Counter::Disconnected,
        Counter::Rnr,
        Counter::Failed,
        Counter::Retries,
        Counter::PeakConcurrent,
        Counter::CallDurationSeconds,
        Counter::DeadLetters,
        Counter::Dialled,
    ];
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The UTC day number of an instant (the key of daily counters).
pub fn day_of(ms: crate::core::model::Millis) -> u32 {
    ms.div_euclid(86_400_000).clamp(0, u32::MAX as i64) as u32
}
