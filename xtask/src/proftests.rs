//! The heap-profile tests in tests/profile, run with profiling on (`PAGEBREAK_PROFILE`):
//! call-site shares of the live heap attributed within ±10 points, freed blocks gone from the
//! live profile, and dumps under threads, signals and fork that complete without deadlock.
//! The raw dumps (pagebreak-prof/FORMAT.md) are parsed here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::build;
use crate::cmd;
use crate::ctests::{self, CTest};
use crate::misuse;
use crate::test::{Stop, Tally};

const TIMEOUT: Duration = Duration::from_secs(120);

fn dir() -> PathBuf {
    cmd::root().join("tests").join("profile")
}

/// Compiles every `tests/profile/*.c` into `bins` as `profile-<name>`.
pub fn compile_all(bins: &Path) -> Result<Vec<CTest>, String> {
    std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let mut tests = Vec::new();
    for src in ctests::c_sources(&dir(), "profile tests")? {
        tests.push(ctests::compile_one(&src, bins, "profile")?);
    }
    Ok(tests)
}

/// Compiles the tests as one counted check; an empty list if that failed.
pub fn compile(t: &mut Tally, bins: &Path) -> Result<Vec<CTest>, Stop> {
    let mut tests = Vec::new();
    t.check("compile tests/profile/*.c", || {
        tests = compile_all(bins)?;
        Ok(())
    })?;
    Ok(tests)
}

/// A parsed raw dump: stacks, live blocks.
pub struct Dump {
    pub interval: u64,
    pub stacks: HashMap<u64, Vec<u64>>,
    /// (stack id, size) of each live block.
    pub live: Vec<(u64, u64)>,
    pub complete: bool,
}

fn num(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("bad number {s:?}: {e}"))
}

/// Parse a raw dump (FORMAT.md version 1).
pub fn parse(path: &Path) -> Result<Dump, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some("pagebreak-profile 1") {
        return Err(format!(
            "{}: no `pagebreak-profile 1` header",
            path.display()
        ));
    }
    let mut dump = Dump {
        interval: 0,
        stacks: HashMap::new(),
        live: Vec::new(),
        complete: false,
    };
    for line in lines {
        let mut f = line.split(' ');
        match f.next() {
            Some("interval") => dump.interval = num(f.next().unwrap_or(""))?,
            Some("stack") => {
                let id = num(f.next().unwrap_or(""))?;
                let frames = f.map(num).collect::<Result<Vec<_>, _>>()?;
                dump.stacks.insert(id, frames);
            }
            Some("live") => {
                let id = num(f.next().unwrap_or(""))?;
                let size = num(f.next().unwrap_or(""))?;
                if !dump.stacks.contains_key(&id) && id != 0 {
                    return Err(format!("live block of unknown stack {id}"));
                }
                dump.live.push((id, size));
            }
            Some("end") => dump.complete = true,
            _ => {}
        }
    }
    if !dump.complete {
        return Err(format!("{}: truncated (no `end` line)", path.display()));
    }
    Ok(dump)
}

/// The bytes a sample of `size` stands for (as the reader weights live blocks).
pub fn weight(size: u64, interval: u64) -> f64 {
    let s = size.max(1) as f64;
    s / -(-s / interval as f64).exp_m1()
}

/// Runtime address ranges of `names` in `bin`: the program prints `site NAME ADDR` lines;
/// `nm -S` gives each function's size.
pub fn site_ranges(bin: &Path, stdout: &str) -> Result<Vec<(String, u64, u64)>, String> {
    let nm = Command::new("nm")
        .arg("-S")
        .arg(bin)
        .output()
        .map_err(|e| format!("nm: {e}"))?;
    let symbols = String::from_utf8_lossy(&nm.stdout).into_owned();
    let mut ranges = Vec::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 || f[0] != "site" {
            continue;
        }
        let start = num(f[2])?;
        let size = symbols
            .lines()
            .find_map(|l| {
                let s: Vec<&str> = l.split_whitespace().collect();
                (s.len() == 4 && s[3] == f[1]).then(|| u64::from_str_radix(s[1], 16).ok())?
            })
            .ok_or_else(|| format!("nm -S: no size for {}", f[1]))?;
        ranges.push((f[1].to_string(), start, start + size));
    }
    if ranges.is_empty() {
        return Err("the program printed no `site` lines".into());
    }
    Ok(ranges)
}

/// Live bytes per site (estimated), and the total of all live samples: a stack belongs to
/// the site holding its first frame inside one; `first_frames` counts stacks whose very
/// first frame is in a site (the allocation call's caller first).
pub fn site_shares(dump: &Dump, ranges: &[(String, u64, u64)]) -> (Vec<f64>, f64, usize) {
    let mut per_site = vec![0f64; ranges.len()];
    let mut total = 0f64;
    let mut first_frames = 0;
    for &(id, size) in &dump.live {
        let w = weight(size, dump.interval);
        total += w;
        let frames = dump.stacks.get(&id).map_or(&[][..], |v| &v[..]);
        let hit = frames.iter().enumerate().find_map(|(depth, &pc)| {
            ranges
                .iter()
                .position(|r| pc > r.1 && pc <= r.2)
                .map(|site| (depth, site))
        });
        if let Some((depth, site)) = hit {
            per_site[site] += w;
            first_frames += (depth == 0) as usize;
        }
    }
    (per_site, total, first_frames)
}

fn run_with_profile(
    test: &CTest,
    so: &Path,
    interval: &str,
    args: &[&Path],
    profile_path: Option<&Path>,
) -> Result<String, String> {
    let mut c = Command::new(&test.bin);
    c.args(args)
        .env("LD_PRELOAD", so)
        .env("PAGEBREAK_PROFILE", interval);
    match profile_path {
        Some(p) => c.env("PAGEBREAK_PROFILE_PATH", p),
        None => c.env_remove("PAGEBREAK_PROFILE_PATH"),
    };
    let run = cmd::capture(&mut c, TIMEOUT)?;
    if !run.success() {
        return Err(format!(
            "{}: {}\n{}",
            test.name,
            run.outcome(),
            run.stderr_tail(20)
        ));
    }
    Ok(String::from_utf8_lossy(&run.stdout).into_owned())
}

fn scratch(name: &str, backend: &str) -> Result<PathBuf, String> {
    let d = cmd::root()
        .join("target")
        .join("pagebreak-tests")
        .join("profile")
        .join(format!("{name}-{backend}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

/// tests/profile/shares.c: 60/30/10% of the live heap, within ±10 points, at the default
/// interval; after the frees none of them is live.
fn check_shares(test: &CTest, so: &Path, backend: &str) -> Result<(), String> {
    let d = scratch("shares", backend)?;
    let (live, freed) = (d.join("live.prof"), d.join("freed.prof"));
    let out = run_with_profile(test, so, "1", &[&live, &freed], Some(&d.join("exit.prof")))?;
    let ranges = site_ranges(&test.bin, &out)?;
    let dump = parse(&live)?;
    if dump.interval != 512 * 1024 {
        return Err(format!(
            "interval {} (PAGEBREAK_PROFILE=1 means 512 KiB)",
            dump.interval
        ));
    }
    let (sites, total, first) = site_shares(&dump, &ranges);
    let in_sites: f64 = sites.iter().sum();
    let want = [60.0, 30.0, 10.0];
    let mut report = String::new();
    for (i, (name, _, _)) in ranges.iter().enumerate() {
        let share = 100.0 * sites[i] / in_sites;
        report += &format!("{name} {share:.1}% (want {}%) ", want[i]);
        if (share - want[i]).abs() > 10.0 {
            return Err(format!("attribution off by more than 10 points: {report}"));
        }
    }
    // The sites hold 256 MiB; everything else live is a few MiB at most.
    let estimated = in_sites / (1 << 20) as f64;
    if !(192.0..320.0).contains(&estimated) {
        return Err(format!(
            "{estimated:.0} MiB estimated live in the sites, 256 MiB held"
        ));
    }
    if (first as f64) < 0.9 * dump.live.len() as f64 * (in_sites / total) {
        return Err(format!(
            "only {first} of {} live samples start at the allocation's caller",
            dump.live.len()
        ));
    }
    let after = parse(&freed)?;
    let (sites_after, _, _) = site_shares(&after, &ranges);
    if sites_after.iter().any(|&b| b > 0.0) {
        return Err(format!(
            "freed blocks still live in the profile: {sites_after:?}"
        ));
    }
    // The exit dump is written too.
    parse(&d.join("exit.prof"))?;
    eprintln!(
        "       {report}; {} samples, {estimated:.0} MiB estimated of 256",
        dump.live.len()
    );
    Ok(())
}

/// tests/profile/stress.c in `mode`: every dump written is complete (oom: and says so).
fn check_stress(test: &CTest, so: &Path, backend: &str, mode: &str) -> Result<(), String> {
    let d = scratch(&format!("stress-{mode}"), backend)?;
    let signal_path = d.join("signal.prof");
    // A short interval: many samples, records taken and given back all the time.
    run_with_profile(
        test,
        so,
        "16384",
        &[Path::new(mode), &d],
        Some(&signal_path),
    )?;
    let mut dumps = 0;
    for entry in std::fs::read_dir(&d).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let dump = parse(&path)?;
        if dump.stacks.is_empty() {
            return Err(format!("{}: no stacks", path.display()));
        }
        dumps += 1;
    }
    // threads: 20 requested + exit; signal and oom: one file (the signal's last dump, then
    // the exit dump; the oom dump); fork: 20 children and the exit dump.
    let want = if mode == "signal" || mode == "oom" {
        1
    } else {
        21
    };
    if dumps < want {
        return Err(format!("{dumps} dumps written, want {want}"));
    }
    if mode == "oom" {
        let text = std::fs::read_to_string(&signal_path).map_err(|e| e.to_string())?;
        if !text.lines().any(|l| l == "reason oom") {
            return Err("the dump after a failed malloc does not say `reason oom`".into());
        }
    }
    Ok(())
}

/// Runs every profile test under one backend's library.
pub fn check_all(t: &mut Tally, tests: &[CTest], so: &Path, backend: &str) -> Result<(), Stop> {
    t.heading(&format!("heap profiles, {backend} backend"));
    for test in tests {
        match test.name.as_str() {
            "shares" => t.check(&format!("profile shares 60/30/10 ({backend})"), || {
                check_shares(test, so, backend)
            })?,
            "stress" => {
                for mode in ["threads", "signal", "fork", "oom"] {
                    t.check(&format!("profile under {mode} ({backend})"), || {
                        check_stress(test, so, backend, mode)
                    })?;
                }
            }
            other => t.check(&format!("profile {other} ({backend})"), || {
                Err(format!(
                    "tests/profile/{other}.c has no check in xtask/src/proftests.rs"
                ))
            })?,
        }
    }
    Ok(())
}

/// `cargo xtask proftest [--backend mmap|brk] [--keep-going]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let (backend, keep_going, _) = misuse::parse_args(args, false)?;
    let backend = backend.unwrap_or(build::Backend::Mmap);
    let so = build::build(backend, true, false)?.so;
    let tests = compile_all(&ctests::bin_dir())?;
    let mut t = Tally::new(keep_going);
    let stopped = check_all(&mut t, &tests, &so, backend.name()).is_err();
    t.finish(stopped)
}
