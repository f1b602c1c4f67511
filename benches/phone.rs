//! Per-number cost of phone parsing and of the callee's timezone: `phone::parse` in each
//! validation mode, over US numbers and over a mix of countries (which touches many regions'
//! patterns), and `callee_zone::infer` / `resolve`.
//!
//! Run with `cargo bench --bench phone`; figures are per number. The one-time costs (decoding
//! the metadata, compiling a region's patterns, parsing the prefix map) are printed first, each
//! measured once in this fresh process, before criterion warms anything up.

use std::hint::black_box;
use std::time::Instant;

use callmgr::core::callee_zone::{self, TimezoneSource};
use callmgr::core::phone::{self, PhoneValidation, Region};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::tz::TimeZone;

/// Valid numbers of several regions, written the way clients write them.
const MIXED: &[&str] = &[
    "+1 415 555 2671",
    "+44 20 7946 0958",
    "+49 30 901820",
    "+33 1 42 68 53 00",
    "+39 06 6982 0000",
    "+7 800 555 35 35",
    "+91 98765 43210",
    "+55 11 91234 5678",
    "+81 3 1234 5678",
    "+61 2 9374 4000",
    "+52 55 1234 5678",
    "+34 912 34 56 78",
];

/// US numbers with different area codes and subscriber numbers.
fn us_numbers() -> Vec<String> {
    let area_codes = [201, 212, 305, 312, 415, 512, 617, 702, 808, 917];
    (0..1000).map(|i| format!("+1{}{:07}", area_codes[i % area_codes.len()], 2_000_000 + i * 7919 % 7_000_000)).collect()
}

fn one_time_costs() {
    let started = Instant::now();
    phone::warm_up();
    eprintln!("one-time: phone::warm_up (metadata decode + US rules): {:?}", started.elapsed());
    let started = Instant::now();
    let _ = phone::parse("+442079460958", None, PhoneValidation::Valid);
    eprintln!("one-time: first GB number (compiles GB's patterns): {:?}", started.elapsed());
    let started = Instant::now();
    let _ = phone::parse("+14155552671", None, PhoneValidation::Valid);
    eprintln!("one-time: first +1 validity check (compiles every +1 region's patterns it tries): {:?}", started.elapsed());
    let started = Instant::now();
    callee_zone::warm_up();
    eprintln!("one-time: callee_zone::warm_up (prefix map parse): {:?}", started.elapsed());
}

fn bench_parse(c: &mut Criterion) {
    one_time_costs();
    let us = us_numbers();
    let gb = Region::parse("GB").unwrap();
    for (name, validation) in [("shape", PhoneValidation::Shape), ("possible", PhoneValidation::Possible), ("valid", PhoneValidation::Valid)] {
        c.bench_function(&format!("parse/{name}/us"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % us.len();
                black_box(phone::parse(black_box(&us[i]), None, validation))
            })
        });
        c.bench_function(&format!("parse/{name}/mixed"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % MIXED.len();
                black_box(phone::parse(black_box(MIXED[i]), None, validation))
            })
        });
    }
    c.bench_function("parse/valid/gb-national", |b| b.iter(|| black_box(phone::parse(black_box("020 7946 0958"), Some(&gb), PhoneValidation::Valid))));
    c.bench_function("parse/possible/refused-country-code", |b| {
        b.iter(|| black_box(phone::parse(black_box("+999 1234 5678"), None, PhoneValidation::Possible)))
    });
    c.bench_function("mask_numbers_in/provider-error", |b| {
        b.iter(|| black_box(phone::mask_numbers_in(black_box("{\"code\":21211,\"message\":\"The 'To' number +14155552671 is not a valid phone number.\"}"))))
    });
}

fn bench_zone(c: &mut Criterion) {
    let us = us_numbers();
    c.bench_function("infer/us", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % us.len();
            black_box(callee_zone::infer(black_box(&us[i])))
        })
    });
    c.bench_function("infer/idaho-7-digit-prefix", |b| b.iter(|| black_box(callee_zone::infer(black_box("+12082011234")))));
    let default = TimeZone::UTC;
    c.bench_function("resolve/inferred/us", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % us.len();
            let zone = callee_zone::resolve(None, black_box(&us[i]), None, &default, 3);
            black_box(zone.source == TimezoneSource::Inferred)
        })
    });
    c.bench_function("resolve/ambiguous", |b| b.iter(|| black_box(callee_zone::resolve(None, black_box("+12082991234"), None, &default, 3))));
    c.bench_function("resolve/given", |b| b.iter(|| black_box(callee_zone::resolve(Some(black_box("Europe/Paris")), "+12125550101", None, &default, 3))));
    c.bench_function("timezone_get/new_york", |b| b.iter(|| black_box(TimeZone::get(black_box("America/New_York")))));
}

criterion_group!(benches, bench_parse, bench_zone);
criterion_main!(benches);
