//! The raw dump (FORMAT.md, version 1): parsed into plain data, nothing resolved yet.

use crate::maps::Mapping;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The one version this reader understands (the first line, `pagebreak-profile 1`).
pub const VERSION: u32 = 1;

/// Why the dump was written (`reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Exit,
    Signal,
    Request,
    Oom,
    /// A reason this reader does not know, kept as written.
    Other(String),
}

impl Reason {
    fn parse(s: &str) -> Reason {
        match s {
            "exit" => Reason::Exit,
            "signal" => Reason::Signal,
            "request" => Reason::Request,
            "oom" => Reason::Oom,
            other => Reason::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reason::Exit => "exit",
            Reason::Signal => "signal",
            Reason::Request => "request",
            Reason::Oom => "oom",
            Reason::Other(s) => s,
        }
    }
}

/// Everything sampled since start on one stack (`total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Total {
    pub count: u64,
    pub requested_bytes: u64,
    /// The writer's unbiased estimate of the bytes these samples stand for.
    pub estimated_bytes: u64,
}

/// A sampled block not yet freed (`live`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveBlock {
    pub stack: u64,
    pub size: u64,
    pub align: u64,
    pub thread: u64,
    pub address: u64,
}

/// A parsed dump. Stacks are kept in the order they were written.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    /// The mean sampling interval in bytes (0: every allocation was recorded).
    pub interval: u64,
    pub pid: Option<u64>,
    pub reason: Option<Reason>,
    /// Seconds since the epoch (0 or absent: unknown).
    pub time: Option<u64>,
    pub exe: Option<String>,
    pub samples: Option<u64>,
    /// (id, return addresses, the allocation call's caller first).
    pub stacks: Vec<(u64, Vec<u64>)>,
    pub totals: HashMap<u64, Total>,
    pub live: Vec<LiveBlock>,
    pub maps: Vec<Mapping>,
    /// Path of a loaded object -> its GNU build id, lowercase hex.
    pub build_ids: HashMap<String, String>,
    /// Ids that `total` or `live` lines name without a `stack` line (id 0: the writer's
    /// table was full; others: interned while the dump was being written). Each is in
    /// `stacks` with no addresses, so its bytes count, as an unknown stack.
    pub unknown_stacks: Vec<u64>,
}

/// A dump that does not follow FORMAT.md, with the line where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based; 0 for the dump as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// A number in decimal, or hex with a `0x` prefix.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None => s.parse().ok(),
    }
}

/// Reads the `n` numeric fields of a record, no more and no fewer.
fn numbers<const N: usize>(
    line: usize,
    kind: &str,
    fields: &[&str],
    what: &str,
) -> Result<[u64; N], ParseError> {
    if fields.len() != N {
        return err(
            line,
            format!("`{kind}` takes {N} fields ({what}), found {}", fields.len()),
        );
    }
    let mut out = [0; N];
    for (slot, field) in out.iter_mut().zip(fields) {
        *slot = parse_number(field).ok_or_else(|| ParseError {
            line,
            message: format!("`{kind}`: `{field}` is not a number"),
        })?;
    }
    Ok(out)
}

impl Dump {
    /// Parses a whole dump. A dump must start with `pagebreak-profile 1` and end with `end`;
    /// records of unknown kinds are skipped, as FORMAT.md asks.
    pub fn parse(text: &str) -> Result<Dump, ParseError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) => {
                let mut f = first.split_ascii_whitespace();
                if f.next() != Some("pagebreak-profile") {
                    return err(
                        1,
                        "not a pagebreak heap profile (no `pagebreak-profile` header)",
                    );
                }
                match f.next().and_then(|v| v.parse::<u32>().ok()) {
                    Some(VERSION) => {}
                    Some(v) => {
                        return err(
                            1,
                            format!("dump version {v}; this reader knows version {VERSION}"),
                        )
                    }
                    None => return err(1, "the header has no version number"),
                }
            }
            None => return err(0, "empty dump"),
        }
        // Checked first: a dump cut anywhere, even mid-record, is reported as cut rather
        // than by whatever half line the cut left.
        if !text.lines().any(|l| l.trim_end() == "end") {
            return err(
                0,
                "truncated dump: no `end` line (the writer did not finish; \
                 was the process killed while writing?)",
            );
        }

        let mut dump = Dump::default();
        let mut stack_ids = HashSet::new();
        let mut interval = None;
        let mut ended = false;
        for (n, line) in lines {
            if ended {
                if line.trim().is_empty() {
                    continue;
                }
                return err(n, "text after `end`");
            }
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
            match kind {
                "" => continue,
                "end" if fields.is_empty() => ended = true,
                "interval" => interval = Some(numbers::<1>(n, kind, &fields, "bytes")?[0]),
                "pid" => dump.pid = Some(numbers::<1>(n, kind, &fields, "the process id")?[0]),
                "time" => dump.time = Some(numbers::<1>(n, kind, &fields, "seconds")?[0]),
                "samples" => {
                    dump.samples = Some(numbers::<1>(n, kind, &fields, "a count")?[0]);
                }
                "reason" => match fields.as_slice() {
                    [r] => dump.reason = Some(Reason::parse(r)),
                    _ => return err(n, "`reason` takes one word"),
                },
                // Paths may hold spaces: the rest of the line, as written.
                "exe" => {
                    if rest.is_empty() {
                        return err(n, "`exe` without a path");
                    }
                    dump.exe = Some(rest.to_string());
                }
                "stack" => {
                    let Some((id, addrs)) = fields.split_first() else {
                        return err(n, "`stack` without an id");
                    };
                    let id = parse_number(id).ok_or_else(|| ParseError {
                        line: n,
                        message: format!("`stack`: id `{id}` is not a number"),
                    })?;
                    if !stack_ids.insert(id) {
                        return err(n, format!("stack {id} defined twice"));
                    }
                    let addrs = addrs
                        .iter()
                        .map(|a| {
                            parse_number(a).ok_or_else(|| ParseError {
                                line: n,
                                message: format!("`stack {id}`: `{a}` is not an address"),
                            })
                        })
                        .collect::<Result<Vec<u64>, _>>()?;
                    dump.stacks.push((id, addrs));
                }
                "total" => {
                    let [id, count, requested, estimated] = numbers::<4>(
                        n,
                        kind,
                        &fields,
                        "stack id, count, requested bytes, estimated bytes",
                    )?;
                    note_stack(&mut dump, &stack_ids, id);
                    if dump
                        .totals
                        .insert(
                            id,
                            Total {
                                count,
                                requested_bytes: requested,
                                estimated_bytes: estimated,
                            },
                        )
                        .is_some()
                    {
                        return err(n, format!("two `total` lines for stack {id}"));
                    }
                }
                "live" => {
                    let [stack, size, align, thread, address] = numbers::<5>(
                        n,
                        kind,
                        &fields,
                        "stack id, size, alignment, thread, address",
                    )?;
                    note_stack(&mut dump, &stack_ids, stack);
                    dump.live.push(LiveBlock {
                        stack,
                        size,
                        align,
                        thread,
                        address,
                    });
                }
                "map" => match Mapping::parse(rest) {
                    Some(m) => dump.maps.push(m),
                    None => return err(n, format!("`map`: not a /proc/self/maps line: `{rest}`")),
                },
                "buildid" => {
                    // The path may hold spaces; the build id is the last field.
                    let Some((path, id)) = rest.rsplit_once(' ') else {
                        return err(n, "`buildid` takes a path and a hex build id");
                    };
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return err(n, format!("`buildid`: `{id}` is not hex"));
                    }
                    dump.build_ids
                        .insert(path.to_string(), id.to_ascii_lowercase());
                }
                _ => {} // a kind added later: skipped (FORMAT.md)
            }
        }
        // A `stack` line that came after its first use is no longer unknown.
        dump.unknown_stacks.retain(|id| !stack_ids.contains(id));
        for &id in &dump.unknown_stacks {
            dump.stacks.push((id, Vec::new()));
        }
        dump.interval = interval.ok_or_else(|| ParseError {
            line: 0,
            message: "no `interval` line".into(),
        })?;
        Ok(dump)
    }
}

/// A stack id named by `total` or `live` without its `stack` line: kept as an unknown stack
/// (FORMAT.md: id 0, or a stack interned while the dump was written).
fn note_stack(dump: &mut Dump, ids: &HashSet<u64>, id: u64) {
    if !ids.contains(&id) && !dump.unknown_stacks.contains(&id) {
        dump.unknown_stacks.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_decimal_and_hex() {
        assert_eq!(parse_number("42"), Some(42));
        assert_eq!(parse_number("0x2a"), Some(42));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("0xffffffffffffffff"), Some(u64::MAX));
    }
}
