//! The process's own figures for the `process_*` metrics, read from `/proc` at scrape time
//! (callmgr runs on Linux only): CPU time, memory, open files and start time. Parsing is kept
//! apart from reading so that it is tested on fixed text. Knows nothing of calls.

use std::path::Path;

/// What `/proc` says about this process at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft limit on open files (`None`: unlimited).
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/<pid>/stat` the metrics need, in the kernel's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks from boot to the process's start.
    pub start_ticks: u64,
    pub virtual_memory_bytes: u64,
    pub resident_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields from 3 (state) on; field n is at index n - 3.
    let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { cpu_ticks: field(14)? + field(15)?, start_ticks: field(22)?, virtual_memory_bytes: field(23)?, resident_pages: field(24)? })
}

/// The boot time (`btime`, Unix seconds) from `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// Turns the parsed fields into the metrics' units.
pub fn figures(stat: Stat, boot_time_seconds: u64, ticks_per_second: u64, page_size: u64, open_fds: u64, max_fds: Option<u64>) -> ProcessFigures {
    let ticks = ticks_per_second.max(1) as f64;
    ProcessFigures {
        cpu_seconds: stat.cpu_ticks as f64 / ticks,
        resident_memory_bytes: stat.resident_pages * page_size,
        virtual_memory_bytes: stat.virtual_memory_bytes,
        start_time_seconds: boot_time_seconds as f64 + stat.start_ticks as f64 / ticks,
        open_fds,
        max_fds,
    }
}

/// Reads this process's figures; `None` when `/proc` is not there or not as expected (the
/// metrics are then left out rather than shown wrong).
pub fn read() -> Option<ProcessFigures> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let boot_time = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    // The listing holds the descriptor that reads it; it is counted, as other clients do.
    let open_fds = std::fs::read_dir(Path::new("/proc/self/fd")).ok()?.count() as u64;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    Some(figures(stat, boot_time, rustix::param::clock_ticks_per_second(), rustix::param::page_size() as u64, open_fds, limit.current))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name holding a space and a parenthesis.
    const STAT: &str = "4242 (callmgr (x) y) S 1 4242 4242 0 -1 4194560 2412 0 0 0 \
                        350 125 0 0 20 0 9 0 123456 812691456 5120 18446744073709551615 1 1 0 0 0 0 0 4096 17642 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat, Stat { cpu_ticks: 475, start_ticks: 123456, virtual_memory_bytes: 812_691_456, resident_pages: 5120 });
        assert_eq!(parse_stat("4242 (callmgr) S 1 2"), None, "too few fields");
        assert_eq!(parse_stat("no name"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 12 0\nctxt 99\nbtime 1764640000\nprocesses 12\n";
        assert_eq!(parse_boot_time(text), Some(1_764_640_000));
        assert_eq!(parse_boot_time("cpu 1 2\n"), None);
    }

    #[test]
    fn figures_are_in_seconds_and_bytes() {
        let stat = parse_stat(STAT).unwrap();
        let f = figures(stat, 1_764_640_000, 100, 4096, 12, Some(65_536));
        assert_eq!(f.cpu_seconds, 4.75);
        assert_eq!(f.resident_memory_bytes, 5120 * 4096);
        assert_eq!(f.virtual_memory_bytes, 812_691_456);
        assert_eq!(f.start_time_seconds, 1_764_640_000.0 + 1234.56);
        assert_eq!((f.open_fds, f.max_fds), (12, Some(65_536)));
    }

    #[test]
    fn this_process_reads_itself() {
        let f = read().expect("/proc is there on Linux");
        assert!(f.resident_memory_bytes > 0 && f.virtual_memory_bytes >= f.resident_memory_bytes, "{f:?}");
        assert!(f.open_fds >= 3 && f.max_fds.is_none_or(|max| max >= f.open_fds), "{f:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(f.start_time_seconds > 1.0e9 && f.start_time_seconds <= now + 1.0, "{f:?}");
    }
}
