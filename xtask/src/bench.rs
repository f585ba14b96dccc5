//! `cargo xtask bench`: pagebreak side by side with glibc, mimalloc and jemalloc.
//!
//! 1. Builds libpagebreak.so for both backends.
//! 2. Runs the criterion micro-benchmarks (`alloc-bench/benches/micro.rs`).
//! 3. Runs the macro workloads (`alloc-bench/workloads/`) as whole processes, each under
//!    every allocator (LD_PRELOAD; glibc without), repetitions interleaved, timed from
//!    outside by a small C runner that reports wall time and the child's rusage.
//! 4. Prints one table and writes `target/pagebreak-bench/report.md` and `report.svg`.
//!
//! Benchmarks measure; nothing here judges a number.

mod micro;
mod report;
mod stats;
mod svg;

use crate::build::{self, Backend};
use crate::cmd;
use stats::{Cell, Row, Run, Status, Summary, Table};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--micro-only | --macro-only] [--reps N]
                         [--workloads a,b,..] [--allocators a,b,..]

  --quick          smaller workloads, shorter criterion runs, 3 repetitions (< 5 min)
  --micro-only     only the criterion micro-benchmarks
  --macro-only     only the whole-program workloads
  --reps N         repetitions of each macro workload per allocator (default 5, quick 3)
  --workloads L    only these macro workloads (comma-separated names)
  --allocators L   only these allocators in the macro workloads
                   (pagebreak-mmap, pagebreak-brk, glibc, mimalloc, jemalloc)

Writes target/pagebreak-bench/report.md, report.svg and runs.tsv (every run).
Set ALLOC_BENCH_MIMALLOC / ALLOC_BENCH_JEMALLOC to a .so to override the search.
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

/// A macro workload: a C program from alloc-bench/workloads or the Python script.
struct Workload {
    name: &'static str,
    what: &'static str,
    program: Program,
    /// Arguments of a full run (about 1-5 s each on glibc on a 2-core VM) and a quick one.
    full: &'static [&'static str],
    quick: &'static [&'static str],
}

enum Program {
    C(&'static str),
    Python(&'static str),
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson",
        what: "server threads replace random blocks (16-512 B), hand some to the next thread, and retire to fresh threads",
        program: Program::C("larson"),
        full: &["12000", "4"],
        quick: &["2000", "4"],
    },
    Workload {
        name: "xmalloc",
        what: "2 producer threads allocate (16-256 B), 2 consumer threads free",
        program: Program::C("xmalloc"),
        full: &["20000", "2", "2"],
        quick: &["4000", "2", "2"],
    },
    Workload {
        name: "cache-scratch",
        what: "threads free a block from the main thread, then allocate and write 8-byte objects (false sharing)",
        program: Program::C("cache_scratch"),
        full: &["10000"],
        quick: &["4000"],
    },
    Workload {
        name: "binary-trees",
        what: "complete binary trees of 16-byte nodes built and dropped, one long-lived (1 thread)",
        program: Program::C("binary_trees"),
        full: &["19"],
        quick: &["17"],
    },
    Workload {
        name: "large",
        what: "2 threads replace blocks of 64 KiB-8 MiB and write every page",
        program: Program::C("large"),
        full: &["12000", "2"],
        quick: &["2000", "2"],
    },
    Workload {
        name: "realloc",
        what: "2 threads grow 1000 strings each by small appends (exact-size realloc), shrink or drop them",
        program: Program::C("realloc"),
        full: &["4000", "2"],
        quick: &["800", "2"],
    },
    Workload {
        name: "python",
        what: "CPython with PYTHONMALLOC=malloc: dicts, JSON, strings, sorting",
        program: Program::Python("py_alloc.py"),
        full: &["10"],
        quick: &["2"],
    },
];

const MIMALLOC: &str = "mimalloc";
const ALL_ALLOCATORS: [&str; 5] = [
    "pagebreak-mmap",
    "pagebreak-brk",
    "glibc",
    "mimalloc",
    "jemalloc",
];

/// How an allocator is brought into a workload.
#[derive(Clone)]
enum Load {
    /// LD_PRELOAD this library.
    Preload(PathBuf),
    /// glibc: the program as it is.
    Native,
    /// Could not be built: every cell becomes this failure.
    Broken(String),
}

struct Allocator {
    name: String,
    load: Load,
}

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
    let mut pb = Vec::new();
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
        let load = match build::build(backend, true, false) {
            Ok(b) => Load::Preload(b.so),
            Err(e) => {
                eprintln!("bench: {name}: build failed: {e}");
                Load::Broken(format!("build failed: {e}"))
            }
        };
        pb.push(Allocator { name, load });
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
        let allocators = find_allocators(&opts, pb, &mut notes);
        if allocators.is_empty() {
            return Err("no allocator left to benchmark".into());
        }
        for a in &allocators {
            libraries.push((
                a.name.clone(),
                match &a.load {
                    Load::Preload(p) => {
                        let shown = display_argv(&root, &[p.display().to_string()]);
                        match debian_package(p) {
                            Some(pkg) => format!("`LD_PRELOAD={shown}` (Debian {pkg})"),
                            None => format!("`LD_PRELOAD={shown}`"),
                        }
                    }
                    Load::Native => "the system's malloc, no preload".into(),
                    Load::Broken(e) => format!("not measured: {e}"),
                },
            ));
        }
        let bin = out_dir.join("bin");
        let runner = compile_c(&root, &bin, "runner")?;
        let mut selected = Vec::new();
        for w in WORKLOADS {
            if opts
                .workloads
                .as_ref()
                .is_some_and(|l| !l.iter().any(|n| n == w.name))
            {
                continue;
            }
            let argv = match prepare(&root, &bin, w) {
                Ok(argv) => argv,
                Err(e) => {
                    eprintln!("bench: skipping {}: {e}", w.name);
                    notes.push(format!("Workload {} skipped: {e}.", w.name));
                    continue;
                }
            };
            let args = if opts.quick { w.quick } else { w.full };
            let mut argv = argv;
            argv.extend(args.iter().map(|s| s.to_string()));
            workload_info.push((
                w.name.to_string(),
                w.what.to_string(),
                display_argv(&root, &argv),
            ));
            selected.push((w, argv));
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
        let vs = report::text_pagebreak_vs(&t);
        if !vs.is_empty() {
            println!("geometric means:\n{vs}");
        }
        table = Some(t);
    }

    // 4. Report files.
    let machine = report::Machine::probe();
    let date = report::utc_date(SystemTime::now());
    let micro_allocators: Vec<String> = ALL_ALLOCATORS.iter().map(|s| s.to_string()).collect();
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

/// pagebreak's two flavours (built above), glibc, and whichever of mimalloc and jemalloc
/// are installed; the ones missing are skipped with a message.
fn find_allocators(opts: &Options, pb: Vec<Allocator>, notes: &mut Vec<String>) -> Vec<Allocator> {
    let mut v = pb;
    v.push(Allocator {
        name: "glibc".into(),
        load: Load::Native,
    });
    for (name, env, stem, pkg) in [
        (
            "mimalloc",
            "ALLOC_BENCH_MIMALLOC",
            "libmimalloc.so",
            "libmimalloc2.0",
        ),
        (
            "jemalloc",
            "ALLOC_BENCH_JEMALLOC",
            "libjemalloc.so",
            "libjemalloc2",
        ),
    ] {
        match find_library(env, stem) {
            Some(p) => v.push(Allocator {
                name: name.into(),
                load: Load::Preload(p),
            }),
            None => {
                let msg = format!(
                    "{name} skipped: no {stem}* found (apt-get install {pkg}, or set {env})"
                );
                eprintln!("bench: {msg}");
                notes.push(msg);
            }
        }
    }
    if let Some(l) = &opts.allocators {
        v.retain(|a| l.contains(&a.name));
    }
    v
}

fn find_library(env: &str, stem: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/local/lib",
        "/usr/lib64",
        "/usr/lib",
    ];
    for d in dirs {
        let Ok(rd) = fs::read_dir(d) else { continue };
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(stem))
            })
            .collect();
        // The shortest name is the soname link (libmimalloc.so.2 over libmimalloc.so.2.0).
        found.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
        if let Some(p) = found.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// "package version" of the Debian package that installed `lib`, if dpkg knows it.
fn debian_package(lib: &Path) -> Option<String> {
    let real = fs::canonicalize(lib).ok()?;
    let out = Command::new("dpkg-query")
        .arg("-S")
        .arg(&real)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pkg = text.lines().next()?.split(':').next()?.trim().to_string();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", &pkg])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then(|| format!("{pkg} {version}"))
}

/// Compiles `alloc-bench/workloads/<stem>.c` into `bin`, when the source is newer.
fn compile_c(root: &Path, bin: &Path, stem: &str) -> Result<PathBuf, String> {
    let dir = root.join("alloc-bench").join("workloads");
    let src = dir.join(format!("{stem}.c"));
    let out = bin.join(stem);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_src = [src.clone(), dir.join("common.h")]
        .iter()
        .filter_map(|p| mtime(p))
        .max();
    if mtime(&out).is_some_and(|o| newest_src.is_some_and(|s| o >= s)) {
        return Ok(out);
    }
    fs::create_dir_all(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut c = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    c.args(["-O2", "-pthread", "-o"]).arg(&out).arg(&src);
    cmd::run(&mut c)?;
    Ok(out)
}

/// The command line of a workload, without its size arguments.
fn prepare(root: &Path, bin: &Path, w: &Workload) -> Result<Vec<String>, String> {
    match w.program {
        Program::C(stem) => Ok(vec![compile_c(root, bin, stem)?.display().to_string()]),
        Program::Python(script) => {
            let py = find_python().ok_or("no python3 found")?;
            let script = root.join("alloc-bench").join("workloads").join(script);
            Ok(vec![py.display().to_string(), script.display().to_string()])
        }
    }
}

/// The real interpreter, not a shim script (pyenv's would be timed and preloaded too).
fn find_python() -> Option<PathBuf> {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).is_file() {
            return Some(p.into());
        }
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && p.is_file()).then_some(p)
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
    workloads: &[(&Workload, Vec<String>)],
    out_dir: &Path,
    failures: &mut Vec<(String, String, String)>,
) -> Result<Table, String> {
    // A hang must not stall the whole run; healthy runs take seconds.
    let timeout_s: u64 = if opts.quick { 60 } else { 180 };
    let baseline = allocators
        .iter()
        .position(|a| a.name == MIMALLOC)
        .or_else(|| allocators.iter().position(|a| a.name == "glibc"))
        .unwrap_or(0);
    let total = workloads.len() * opts.reps * allocators.len();
    let mut done = 0;
    let mut tsv = String::from(
        "workload\tallocator\trep\twall_s\tmaxrss_kb\tuser_s\tsys_s\tminflt\tstatus\n",
    );
    let mut rows = Vec::new();
    for (wi, (w, argv)) in workloads.iter().enumerate() {
        progress(&format!(
            "workload {}/{}: {} ({})",
            wi + 1,
            workloads.len(),
            w.name,
            display_argv(&cmd::root(), argv)
        ));
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); allocators.len()];
        let mut failed: Vec<Option<String>> = allocators
            .iter()
            .map(|a| match &a.load {
                Load::Broken(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        for rep in 1..=opts.reps {
            for (ai, a) in allocators.iter().enumerate() {
                done += 1;
                if failed[ai].is_some() {
                    continue;
                }
                let head = format!(
                    "[{done:>3}/{total}] {:<13} rep {rep}/{} {:<15}",
                    w.name, opts.reps, a.name
                );
                let mut c = Command::new(runner);
                c.arg("-t").arg(timeout_s.to_string());
                if let Load::Preload(so) = &a.load {
                    c.arg("-e").arg(format!("LD_PRELOAD={}", so.display()));
                }
                if matches!(w.program, Program::Python(_)) {
                    c.args(["-e", "PYTHONMALLOC=malloc"]);
                }
                c.arg("--").args(argv);
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
    Ok(Table {
        allocators: allocators.iter().map(|a| a.name.clone()).collect(),
        baseline,
        rows,
    })
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
        let o = parse_args(&args("--allocators glibc,mimalloc"))
            .unwrap()
            .unwrap();
        assert_eq!(o.allocators.unwrap(), ["glibc", "mimalloc"]);
    }

    #[test]
    fn every_workload_source_exists() {
        let dir = cmd::root().join("alloc-bench").join("workloads");
        for w in WORKLOADS {
            let f = match w.program {
                Program::C(stem) => format!("{stem}.c"),
                Program::Python(s) => s.to_string(),
            };
            assert!(dir.join(&f).is_file(), "{f}");
            assert!(
                !w.full.is_empty() && w.full.len() == w.quick.len(),
                "{}",
                w.name
            );
        }
        assert!(dir.join("runner.c").is_file());
    }
}
