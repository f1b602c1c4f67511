//! Timer wheel throughput at the scale the scheduler plans for: a million pending retries with
//! u128 call ids (UUID v7) and deadlines spread over the 14-day retry horizon.
//!
//! Run with `cargo bench --bench timer_wheel`; figures are per operation (criterion's
//! throughput line, in elements per second, is the inverse).

use std::hint::black_box;

use callmgr::core::timer_wheel::TimerWheel;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const ENTRY_COUNT: usize = 1_000_000;
const DAY_MS: u64 = 86_400_000;
const HORIZON_MS: u64 = 14 * DAY_MS;
/// 2026-11-21T15:07:23Z.
const START_MS: u64 = 1_795_705_643_000;

/// SplitMix64: deterministic inputs without a dependency.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

/// `ENTRY_COUNT` (call id, deadline) pairs: ids shaped like UUID v7 (time-ordered high bits,
/// random low bits), deadlines uniform over the next 14 days.
fn entries() -> Vec<(u128, u64)> {
    let mut state = 42;
    (0..ENTRY_COUNT as u64)
        .map(|sequence| {
            let key = (u128::from(START_MS + sequence) << 80) | u128::from(splitmix64(&mut state));
            let deadline_ms = START_MS + splitmix64(&mut state) % HORIZON_MS;
            (key, deadline_ms)
        })
        .collect()
}

fn filled_wheel(entries: &[(u128, u64)]) -> TimerWheel<u128> {
    let mut wheel = TimerWheel::new(START_MS);
    for &(key, deadline_ms) in entries {
        wheel.insert(key, deadline_ms);
    }
    wheel
}

fn timer_wheel(criterion: &mut Criterion) {
    let entries = entries();
    let full = filled_wheel(&entries);
    let mut group = criterion.benchmark_group("timer_wheel");
    group.sample_size(10);

    group.throughput(Throughput::Elements(ENTRY_COUNT as u64));
    group.bench_function("insert_1m_over_14_days", |bencher| {
        bencher.iter_batched(
            || TimerWheel::new(START_MS),
            |mut wheel| {
                for &(key, deadline_ms) in &entries {
                    wheel.insert(key, deadline_ms);
                }
                wheel
            },
            BatchSize::PerIteration,
        );
    });

    // 1,209,600 advances of one second each; every entry cascades down and expires once.
    group.bench_function("expire_1m_in_1s_steps", |bencher| {
        bencher.iter_batched(
            || full.clone(),
            |mut wheel| {
                let mut expired = Vec::with_capacity(4_096);
                let mut expired_count = 0;
                let mut now_ms = START_MS;
                while now_ms <= START_MS + HORIZON_MS {
                    now_ms += 1_000;
                    wheel.advance(now_ms, &mut expired);
                    expired_count += expired.len();
                    expired.clear();
                }
                assert_eq!(expired_count, ENTRY_COUNT);
                wheel
            },
            BatchSize::PerIteration,
        );
    });

    // A restart after a day of downtime: every entry overdue, drained 1,000 at a time.
    group.bench_function("drain_1m_overdue_1000_per_call", |bencher| {
        bencher.iter_batched(
            || {
                let mut wheel = TimerWheel::new(START_MS + HORIZON_MS);
                for &(key, deadline_ms) in &entries {
                    wheel.insert(key, deadline_ms);
                }
                wheel
            },
            |mut wheel| {
                let mut expired = Vec::with_capacity(1_000);
                let mut expired_count = 0;
                loop {
                    let more = wheel.advance_limited(START_MS + HORIZON_MS, 1_000, &mut expired);
                    expired_count += expired.len();
                    expired.clear();
                    if !more {
                        break;
                    }
                }
                assert_eq!(expired_count, ENTRY_COUNT);
                wheel
            },
            BatchSize::PerIteration,
        );
    });

    // One callback deadline set and cancelled (a PROCESSING call answered in time) against a
    // wheel holding a million retries.
    group.sample_size(50);
    group.throughput(Throughput::Elements(1));
    let mut wheel = full.clone();
    let mut state = 7;
    group.bench_function("insert_then_cancel_at_1m", |bencher| {
        bencher.iter(|| {
            let key = u128::from(splitmix64(&mut state));
            wheel.insert(key, START_MS + 300_000);
            black_box(wheel.cancel(&key))
        });
    });
    group.finish();
}

criterion_group!(benches, timer_wheel);
criterion_main!(benches);
