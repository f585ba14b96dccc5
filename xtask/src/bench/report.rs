//! Renders results: the terminal table, report.md, and the facts about the machine.

use super::micro::MicroTable;
use super::stats::{Cell, Metric, Table};
use std::fmt::Write as _;
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn fmt_time(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

pub fn fmt_rss(kb: f64) -> String {
    let mib = kb / 1024.0;
    if mib >= 100.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

/// One cell of the macro table: "1.23 s 1.05x", or what went wrong.
fn macro_cell(t: &Table, row: usize, col: usize, m: Metric, md: bool) -> String {
    match &t.rows[row].cells[col] {
        Cell::Failed(why) if m == Metric::Time => {
            if md {
                format!("**FAILED**: {why}")
            } else {
                format!("FAILED ({})", short_failure(why))
            }
        }
        Cell::Failed(_) => "-".into(),
        Cell::Ok(s) => {
            let v = match m {
                Metric::Time => fmt_time(s.time_s),
                Metric::Rss => fmt_rss(s.rss_kb),
            };
            match t.ratio(row, col, m) {
                Some(r) if md => format!("{v} ({})", fmt_ratio(r)),
                Some(r) => format!("{v} {:>6}", fmt_ratio(r)),
                None => v,
            }
        }
    }
}

/// A failure in a word or two, for the narrow terminal column (report.md has it all).
fn short_failure(why: &str) -> String {
    if let Some(sig) = why.split_once("(SIG").and_then(|(_, r)| r.split_once(')')) {
        return format!("SIG{}", sig.0);
    }
    if why.starts_with("timed out") {
        return "hung".into();
    }
    if let Some(code) = why.strip_prefix("exited with code ") {
        return format!("exit {}", code.split_whitespace().next().unwrap_or("?"));
    }
    let s: String = why.chars().take(16).collect();
    if s.len() < why.len() {
        format!("{s}…")
    } else {
        s
    }
}

fn geomean_cell(t: &Table, col: usize, m: Metric) -> String {
    match t.geomean(col, m) {
        (Some(g), n) if n == t.rows.len() => fmt_ratio(g),
        (Some(g), n) => format!("{} ({n}/{})", fmt_ratio(g), t.rows.len()),
        (None, _) => "-".into(),
    }
}

/// Label and rows (`[workload, metric, cells...]`) shared by the terminal and markdown tables.
fn macro_rows(t: &Table, md: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (r, row) in t.rows.iter().enumerate() {
        for (m, label) in [(Metric::Time, "time"), (Metric::Rss, "peak RSS")] {
            let mut line = vec![
                if m == Metric::Time {
                    row.workload.clone()
                } else {
                    String::new()
                },
                label.to_string(),
            ];
            line.extend((0..t.allocators.len()).map(|c| macro_cell(t, r, c, m, md)));
            rows.push(line);
        }
    }
    for (m, label) in [(Metric::Time, "time"), (Metric::Rss, "peak RSS")] {
        let mut line = vec![
            if m == Metric::Time {
                "geomean".to_string()
            } else {
                String::new()
            },
            label.to_string(),
        ];
        line.extend((0..t.allocators.len()).map(|c| geomean_cell(t, c, m)));
        rows.push(line);
    }
    rows
}

fn header(t: &Table) -> Vec<String> {
    let mut h = vec!["workload".to_string(), "metric".to_string()];
    h.extend(t.allocators.iter().cloned());
    h
}

/// The macro table for the terminal, columns padded to width.
pub fn text_table(t: &Table) -> String {
    let mut rows = vec![header(t)];
    rows.extend(macro_rows(t, false));
    let ncol = rows[0].len();
    let width: Vec<usize> = (0..ncol)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let rule = "-".repeat(width.iter().sum::<usize>() + 2 * (ncol - 1));
    for (i, r) in rows.iter().enumerate() {
        if r[0] == "geomean" {
            out.push_str(&rule);
            out.push('\n');
        }
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let pad = width[c] - s.chars().count();
                // Numbers read best right-aligned; the two label columns left-aligned.
                if c < 2 {
                    format!("{s}{}", " ".repeat(pad))
                } else {
                    format!("{}{s}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&rule);
            out.push('\n');
        }
    }
    out
}

fn md_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// The macro table in markdown.
pub fn md_macro_table(t: &Table) -> String {
    let h = header(t);
    let mut out = md_row(&h);
    let mut sep = vec![":--".to_string(), ":--".to_string()];
    sep.extend(t.allocators.iter().map(|_| "--:".to_string()));
    out += &md_row(&sep);
    for r in macro_rows(t, true) {
        out += &md_row(&r);
    }
    out
}

/// pagebreak's geometric-mean ratios against each other allocator, one row per pagebreak
/// flavour: the headline numbers ("how much faster / leaner than what I use now").
pub fn md_pagebreak_vs(t: &Table) -> Option<String> {
    let ours: Vec<usize> = (0..t.allocators.len())
        .filter(|&c| t.allocators[c].starts_with("pagebreak"))
        .collect();
    let theirs: Vec<usize> = (0..t.allocators.len())
        .filter(|&c| !t.allocators[c].starts_with("pagebreak"))
        .collect();
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let mut h = vec!["geomean of".to_string()];
    h.extend(theirs.iter().map(|&c| format!("÷ {}", t.allocators[c])));
    let mut out = md_row(&h);
    out += &md_row(&h.iter().map(|_| "--".to_string()).collect::<Vec<_>>());
    for &o in &ours {
        for (m, label) in [(Metric::Time, "time"), (Metric::Rss, "peak RSS")] {
            let mut line = vec![format!("{} {label}", t.allocators[o])];
            line.extend(theirs.iter().map(|&c| match t.geomean_vs(o, c, m) {
                (Some(g), n) if n == t.rows.len() => fmt_ratio(g),
                (Some(g), n) => format!("{} ({n}/{})", fmt_ratio(g), t.rows.len()),
                (None, _) => "-".into(),
            }));
            out += &md_row(&line);
        }
    }
    Some(out)
}

/// pagebreak-mmap's wall time divided by each other allocator's, workload by workload:
/// where it stands against each peer, not only against the reference.
pub fn md_pagebreak_per_workload(t: &Table) -> Option<String> {
    let ours = t.allocators.iter().position(|a| a == "pagebreak-mmap")?;
    let theirs: Vec<usize> = (0..t.allocators.len())
        .filter(|&c| !t.allocators[c].starts_with("pagebreak"))
        .collect();
    if theirs.is_empty() {
        return None;
    }
    let mut h = vec!["workload".to_string()];
    h.extend(theirs.iter().map(|&c| format!("÷ {}", t.allocators[c])));
    let mut out = md_row(&h);
    let mut sep = vec![":--".to_string()];
    sep.extend(theirs.iter().map(|_| "--:".to_string()));
    out += &md_row(&sep);
    for row in &t.rows {
        let mut line = vec![row.workload.clone()];
        line.extend(theirs.iter().map(|&c| {
            match (row.cells[ours].summary(), row.cells[c].summary()) {
                (Some(p), Some(o)) if o.time_s > 0.0 => fmt_ratio(p.time_s / o.time_s),
                _ => "-".into(),
            }
        }));
        out += &md_row(&line);
    }
    Some(out)
}

/// The same as [`md_pagebreak_vs`], as lines for the terminal.
pub fn text_pagebreak_vs(t: &Table) -> String {
    let mut out = String::new();
    for o in (0..t.allocators.len()).filter(|&c| t.allocators[c].starts_with("pagebreak")) {
        for (m, label) in [(Metric::Time, "time"), (Metric::Rss, "peak RSS")] {
            let parts: Vec<String> = (0..t.allocators.len())
                .filter(|&c| !t.allocators[c].starts_with("pagebreak"))
                .filter_map(|c| {
                    let (g, _) = t.geomean_vs(o, c, m);
                    Some(format!("{} of {}", fmt_ratio(g?), t.allocators[c]))
                })
                .collect();
            if !parts.is_empty() {
                let _ = writeln!(out, "{} {label}: {}", t.allocators[o], parts.join(", "));
            }
        }
    }
    out
}

/// CPU time split and page faults: the "why" behind the wall times.
pub fn md_details_table(t: &Table) -> String {
    let mut h = vec!["workload".to_string()];
    h.extend(t.allocators.iter().cloned());
    let mut out = md_row(&h);
    out += &md_row(&h.iter().map(|_| "--".to_string()).collect::<Vec<_>>());
    for row in &t.rows {
        let mut line = vec![row.workload.clone()];
        line.extend(row.cells.iter().map(|c| match c {
            Cell::Ok(s) => format!(
                "{:.2} / {:.2} s, {} flt",
                s.user_s,
                s.sys_s,
                fmt_count(s.minflt)
            ),
            Cell::Failed(_) => "-".into(),
        }));
        out += &md_row(&line);
    }
    out
}

fn fmt_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Micro results as ratios of the median iteration time to the baseline allocator's.
pub fn md_micro_table(m: &MicroTable, allocators: &[String], baseline: &str) -> String {
    let mut h = vec!["case".to_string(), format!("{baseline} (median)")];
    h.extend(allocators.iter().cloned());
    let mut out = md_row(&h);
    let mut sep = vec![":--".to_string()];
    sep.extend((1..h.len()).map(|_| "--:".to_string()));
    out += &md_row(&sep);
    for (group, _) in &m.groups {
        let base = m.get(group, baseline).map(|e| e.median_ns);
        let mut line = vec![
            group.clone(),
            base.map(fmt_ns).unwrap_or_else(|| "-".into()),
        ];
        line.extend(allocators.iter().map(|a| match (m.get(group, a), base) {
            (Some(e), Some(b)) if b > 0.0 => fmt_ratio(e.median_ns / b),
            (Some(e), _) => fmt_ns(e.median_ns),
            (None, _) => "-".into(),
        }));
        out += &md_row(&line);
    }
    out
}

/// Throughput of the `churn_threads/N` cases, so thread scaling can be read directly.
pub fn md_scaling_table(m: &MicroTable, allocators: &[String]) -> Option<String> {
    let mut counts: Vec<(u32, &str)> = m
        .groups
        .iter()
        .filter_map(|(g, _)| {
            let n = g.strip_prefix("churn_threads/")?.parse().ok()?;
            Some((n, g.as_str()))
        })
        .collect();
    if counts.is_empty() {
        return None;
    }
    counts.sort();
    let mut h = vec!["allocator".to_string()];
    h.extend(
        counts
            .iter()
            .map(|(n, _)| format!("{n} thread{}", if *n == 1 { "" } else { "s" })),
    );
    let mut out = md_row(&h);
    out += &md_row(&h.iter().map(|_| "--".to_string()).collect::<Vec<_>>());
    for a in allocators {
        let mut line = vec![a.clone()];
        line.extend(counts.iter().map(|(_, g)| match m.get(g, a) {
            Some(e) if e.median_ns > 0.0 => match e.elements {
                Some(n) => format!("{:.1} M ops/s", n / e.median_ns * 1e3),
                None => fmt_ns(e.median_ns),
            },
            _ => "-".into(),
        }));
        out += &md_row(&line);
    }
    Some(out)
}

/// The machine, for the report header: CPU, cores, memory, kernel.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem: String,
    pub kernel: String,
    pub version: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mem = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kb: f64 = m
                    .lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some(format!("{:.1} GiB", kb / 1024.0 / 1024.0))
            })
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| {
            fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        };
        Machine {
            cpu,
            cores,
            mem,
            kernel: read("/proc/sys/kernel/osrelease"),
            version: read("/proc/version"),
        }
    }
}

/// "YYYY-MM-DD HH:MM UTC" without a date crate.
pub fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Everything report.md says besides the tables, gathered by the caller.
pub struct ReportInfo<'a> {
    pub date: String,
    pub machine: &'a Machine,
    pub command: String,
    pub reps: usize,
    /// (allocator, how it was loaded: library path or "built in")
    pub libraries: Vec<(String, String)>,
    /// Workload name, what it does, and the command line it ran.
    pub workloads: Vec<(String, String, String)>,
    /// Failures in detail: (workload, allocator, message with stderr tail).
    pub failures: Vec<(String, String, String)>,
    pub notes: Vec<String>,
}

pub fn markdown(
    info: &ReportInfo,
    table: Option<&Table>,
    micro: Option<&MicroTable>,
    micro_allocators: &[String],
) -> String {
    let mut o = String::new();
    let m = info.machine;
    let _ = writeln!(o, "# pagebreak benchmarks\n");
    let _ = writeln!(o, "- date: {}", info.date);
    let _ = writeln!(o, "- machine: {}, {} cores, {} RAM", m.cpu, m.cores, m.mem);
    let _ = writeln!(o, "- kernel: {} (`{}`)", m.kernel, m.version);
    let _ = writeln!(o, "- command: `{}`", info.command);
    for n in &info.notes {
        let _ = writeln!(o, "- {n}");
    }
    if let Some(t) = table {
        let base = &t.allocators[t.baseline];
        let _ = writeln!(o, "\n## Whole programs\n");
        let _ = writeln!(
            o,
            "Median of {} repetitions, run interleaved (every allocator once, then again) so \
             drift of the machine hits all alike. Time is wall-clock; peak RSS is the child's \
             `ru_maxrss`. In parentheses: the ratio to **{base}**, {} (below 1 is better). \
             The geomean row is the geometric mean of those ratios over the workloads that \
             ran.\n",
            info.reps,
            super::REFERENCE
        );
        o += &md_macro_table(t);
        if let Some(per) = md_pagebreak_per_workload(t) {
            let _ = writeln!(
                o,
                "\npagebreak-mmap's time divided by each other allocator's, per workload (below \
                 1: pagebreak-mmap is faster):\n"
            );
            o += &per;
        }
        if let Some(vs) = md_pagebreak_vs(t) {
            let _ = writeln!(
                o,
                "\npagebreak against each of the others (geometric mean of the per-workload \
                 ratios; below 1 means pagebreak is faster or smaller):\n"
            );
            o += &vs;
        }
        if !info.failures.is_empty() {
            let _ = writeln!(o, "\n### Failures\n");
            for (w, a, msg) in &info.failures {
                let _ = writeln!(o, "- **{w}** under **{a}**: {msg}");
            }
        }
        let _ = writeln!(
            o,
            "\n### CPU time and page faults\n\nMedian user / system CPU seconds and minor page \
             faults per run.\n"
        );
        o += &md_details_table(t);
        let _ = writeln!(o, "\n### Allocators\n");
        for (a, how) in &info.libraries {
            let _ = writeln!(o, "- {a}: {how}");
        }
        let _ = writeln!(o, "\n### Workloads\n");
        for (w, what, cmd) in &info.workloads {
            let _ = writeln!(o, "- **{w}**: {what} `{cmd}`");
        }
    }
    match micro {
        Some(mt) if !mt.is_empty() => {
            let _ = writeln!(
                o,
                "\n## Micro-benchmarks (criterion, through `GlobalAlloc`)\n"
            );
            let base = if micro_allocators.iter().any(|a| a == "mimalloc-3") {
                "mimalloc-3"
            } else {
                micro_allocators.first().map_or("mimalloc", |s| s.as_str())
            };
            let _ = writeln!(
                o,
                "Median time per iteration of {base}, and each allocator's median as a ratio \
                 to it (below 1 is better). Every allocator is linked into one process through \
                 its crate, so only one mimalloc can be (two clash by symbol name): the \
                 `mimalloc` crate's default, 3.x. Source: `alloc-bench/benches/micro.rs`; raw \
                 numbers in `target/criterion`.\n"
            );
            o += &md_micro_table(mt, micro_allocators, base);
            if let Some(s) = md_scaling_table(mt, micro_allocators) {
                let _ = writeln!(
                    o,
                    "\nThread scaling of the churn (each thread its own 10k live blocks; \
                     throughput of all threads together; the machine has {} cores):\n",
                    m.cores
                );
                o += &s;
            }
        }
        _ => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::super::stats::tests::summary;
    use super::super::stats::Row;
    use super::*;

    fn table() -> Table {
        Table {
            allocators: vec!["pagebreak-mmap".into(), "mimalloc".into()],
            baseline: 1,
            rows: vec![
                Row {
                    workload: "larson".into(),
                    cells: vec![summary(2.0, 2048.0), summary(1.0, 1024.0)],
                },
                Row {
                    workload: "large".into(),
                    cells: vec![
                        Cell::Failed("killed by signal 11 (SIGSEGV) in rep 1/3".into()),
                        summary(0.5, 4096.0),
                    ],
                },
            ],
        }
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3600 * 13 + 60 * 7);
        assert_eq!(utc_date(t), "2000-02-29 13:07 UTC");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_798_675_200);
        assert_eq!(utc_date(t), "2026-12-31 00:00 UTC");
    }

    #[test]
    fn text_table_shows_ratios_failures_and_geomeans() {
        let s = text_table(&table());
        assert!(s.contains("2.00 s  2.00x"), "{s}");
        assert!(s.contains("2.0 MiB  2.00x"), "{s}");
        assert!(s.contains("FAILED (SIGSEGV)"), "{s}");
        assert_eq!(
            short_failure("timed out after 60 s (hung?) in rep 1/3"),
            "hung"
        );
        assert_eq!(short_failure("exited with code 134 in rep 2/3"), "exit 134");
        assert_eq!(
            short_failure("build failed: `cargo build` failed"),
            "build failed: `c…"
        );
        let geo = s.lines().find(|l| l.starts_with("geomean")).unwrap();
        assert!(geo.contains("2.00x (1/2)") && geo.contains("1.00x"), "{s}");
        // Columns line up: each allocator's header ends where its cells end.
        let head = s.lines().next().unwrap();
        let end = head.find("mimalloc").unwrap() + "mimalloc".len();
        for l in s.lines().skip(2).filter(|l| !l.starts_with('-')) {
            assert_eq!(l.chars().count(), end, "{l:?}");
        }
    }

    #[test]
    fn markdown_has_all_sections() {
        let m = Machine {
            cpu: "Test CPU".into(),
            cores: 2,
            mem: "1.0 GiB".into(),
            kernel: "6.1".into(),
            version: "Linux version 6.1".into(),
        };
        let info = ReportInfo {
            date: "2026-01-01 00:00 UTC".into(),
            machine: &m,
            command: "cargo xtask bench --quick".into(),
            reps: 3,
            libraries: vec![("mimalloc".into(), "/usr/lib/libmimalloc.so.2".into())],
            workloads: vec![("larson".into(), "server".into(), "larson 10".into())],
            failures: vec![("large".into(), "pagebreak-mmap".into(), "SIGSEGV".into())],
            notes: vec![],
        };
        let md = markdown(&info, Some(&table()), None, &[]);
        for needle in [
            "Test CPU, 2 cores",
            "kernel: 6.1",
            "| workload | metric | pagebreak-mmap | mimalloc |",
            "| larson | time | 2.00 s (2.00x) | 1.00 s (1.00x) |",
            "**FAILED**: killed by signal 11",
            "### Failures",
            "| geomean | time | 2.00x (1/2) | 1.00x |",
            "| geomean of | ÷ mimalloc |",
            "| pagebreak-mmap time | 2.00x (1/2) |",
            "| pagebreak-mmap peak RSS | 2.00x (1/2) |",
            "the ratio to **mimalloc**, the fastest mimalloc of this run",
            "| workload | ÷ mimalloc |",
            "| larson | 2.00x |",
            "| large | - |",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
    }
}
