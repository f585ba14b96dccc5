//! A server-like soak for whatever malloc the process has (`cargo xtask soak` preloads
//! pagebreak). Worker threads come and go; each allocates blocks whose size mix drifts
//! over a cycle (small strings, then buffers of a few KiB, a few large and huge blocks), and
//! puts each one
//! * into a shared table (half the blocks: the block it displaces was almost always made by
//!   another thread, often one that has exited, so about half the frees are remote),
//! * into a table of long-lived blocks (1 in 100 looks there; a block stays there from a
//!   quarter of a cycle to two cycles),
//! * or into its own list, freed by itself later.
//!
//! Every block is checked when it is freed (see `workloads::block`). Once a second the main
//! thread samples RSS and throughput (written to `--csv`); once a `--report-secs` it prints
//! them; at the end it drains every table and judges the RSS curve (`workloads::verdict`).
//!
//! usage: soak --minutes N [--cycle-secs S] [--workers W] [--report-secs R] [--csv PATH]
//!             [--rss-advisory]
//!        soak --judge RUN.csv [--cycle-secs S]   (the verdict on a recorded run)

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use workloads::{block, rss_bytes, verdict, Rng};

const SHARED_SLOTS: usize = 16384;
const LONG_SLOTS: usize = 4096;
/// Blocks a worker keeps for itself.
const LOCAL: usize = 512;

static SHARED: [AtomicPtr<u8>; SHARED_SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SHARED_SLOTS];
static LONG: [AtomicPtr<u8>; LONG_SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; LONG_SLOTS];
/// When each long-lived block may go (milliseconds since the start).
static LONG_UNTIL: [AtomicU64; LONG_SLOTS] = [const { AtomicU64::new(0) }; LONG_SLOTS];
static OPS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static FREED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

struct Config {
    judge: Option<String>,
    /// Report the RSS verdict but exit 0 on it (contents are still checked): for runs too
    /// short to leave the ramp (CI's 2 minutes; the 30-minute runs ramp for 6-8 minutes).
    rss_advisory: bool,
    minutes: f64,
    cycle_s: f64,
    workers: usize,
    report_s: f64,
    csv: Option<String>,
}

fn parse() -> Result<Config, String> {
    let mut c = Config {
        judge: None,
        rss_advisory: false,
        minutes: 0.0,
        cycle_s: 0.0,
        workers: 8,
        report_s: 60.0,
        csv: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--rss-advisory" {
            c.rss_advisory = true;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .ok_or(format!("{} needs a value", args[i]))?;
        let num = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("bad number `{value}`"))
        };
        match args[i].as_str() {
            "--minutes" => c.minutes = num()?,
            "--cycle-secs" => c.cycle_s = num()?,
            "--workers" => c.workers = num()? as usize,
            "--report-secs" => c.report_s = num()?,
            "--csv" => c.csv = Some(value.clone()),
            "--judge" => c.judge = Some(value.clone()),
            other => return Err(format!("unknown argument `{other}`")),
        }
        i += 2;
    }
    if c.judge.is_some() {
        return Ok(c);
    }
    if c.minutes <= 0.0 {
        return Err(
            "usage: soak --minutes N [--cycle-secs S] [--workers W] [--report-secs R] [--csv PATH]"
                .into(),
        );
    }
    if c.cycle_s <= 0.0 {
        // Two-minute cycles for real soaks; four cycles at least for short runs.
        c.cycle_s = (c.minutes * 60.0 / 4.0).min(120.0);
    }
    Ok(c)
}

/// A request size for time `t` (seconds): the share of KiB-sized buffers swings between 5%
/// and 55% over a cycle; 0.5% large blocks (32-512 KiB), 0.02% huge ones (1-4 MiB).
fn size_at(t: f64, cycle_s: f64, rng: &mut Rng) -> usize {
    let swing = (std::f64::consts::TAU * t / cycle_s).sin();
    let r = rng.unit();
    if r < 0.0002 {
        rng.log_uniform(1 << 20, 4 << 20)
    } else if r < 0.005 {
        rng.log_uniform(32 << 10, 512 << 10)
    } else if r < 0.30 + 0.25 * swing {
        rng.log_uniform(512, 32 << 10)
    } else {
        rng.log_uniform(16, 512)
    }
}

fn free_checked(p: *mut u8) {
    if !p.is_null() {
        // SAFETY: every pointer in the tables and lists came from block::make and is taken
        // out of them exactly once (swap) before it is freed.
        unsafe { block::check_and_free(p) };
        FREED.fetch_add(1, Ordering::Relaxed);
    }
}

fn worker(seed: u64, budget: u64, start: Instant, cycle_s: f64) {
    let mut rng = Rng::new(seed);
    let mut local: Vec<*mut u8> = Vec::with_capacity(LOCAL);
    let mut pending = 0;
    for _ in 0..budget {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        let now = start.elapsed();
        let p = block::make(
            size_at(now.as_secs_f64(), cycle_s, &mut rng),
            rng.next_u64(),
        );
        if p.is_null() {
            eprintln!("soak: out of memory");
            std::process::exit(3);
        }
        let r = rng.below(100);
        if r < 50 {
            let slot = &SHARED[rng.below(SHARED_SLOTS as u64) as usize];
            free_checked(slot.swap(p, Ordering::AcqRel));
        } else if r < 51 {
            let i = rng.below(LONG_SLOTS as u64) as usize;
            let now_ms = now.as_millis() as u64;
            if LONG_UNTIL[i].load(Ordering::Relaxed) <= now_ms {
                let life = (cycle_s * 1000.0 * (0.25 + 1.75 * rng.unit())) as u64;
                LONG_UNTIL[i].store(now_ms + life, Ordering::Relaxed);
                free_checked(LONG[i].swap(p, Ordering::AcqRel));
            } else {
                free_checked(p);
            }
        } else if local.len() < LOCAL {
            local.push(p);
        } else {
            let i = rng.below(LOCAL as u64) as usize;
            free_checked(std::mem::replace(&mut local[i], p));
        }
        pending += 1;
        if pending == 1024 {
            OPS.fetch_add(pending, Ordering::Relaxed);
            pending = 0;
        }
    }
    OPS.fetch_add(pending, Ordering::Relaxed);
    // Leave: free half of our blocks, hand the other half to the shared table (freed later
    // by other threads, after this one's heap was abandoned).
    for (k, p) in local.into_iter().enumerate() {
        if k % 2 == 0 {
            free_checked(p);
        } else {
            let slot = &SHARED[rng.below(SHARED_SLOTS as u64) as usize];
            free_checked(slot.swap(p, Ordering::AcqRel));
        }
    }
    LIVE_THREADS.fetch_sub(1, Ordering::Relaxed);
}

fn main() {
    let cfg = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    if let Some(path) = &cfg.judge {
        std::process::exit(if judge_file(path, cfg.cycle_s) { 0 } else { 1 });
    }
    let start = Instant::now();
    let total = Duration::from_secs_f64(cfg.minutes * 60.0);
    let mut csv = cfg.csv.as_ref().map(|path| {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {path}: {e}")),
        );
        writeln!(
            f,
            "seconds,rss_bytes,ops_per_s,threads_live,threads_started"
        )
        .unwrap();
        f
    });
    println!(
        "soak: {} min, {} workers at a time, size-mix cycle {:.0} s",
        cfg.minutes, cfg.workers, cfg.cycle_s
    );
    let mut rng = Rng::new(0x50a4);
    let mut handles: Vec<thread::JoinHandle<()>> = Vec::new();
    let mut started = 0u64;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut last = (Instant::now(), 0u64);
    let mut next_sample = Duration::from_secs(1);
    let mut next_report = Duration::from_secs_f64(cfg.report_s);
    let (mut report_ops, mut report_peak, mut report_t) = (0u64, 0u64, 0.0f64);
    while start.elapsed() < total {
        handles.retain(|h| !h.is_finished());
        while handles.len() < cfg.workers {
            let (seed, budget) = (rng.next_u64(), rng.log_uniform(20_000, 2_000_000) as u64);
            let cycle_s = cfg.cycle_s;
            LIVE_THREADS.fetch_add(1, Ordering::Relaxed);
            handles.push(thread::spawn(move || worker(seed, budget, start, cycle_s)));
            started += 1;
        }
        thread::sleep(Duration::from_millis(20));
        let now = start.elapsed();
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            let rss = rss_bytes();
            let ops = OPS.load(Ordering::Relaxed);
            let rate = (ops - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), ops);
            samples.push((now.as_secs_f64(), rss as f64));
            report_peak = report_peak.max(rss);
            if let Some(f) = csv.as_mut() {
                let _ = writeln!(
                    f,
                    "{:.1},{rss},{rate:.0},{},{started}",
                    now.as_secs_f64(),
                    LIVE_THREADS.load(Ordering::Relaxed)
                );
            }
        }
        if now >= next_report {
            next_report += Duration::from_secs_f64(cfg.report_s);
            let ops = OPS.load(Ordering::Relaxed);
            let secs = now.as_secs_f64();
            println!(
                "[{:>3}:{:02}] RSS {:7.1} MiB (peak {:7.1}), {:6.2} M ops/s, {} threads started",
                now.as_secs() / 60,
                now.as_secs() % 60,
                rss_bytes() as f64 / 1048576.0,
                report_peak as f64 / 1048576.0,
                (ops - report_ops) as f64 / (secs - report_t) / 1e6,
                started
            );
            (report_ops, report_peak, report_t) = (ops, 0, secs);
        }
    }
    STOP.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("a worker panicked");
    }
    for slot in SHARED.iter().chain(LONG.iter()) {
        free_checked(slot.swap(std::ptr::null_mut(), Ordering::AcqRel));
    }
    let ops = OPS.load(Ordering::Relaxed);
    println!(
        "done: {:.1} M operations ({:.2} M/s), {} threads, {} blocks checked and freed, all intact; RSS after draining {:.1} MiB",
        ops as f64 / 1e6,
        ops as f64 / start.elapsed().as_secs_f64() / 1e6,
        started,
        FREED.load(Ordering::Relaxed),
        rss_bytes() as f64 / 1048576.0
    );
    let pass = judge(
        &samples,
        cfg.cycle_s,
        csv.as_mut().map(|f| f as &mut dyn Write),
    );
    if let Some(mut f) = csv {
        f.flush().expect("writing the CSV");
    }
    if !pass {
        if cfg.rss_advisory {
            println!(
                "(--rss-advisory: the RSS verdict is reported, not enforced; contents were intact)"
            );
        } else {
            std::process::exit(1);
        }
    }
}

/// Print the verdict on `samples` (and append it to the CSV); whether the run passed.
fn judge(samples: &[(f64, f64)], cycle_s: f64, csv: Option<&mut dyn Write>) -> bool {
    let Some(v) = verdict::judge(samples, cycle_s) else {
        println!("verdict: none (the run is shorter than three cycles)");
        return false;
    };
    let mib = |b: f64| b / 1048576.0;
    println!(
        "cycle peaks (MiB): {}",
        v.peaks
            .iter()
            .map(|p| format!("{:.1}", mib(*p)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "plateau {:.1} MiB; last cycle's peak {:.1} MiB ({:+.1}%, limit +{:.0}%): {}; trend {:+.1} MiB over the run ({:+.1}%, limit +{:.0}%): {}",
        mib(v.plateau),
        mib(v.end),
        (v.end / v.plateau - 1.0) * 100.0,
        verdict::TOLERANCE * 100.0,
        if v.end_ok() { "ok" } else { "FAIL" },
        mib(v.trend),
        v.trend / v.plateau * 100.0,
        verdict::TOLERANCE * 100.0,
        if v.trend_ok() { "ok" } else { "FAIL" },
    );
    if let Some(f) = csv {
        // For the chart: the plateau and the limit the last cycle was held to.
        let _ = writeln!(
            f,
            "# cycle_s={cycle_s} plateau_bytes={:.0} limit_bytes={:.0} verdict={}",
            v.plateau,
            v.plateau * (1.0 + verdict::TOLERANCE),
            if v.pass() { "PASS" } else { "FAIL" }
        );
    }
    println!("verdict: {}", if v.pass() { "PASS" } else { "FAIL" });
    v.pass()
}

/// `soak --judge RUN.csv [--cycle-secs S]`: the verdict on a recorded run (its cycle from the
/// CSV's last line unless given), with the verdict line of the CSV rewritten.
fn judge_file(path: &str, cycle_s: f64) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut cycle = cycle_s;
    let mut samples = Vec::new();
    let mut kept = Vec::new();
    for line in text.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            if cycle <= 0.0 {
                cycle = meta
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("cycle_s="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
            }
            continue;
        }
        kept.push(line);
        let f: Vec<f64> = line.split(',').filter_map(|v| v.parse().ok()).collect();
        if f.len() >= 2 {
            samples.push((f[0], f[1]));
        }
    }
    assert!(cycle > 0.0, "{path}: no cycle_s line; pass --cycle-secs");
    let mut out = kept.join("\n").into_bytes();
    out.push(b'\n');
    let pass = judge(&samples, cycle, Some(&mut out));
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{path}: {e}"));
    pass
}
