//! `cargo xtask bench`: pagebreak side by side with glibc, mimalloc (Debian's, and the
//! newest 2.x and 3.x), jemalloc and snmalloc.
//!
//! 1. Builds libpagebreak.so for both backends, and the peers' preload libraries from the
//!    sources their crates carry ([`peers`]).
//! 2. Runs the criterion micro-benchmarks (`alloc-bench/benches/micro.rs`).
//! 3. Runs the macro workloads (`alloc-bench/workloads/`, `alloc-bench/rust-workload`) as
//!    whole processes, each under every allocator (LD_PRELOAD, glibc without; the Rust
//!    program is built once per allocator crate instead), repetitions interleaved, timed
//!    from outside by a small C runner that reports wall time and the child's rusage.
//! 4. Prints one table and writes `target/pagebreak-bench/report.md` and `report.svg`.
//!    Ratios are to one reference: the fastest mimalloc of the run.
//!
//! Benchmarks measure; nothing here judges a number.

mod micro;
pub mod peers;
mod report;
mod stats;
mod svg;
mod workloads;

use crate::build::{self, Backend};
use crate::cmd;
use peers::{Allocator, Load};
use stats::{Cell, Row, Run, Status, Summary, Table};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};
use workloads::{workload_args, Invocation, Workload, WORKLOADS};

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--micro-only | --macro-only] [--reps N]
                         [--workloads a,b,..] [--allocators a,b,..]

  --quick          smaller workloads, shorter criterion runs, 3 repetitions (~6 min)
  --micro-only     only the criterion micro-benchmarks
  --macro-only     only the whole-program workloads
  --reps N         repetitions of each macro workload per allocator (default 5, quick 3)
  --workloads L    only these macro workloads (comma-separated names)
  --allocators L   only these allocators in the macro workloads (pagebreak-mmap,
                   pagebreak-brk, glibc, mimalloc-deb, mimalloc-2, mimalloc-3,
                   jemalloc, snmalloc)

mimalloc-deb and jemalloc are Debian's libraries (apt-get install libmimalloc2.0
libjemalloc2; or set ALLOC_BENCH_MIMALLOC / ALLOC_BENCH_JEMALLOC to a .so);
mimalloc-2, mimalloc-3 and snmalloc are compiled from the sources of the crates
libmimalloc-sys and snmalloc-sys (needs cc and g++). Ratios are to the fastest mimalloc.
Writes target/pagebreak-bench/report.md, report.svg and runs.tsv (every run).
";

struct Options {
    quick: bool,
    micro: bool,
    macro_: bool,
    reps: usize,
    workloads: Option<Vec<String>>,
    allocators: Option<Vec<String>>,
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        quick: false,
        micro: true,
        macro_: true,
        reps: 0,
        workloads: None,
        allocators: None,
    };
    let list = |v: Option<&String>, flag: &str| -> Result<Vec<String>, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        Ok(v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--micro-only" => o.macro_ = false,
            "--macro-only" => o.micro = false,
            "--reps" => {
                o.reps = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--reps needs a positive number")?
            }
            "--workloads" => o.workloads = Some(list(it.next(), a)?),
            "--allocators" => o.allocators = Some(list(it.next(), a)?),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    if !o.micro && !o.macro_ {
        return Err("--micro-only and --macro-only exclude each other".into());
    }
    for n in o.workloads.iter().flatten() {
        if !WORKLOADS.iter().any(|w| w.name == n) {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            return Err(format!(
                "unknown workload `{n}` (there are: {})",
                names.join(", ")
            ));
        }
    }
    for n in o.allocators.iter().flatten() {
        if !ALL_ALLOCATORS.contains(&n.as_str()) {
            return Err(format!(
                "unknown allocator `{n}` (there are: {})",
                ALL_ALLOCATORS.join(", ")
            ));
        }
    }
    if o.reps == 0 {
        o.reps = if o.quick { 3 } else { 5 };
    }
    Ok(Some(o))
}

/// How the reference is chosen, in words (report and terminal).
pub const REFERENCE: &str = "the fastest mimalloc of this run (lowest geometric mean of \
    the wall times over the workloads every mimalloc finished)";

/// The mimallocs: the fastest of them in a run is the reference of its ratios.
const MIMALLOCS: [&str; 3] = ["mimalloc-deb", "mimalloc-2", "mimalloc-3"];
const ALL_ALLOCATORS: [&str; 8] = [
    "pagebreak-mmap",
    "pagebreak-brk",
    "glibc",
    "mimalloc-deb",
    "mimalloc-2",
    "mimalloc-3",
    "jemalloc",
    "snmalloc",
];
/// The micro-benchmarks' allocators (`benches/micro.rs`): through their crates, in one
/// process, so only one mimalloc (two would clash by symbol name): the crate's default, 3.x.
const MICRO_ALLOCATORS: [&str; 6] = [
    "pagebreak-mmap",
    "pagebreak-brk",
    "glibc",
    "mimalloc-3",
    "jemalloc",
    "snmalloc",
];

pub fn main(args: &[String]) -> Result<(), String> {
    let Some(opts) = parse_args(args)? else {
        return Ok(());
    };
    let root = cmd::root();
    let out_dir = root.join("target").join("pagebreak-bench");
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let started = SystemTime::now();
    let load_before = loadavg();
    let mut notes = Vec::new();
    // (workload or micro case, allocator, what happened)
    let mut failures = Vec::new();

    // 1. Both flavours of the preload library; a failed build is reported, not fatal,
    // so the other allocators still get measured.
    let mut allocators = Vec::new();
    for backend in Backend::ALL {
        let name = format!("pagebreak-{}", backend.name());
        let wanted = opts.allocators.as_ref().is_none_or(|l| l.contains(&name));
        if !opts.macro_ || !wanted {
            continue;
        }
        progress(&format!(
            "building libpagebreak.so ({} backend)",
            backend.name()
        ));
        let (load, what) = match build::build(backend, true, false) {
            Ok(b) => {
                let what =
                    format!(
                    "`LD_PRELOAD={}`; Rust: `pagebreak::{}PageBreak` (alloc-ffi without `c-api`)",
                    display_argv(&root, &[b.so.display().to_string()]),
                    if backend == Backend::Mmap { "Mmap" } else { "Brk" }
                );
                (Load::Preload(b.so), what)
            }
            Err(e) => {
                eprintln!("bench: {name}: build failed: {e}");
                let e = format!("build failed: {e}");
                (Load::Broken(e.clone()), format!("not measured: {e}"))
            }
        };
        allocators.push(Allocator { name, load, what });
    }
    // The peers: Debian's libraries, and the ones built from the crates' sources.
    if opts.macro_ {
        progress("the other allocators (building mimalloc 2.x/3.x and snmalloc once)");
        allocators.extend(peers::find_allocators(opts.allocators.as_ref(), &mut notes));
        // The order of the columns: ours, then glibc, the mimallocs, jemalloc, snmalloc.
        allocators.sort_by_key(|a| ALL_ALLOCATORS.iter().position(|n| *n == a.name));
    }

    // 2. Criterion.
    let mut micro_table = None;
    if opts.micro {
        let home = root.join("target").join("criterion");
        progress(&format!(
            "criterion micro-benchmarks{}",
            if opts.quick { " (quick)" } else { "" }
        ));
        run_criterion(&opts, &home, &mut notes, &mut failures);
        micro_table = Some(micro::collect(&home, started));
    }

    // 3. Whole programs.
    let mut table = None;
    let mut libraries = Vec::new();
    let mut workload_info = Vec::new();
    if opts.macro_ {
        if allocators.is_empty() {
            return Err("no allocator left to benchmark".into());
        }
        libraries = allocators
            .iter()
            .map(|a| (a.name.clone(), a.what.clone()))
            .collect();
        let bin = out_dir.join("bin");
        let runner = workloads::compile(&root, &bin, "runner", workloads::Lang::C)?;
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let mut selected = Vec::new();
        for w in WORKLOADS {
            if opts
                .workloads
                .as_ref()
                .is_some_and(|l| !l.iter().any(|n| n == w.name))
            {
                continue;
            }
            let args = workload_args(if opts.quick { w.quick } else { w.full }, cores);
            progress(&format!("preparing {}", w.name));
            let inv = match workloads::prepare(&root, &bin, w, &allocators, &args) {
                Ok(inv) => inv,
                Err(e) => {
                    eprintln!("bench: skipping {}: {e}", w.name);
                    notes.push(format!("Workload {} skipped: {e}.", w.name));
                    continue;
                }
            };
            // The command line as the report shows it (the first allocator's).
            let shown = inv
                .iter()
                .flatten()
                .next()
                .map(|i| display_argv(&root, &i.argv))
                .unwrap_or_default();
            workload_info.push((w.name.to_string(), w.what.to_string(), shown));
            selected.push((w, inv));
        }
        let t = run_macro(
            &opts,
            &runner,
            &allocators,
            &selected,
            &out_dir,
            &mut failures,
        )?;
        println!("\n{}", report::text_table(&t));
        println!(
            "ratios are to {}, {}\n",
            t.allocators[t.baseline], REFERENCE
        );
        let vs = report::text_pagebreak_vs(&t);
        if !vs.is_empty() {
            println!("geometric means:\n{vs}");
        }
        table = Some(t);
    }

    // 4. Report files.
    let machine = report::Machine::probe();
    let date = report::utc_date(SystemTime::now());
    let micro_allocators: Vec<String> = MICRO_ALLOCATORS.iter().map(|s| s.to_string()).collect();
    if let Some(t) = &micro_table {
        if t.is_empty() {
            notes.push("No micro-benchmark results were produced.".into());
        }
    }
    // Other work on the machine distorts every number: say how busy it was.
    notes.push(format!(
        "load average (1 min) at start / end: {} / {} (other processes share the CPUs)",
        load_before,
        loadavg()
    ));
    let info = report::ReportInfo {
        date: date.clone(),
        machine: &machine,
        command: format!("cargo xtask bench {}", args.join(" "))
            .trim_end()
            .to_string(),
        reps: opts.reps,
        libraries,
        workloads: workload_info,
        failures,
        notes,
    };
    let md = report::markdown(
        &info,
        table.as_ref(),
        micro_table.as_ref(),
        &micro_allocators,
    );
    let md_path = out_dir.join("report.md");
    fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    println!("wrote {}", md_path.display());
    if let Some(t) = &table {
        let title = format!("pagebreak vs. {}", others(t));
        let subtitle = format!(
            "{}, {} cores, kernel {}; {date}; median of {} run{}{}",
            machine.cpu,
            machine.cores,
            machine.kernel,
            opts.reps,
            if opts.reps == 1 { "" } else { "s" },
            if opts.quick { " (--quick)" } else { "" }
        );
        let svg_path = out_dir.join("report.svg");
        fs::write(&svg_path, svg::chart(t, &title, &subtitle))
            .map_err(|e| format!("{}: {e}", svg_path.display()))?;
        println!("wrote {}", svg_path.display());
    }
    Ok(())
}

/// Runs the criterion suite, echoing its output. If an allocator crashes or hangs the
/// bench process, that is recorded and the suite runs again without it, so one broken
/// allocator does not cost the others their results (those already written are kept).
fn run_criterion(
    opts: &Options,
    home: &Path,
    notes: &mut Vec<String>,
    failures: &mut Vec<(String, String, String)>,
) {
    // No output for this long means a hang: criterion prints every few seconds.
    const STALL: Duration = Duration::from_secs(300);
    let mut excluded: Vec<String> = Vec::new();
    loop {
        let mut c = cmd::cargo();
        c.args(["bench", "-p", "alloc-bench", "--bench", "micro"])
            .env("CRITERION_HOME", home)
            .env("ALLOC_BENCH_EXCLUDE", excluded.join(","))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if opts.quick {
            c.env("ALLOC_BENCH_QUICK", "1");
        }
        eprintln!("$ {}", cmd::show(&c));
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                notes.push(format!("The micro-benchmarks could not start: {e}."));
                return;
            }
        };
        // Both streams through one channel: results come on stdout, criterion's progress
        // ("Benchmarking <id>") and any allocator's dying words on stderr.
        let (tx, rx) = mpsc::channel::<(bool, String)>();
        let out = child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        for (is_err, pipe) in [(false, out), (true, err)] {
            let (tx, Some(pipe)) = (tx.clone(), pipe) else {
                continue;
            };
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // The bench id criterion is working on: "<case>/<allocator>".
        let mut current: Option<String> = None;
        // The last lines on stderr that are not progress, for the failure report.
        let mut last_words: Vec<String> = Vec::new();
        let mut bench_status: Option<String> = None;
        let mut hung = false;
        loop {
            match rx.recv_timeout(STALL) {
                Ok((false, line)) => println!("{line}"),
                Ok((true, line)) => {
                    eprintln!("{line}");
                    if let Some(rest) = line.strip_prefix("Benchmarking ") {
                        let id = rest.split(':').next().unwrap_or(rest).trim();
                        current = Some(id.to_string());
                        last_words.clear();
                    } else if let Some(why) = line
                        .trim()
                        .strip_prefix("process didn't exit successfully:")
                        .and_then(|r| r.rsplit_once('('))
                    {
                        // cargo's account of the bench process: "(signal: 6, SIGABRT: ...)".
                        bench_status = Some(why.1.trim_end_matches(')').to_string());
                    } else if !line.trim().is_empty()
                        && !line.starts_with("error: bench failed")
                        && !line.starts_with("Caused by:")
                    {
                        last_words.push(line.trim().to_string());
                        if last_words.len() > 4 {
                            last_words.remove(0);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    hung = true;
                    kill_group(child.id());
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait();
        let ok = !hung && status.as_ref().is_ok_and(|s| s.success());
        if ok {
            return;
        }
        let what = if hung {
            format!("hung (no output for {} s, killed)", STALL.as_secs())
        } else {
            match (&bench_status, &status) {
                (Some(b), _) => format!("died ({b})"),
                (None, Ok(s)) => format!("failed ({})", cmd::describe(*s)),
                (None, Err(e)) => format!("failed ({e})"),
            }
        };
        // The allocator is the last part of the bench id; without one, the bench did not
        // even build or start, and running it again would not help.
        let culprit = current
            .as_deref()
            .and_then(|id| id.rsplit_once('/'))
            .map(|(_, a)| a.to_string())
            .filter(|a| ALL_ALLOCATORS.contains(&a.as_str()) && !excluded.contains(a));
        match (culprit, current) {
            (Some(a), Some(id)) => {
                let mut msg = format!("the micro-benchmark process {what} in `{id}`");
                if !last_words.is_empty() {
                    msg += &format!("; stderr: `{}`", last_words.join(" / "));
                }
                eprintln!("bench: {msg}; running the suite again without {a}");
                failures.push((format!("micro: {id}"), a.clone(), msg.clone()));
                notes.push(format!(
                    "{a} was left out of the micro-benchmarks after {msg}; its results \
                     before that are kept."
                ));
                excluded.push(a);
            }
            _ => {
                eprintln!("bench: micro-benchmarks {what}");
                notes.push(format!("The micro-benchmarks did not finish: they {what}."));
                return;
            }
        }
    }
}

/// SIGKILLs a process group (std has no kill(2); the kill utility does it).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn others(t: &Table) -> String {
    let v: Vec<&str> = t
        .allocators
        .iter()
        .filter(|a| !a.starts_with("pagebreak"))
        .map(String::as_str)
        .collect();
    v.join(", ")
}

fn progress(msg: &str) {
    eprintln!("\n==> bench: {msg}");
}

fn display_argv(root: &Path, argv: &[String]) -> String {
    let prefix = format!("{}/", root.display());
    argv.iter()
        .map(|a| a.strip_prefix(&prefix).unwrap_or(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn signal_name(n: i32) -> &'static str {
    match n {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        _ => "signal",
    }
}

/// Runs every selected workload under every allocator, repetitions interleaved.
fn run_macro(
    opts: &Options,
    runner: &Path,
    allocators: &[Allocator],
    workloads: &[(&Workload, Vec<Result<Invocation, String>>)],
    out_dir: &Path,
    failures: &mut Vec<(String, String, String)>,
) -> Result<Table, String> {
    // A hang must not stall the whole run; healthy runs take seconds.
    let timeout_s: u64 = if opts.quick { 60 } else { 180 };
    let total = workloads.len() * opts.reps * allocators.len();
    let mut done = 0;
    let mut tsv = String::from(
        "workload\tallocator\trep\twall_s\tmaxrss_kb\tuser_s\tsys_s\tminflt\tstatus\n",
    );
    let mut rows = Vec::new();
    for (wi, (w, invocations)) in workloads.iter().enumerate() {
        let shown = invocations
            .iter()
            .flatten()
            .next()
            .map(|i| display_argv(&cmd::root(), &i.argv))
            .unwrap_or_default();
        progress(&format!(
            "workload {}/{}: {} ({shown})",
            wi + 1,
            workloads.len(),
            w.name,
        ));
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); allocators.len()];
        let mut failed: Vec<Option<String>> = invocations
            .iter()
            .map(|i| i.as_ref().err().cloned())
            .collect();
        for rep in 1..=opts.reps {
            for (ai, a) in allocators.iter().enumerate() {
                done += 1;
                if failed[ai].is_some() {
                    continue;
                }
                let Ok(inv) = &invocations[ai] else { continue };
                let head = format!(
                    "[{done:>3}/{total}] {:<21} rep {rep}/{} {:<14}",
                    w.name, opts.reps, a.name
                );
                let mut c = Command::new(runner);
                c.arg("-t").arg(timeout_s.to_string());
                if let Some(so) = &inv.preload {
                    c.arg("-e").arg(format!("LD_PRELOAD={}", so.display()));
                }
                for (k, v) in &inv.env {
                    c.arg("-e").arg(format!("{k}={v}"));
                }
                c.arg("--").args(&inv.argv);
                let cap = cmd::capture(&mut c, Duration::from_secs(timeout_s + 30))?;
                let line = String::from_utf8_lossy(&cap.stdout);
                let parsed = stats::parse_runner_line(line.trim());
                let (run, status) = match parsed {
                    Ok(x) => x,
                    Err(e) => {
                        return Err(format!(
                            "runner failed ({}): {e}\n{}",
                            cap.outcome(),
                            cap.stderr_tail(10)
                        ))
                    }
                };
                let status_s = match status {
                    Status::Exit(0) => "ok".to_string(),
                    Status::Exit(n) => format!("exit {n}"),
                    Status::Signal(n) => format!("signal {n}"),
                    Status::Timeout => "timeout".into(),
                };
                tsv += &format!(
                    "{}\t{}\t{rep}\t{:.6}\t{:.0}\t{:.6}\t{:.6}\t{:.0}\t{status_s}\n",
                    w.name, a.name, run.wall_s, run.maxrss_kb, run.user_s, run.sys_s, run.minflt
                );
                match status {
                    Status::Exit(0) => {
                        eprintln!(
                            "{head} {:>9}  {:>10}",
                            report::fmt_time(run.wall_s),
                            report::fmt_rss(run.maxrss_kb)
                        );
                        runs[ai].push(run);
                    }
                    bad => {
                        let what = match bad {
                            Status::Exit(n) => format!("exited with code {n}"),
                            Status::Signal(n) => {
                                format!("killed by signal {n} ({})", signal_name(n))
                            }
                            Status::Timeout => format!("timed out after {timeout_s} s (hung?)"),
                        };
                        let what = format!("{what} in rep {rep}/{}", opts.reps);
                        let tail = cap.stderr_tail(6);
                        eprintln!("{head} FAILED: {what}; its remaining reps are skipped\n{tail}");
                        let detail = if tail.trim().is_empty() {
                            what.clone()
                        } else {
                            let t: Vec<&str> = tail.lines().map(str::trim).collect();
                            format!("{what}; stderr: `{}`", t.join(" / "))
                        };
                        failures.push((w.name.to_string(), a.name.clone(), detail));
                        failed[ai] = Some(what);
                    }
                }
            }
        }
        let cells = (0..allocators.len())
            .map(|ai| match &failed[ai] {
                Some(why) => Cell::Failed(why.clone()),
                None => {
                    Summary::of(&runs[ai]).map_or_else(|| Cell::Failed("no runs".into()), Cell::Ok)
                }
            })
            .collect();
        rows.push(Row {
            workload: w.name.to_string(),
            cells,
        });
    }
    let tsv_path = out_dir.join("runs.tsv");
    fs::write(&tsv_path, tsv).map_err(|e| format!("{}: {e}", tsv_path.display()))?;
    let mut t = Table {
        allocators: allocators.iter().map(|a| a.name.clone()).collect(),
        baseline: 0,
        rows,
    };
    // One reference for every ratio: the fastest mimalloc; glibc if none ran.
    let mimallocs: Vec<usize> = (0..t.allocators.len())
        .filter(|&c| MIMALLOCS.contains(&t.allocators[c].as_str()))
        .collect();
    t.baseline = t
        .fastest(&mimallocs)
        .or_else(|| t.allocators.iter().position(|a| a == "glibc"))
        .unwrap_or(0);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options() {
        let o = parse_args(&args("--quick")).unwrap().unwrap();
        assert!(o.quick && o.micro && o.macro_);
        assert_eq!(o.reps, 3);
        let o = parse_args(&args("--macro-only --reps 7 --workloads larson,large"))
            .unwrap()
            .unwrap();
        assert!(!o.micro && o.macro_);
        assert_eq!(o.reps, 7);
        assert_eq!(o.workloads.unwrap(), ["larson", "large"]);
        assert_eq!(parse_args(&[]).unwrap().unwrap().reps, 5);
        assert!(parse_args(&args("--micro-only --macro-only")).is_err());
        assert!(parse_args(&args("--reps 0")).is_err());
        assert!(parse_args(&args("--bogus")).is_err());
        assert!(parse_args(&args("--workloads larson,nope")).is_err());
        assert!(parse_args(&args("--allocators tcmalloc")).is_err());
        let o = parse_args(&args("--allocators glibc,mimalloc-3"))
            .unwrap()
            .unwrap();
        assert_eq!(o.allocators.unwrap(), ["glibc", "mimalloc-3"]);
    }
}
