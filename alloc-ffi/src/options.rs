//! Options from `PAGEBREAK_*` environment variables, read once at start-up from `environ`
//! directly (`getenv` may not be safe this early, and nothing here allocates).

use core::ffi::{c_char, CStr};
use core::fmt::Write;

use crate::report::LineBuf;

extern "C" {
    static environ: *const *const c_char;
}

/// The options in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `PAGEBREAK_PURGE_DELAY_MS`: delay before free memory is returned to the OS.
    pub purge_delay_ms: u64,
    /// `PAGEBREAK_PURGE_DELAY_MAX_MS`: the longest the delay grows to while the program
    /// takes back memory soon after it was purged (not above the delay: a fixed delay).
    pub purge_delay_max_ms: u64,
    /// `PAGEBREAK_HUGE_PAGES`: ask for transparent huge pages on large mappings (mmap backend).
    pub huge_pages: bool,
    /// `PAGEBREAK_SHOW_STATS`: print statistics to stderr at exit.
    pub show_stats: bool,
    /// `PAGEBREAK_VERBOSE`: print the options in force at start-up.
    pub verbose: bool,
    /// `PAGEBREAK_HEAPMAP`: write a heap picture to this path at exit and on `SIGUSR2`
    /// (points into the environment; null when unset).
    pub heapmap: *const c_char,
    /// `PAGEBREAK_PROFILE`: heap profiling's mean sampling interval in bytes (0: off; `1` or
    /// `on`: 512 KiB).
    pub profile_interval: u64,
    /// `PAGEBREAK_PROFILE_PATH`: where profiles are written (points into the environment;
    /// null: `pagebreak-<pid>.prof` in the working directory).
    pub profile_path: *const c_char,
    /// `PAGEBREAK_PROFILE_SIGNAL`: the signal that writes a profile (default SIGUSR1; 0: none).
    pub profile_signal: i32,
    /// `PAGEBREAK_GUARDED`: put about one allocation in N on guarded pages (0: off).
    pub guarded: u64,
    /// `PAGEBREAK_GUARDED_MAX`: the largest request eligible for a guarded block (bytes).
    pub guarded_max: usize,
    /// `PAGEBREAK_GUARDED_SLOTS`: slots in the guarded pool.
    pub guarded_slots: usize,
    /// `PAGEBREAK_GUARDED_LEFT`: guarded blocks start at their page (underflows fault)
    /// instead of ending against the guard page (overflows fault).
    pub guarded_left: bool,
}

impl Options {
    /// The defaults.
    pub const DEFAULT: Options = Options {
        purge_delay_ms: alloc_core::DEFAULT_PURGE_DELAY_MS,
        purge_delay_max_ms: alloc_core::DEFAULT_PURGE_DELAY_MAX_MS,
        huge_pages: false,
        show_stats: false,
        verbose: false,
        heapmap: core::ptr::null(),
        profile_interval: 0,
        profile_path: core::ptr::null(),
        profile_signal: libc::SIGUSR1,
        guarded: 0,
        guarded_max: alloc_core::guarded::DEFAULT_MAX_SIZE,
        guarded_slots: alloc_core::guarded::DEFAULT_SLOTS,
        guarded_left: false,
    };

    /// The guarded pool's layout these options ask for.
    pub fn guarded_config(&self) -> alloc_core::GuardedConfig {
        alloc_core::GuardedConfig {
            slots: self.guarded_slots,
            max_size: self.guarded_max,
            left_aligned: self.guarded_left,
        }
    }

    /// Read the environment. A value that does not parse gets a one-line warning on stderr
    /// and the default.
    pub fn from_environ() -> Options {
        let mut options = Options::DEFAULT;
        // SAFETY: `environ` is libc's; we only read it. It may be null very early.
        let mut entry = unsafe { environ };
        if entry.is_null() {
            return options;
        }
        // SAFETY: environ is a null-terminated array of NUL-terminated strings.
        unsafe {
            while !(*entry).is_null() {
                let bytes = CStr::from_ptr(*entry).to_bytes();
                if let Some(rest) = bytes.strip_prefix(b"PAGEBREAK_") {
                    if rest.starts_with(b"HEAPMAP=") && rest.len() > 8 {
                        options.heapmap = (*entry).add(b"PAGEBREAK_HEAPMAP=".len());
                    } else if rest.starts_with(b"PROFILE_PATH=") && rest.len() > 13 {
                        options.profile_path = (*entry).add(b"PAGEBREAK_PROFILE_PATH=".len());
                    } else {
                        options.apply(rest);
                    }
                }
                entry = entry.add(1);
            }
        }
        options
    }

    /// Apply one `NAME=value` (without the `PAGEBREAK_` prefix).
    pub fn apply(&mut self, assignment: &[u8]) {
        let Some(eq) = assignment.iter().position(|&b| b == b'=') else {
            return;
        };
        let (name, value) = (&assignment[..eq], &assignment[eq + 1..]);
        let ok = match name {
            b"PURGE_DELAY_MS" => parse_u64(value).map(|v| self.purge_delay_ms = v).is_some(),
            b"PURGE_DELAY_MAX_MS" => parse_u64(value)
                .map(|v| self.purge_delay_max_ms = v)
                .is_some(),
            b"HUGE_PAGES" => parse_bool(value).map(|v| self.huge_pages = v).is_some(),
            b"SHOW_STATS" => parse_bool(value).map(|v| self.show_stats = v).is_some(),
            b"VERBOSE" => parse_bool(value).map(|v| self.verbose = v).is_some(),
            b"PROFILE" => parse_interval(value)
                .map(|v| self.profile_interval = v)
                .is_some(),
            b"PROFILE_SIGNAL" => parse_u64(value)
                .filter(|&v| v < 65)
                .map(|v| self.profile_signal = v as i32)
                .is_some(),
            b"GUARDED" => parse_u64(value).map(|v| self.guarded = v).is_some(),
            b"GUARDED_MAX" => parse_in(value, 1, alloc_core::guarded::MAX_MAX_SIZE)
                .map(|v| self.guarded_max = v)
                .is_some(),
            b"GUARDED_SLOTS" => parse_in(value, 1, alloc_core::guarded::MAX_SLOTS)
                .map(|v| self.guarded_slots = v)
                .is_some(),
            b"GUARDED_LEFT" => parse_bool(value).map(|v| self.guarded_left = v).is_some(),
            _ => {
                warn(b"unknown option PAGEBREAK_", name, b"ignored");
                return;
            }
        };
        if !ok {
            warn(b"cannot parse PAGEBREAK_", assignment, b"using the default");
        }
    }

    /// Print the options in force (`PAGEBREAK_VERBOSE=1`).
    pub fn print(&self, backend: &str) {
        let mut line = LineBuf::new();
        let _ =
            write!(
            line,
            "pagebreak: backend={backend} purge_delay_ms={} purge_delay_max_ms={} huge_pages={} show_stats={} profile={}",
            self.purge_delay_ms, self.purge_delay_max_ms, self.huge_pages as u8, self.show_stats as u8, self.profile_interval
        );
        if self.guarded != 0 {
            let _ = write!(
                line,
                " guarded={} guarded_max={} guarded_slots={} guarded_left={}",
                self.guarded, self.guarded_max, self.guarded_slots, self.guarded_left as u8
            );
        }
        let _ = writeln!(line);
        line.write_stderr();
    }
}

fn warn(what: &[u8], name: &[u8], tail: &[u8]) {
    let mut line = LineBuf::new();
    let _ = writeln!(
        line,
        "pagebreak: warning: {}{}: {}",
        core::str::from_utf8(what).unwrap_or(""),
        core::str::from_utf8(name).unwrap_or("?"),
        core::str::from_utf8(tail).unwrap_or("")
    );
    line.write_stderr();
}

fn parse_u64(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64)
    })
}

/// A sampling interval: `1`/`on`/`true`/`yes` is the default (512 KiB), `0`/`off`/... is
/// off, a number above 1 is the interval in bytes.
fn parse_interval(value: &[u8]) -> Option<u64> {
    match parse_bool(value) {
        Some(true) => Some(crate::profile::DEFAULT_INTERVAL),
        Some(false) => Some(0),
        None => parse_u64(value),
    }
}

/// A whole number in `lo..=hi`.
fn parse_in(value: &[u8], lo: usize, hi: usize) -> Option<usize> {
    parse_u64(value)
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| (lo..=hi).contains(v))
}

fn parse_bool(value: &[u8]) -> Option<bool> {
    match value {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let mut o = Options::DEFAULT;
        assert_eq!(o.purge_delay_max_ms, 1000);
        o.apply(b"PURGE_DELAY_MS=250");
        o.apply(b"PURGE_DELAY_MAX_MS=250");
        o.apply(b"HUGE_PAGES=1");
        o.apply(b"SHOW_STATS=yes");
        assert_eq!((o.purge_delay_ms, o.purge_delay_max_ms), (250, 250));
        assert!(o.huge_pages && o.show_stats && !o.verbose);
        assert_eq!(o.profile_interval, 0);
        o.apply(b"PROFILE=1");
        assert_eq!(o.profile_interval, 512 * 1024);
        o.apply(b"PROFILE=65536");
        assert_eq!(o.profile_interval, 65536);
        o.apply(b"PROFILE=off");
        assert_eq!(o.profile_interval, 0);
        o.apply(b"PROFILE_SIGNAL=12");
        assert_eq!(o.profile_signal, 12);
        o.apply(b"GUARDED=5000");
        o.apply(b"GUARDED_MAX=4096");
        o.apply(b"GUARDED_SLOTS=64");
        o.apply(b"GUARDED_LEFT=on");
        assert_eq!(
            (o.guarded, o.guarded_max, o.guarded_slots),
            (5000, 4096, 64)
        );
        assert!(o.guarded_left);
    }

    #[test]
    fn bad_values_keep_defaults() {
        let mut o = Options::DEFAULT;
        o.apply(b"PURGE_DELAY_MS=soon");
        o.apply(b"PURGE_DELAY_MS=");
        o.apply(b"PURGE_DELAY_MAX_MS=-1");
        o.apply(b"HUGE_PAGES=maybe");
        o.apply(b"PROFILE=lots");
        o.apply(b"PROFILE_SIGNAL=99");
        o.apply(b"NOT_AN_OPTION=1");
        o.apply(b"GUARDED=often");
        o.apply(b"GUARDED_SLOTS=0");
        o.apply(b"GUARDED_MAX=2000000");
        assert_eq!(o, Options::DEFAULT);
    }
}
