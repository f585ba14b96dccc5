//! `cargo xtask profile -- PROGRAM ARGS...`: runs a program preloaded with heap profiling on
//! (`PAGEBREAK_PROFILE`, alloc-ffi/src/profile.rs), then reads the dump it writes at exit
//! with pagebreak-prof: a flame graph, a pprof profile and the top list. Opens nothing; prints
//! the paths.

use crate::build;
use crate::cmd;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask profile [--backend mmap|brk] [--debug] [--interval BYTES] [--alloc_space]
                           [-o DIR] -- PROGRAM ARGS...

Runs PROGRAM with pagebreak preloaded and PAGEBREAK_PROFILE on (the mean sampling interval:
512 KiB unless --interval), its dump going to DIR/heap.prof (default
target/pagebreak-profile), then writes DIR/heap.svg (a flame graph of the live heap, or of
everything allocated with --alloc_space) and DIR/heap.pb.gz (pprof: `go tool pprof -top
DIR/heap.pb.gz`), prints the top list, and the two paths last.";

pub fn main(args: &[String]) -> Result<(), String> {
    let split = args.iter().position(|a| a == "--");
    let (opts, program) = match split {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut dir = cmd::root().join("target").join("pagebreak-profile");
    let mut interval = "1".to_string(); // the option's own default: 512 KiB
    let mut view = "--inuse_space";
    let mut rest = Vec::new();
    let mut it = opts.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "--out" => dir = it.next().ok_or("-o needs a directory")?.into(),
            "--interval" => {
                let v = it.next().ok_or("--interval needs a number of bytes")?;
                if v.parse::<u64>().map_or(true, |n| n < 2) {
                    return Err(format!("--interval takes bytes (2 or more), not `{v}`"));
                }
                interval = v.clone();
            }
            "--alloc_space" | "--alloc-space" => view = "--alloc_space",
            "--inuse_space" | "--inuse-space" => view = "--inuse_space",
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(a.clone()),
        }
    }
    let opts = build::parse_options(&rest).map_err(|e| format!("{e}\n\n{USAGE}"))?;
    let Some((program, program_args)) = program.split_first() else {
        return Err(USAGE.into());
    };
    let built = build::build(opts.backend, opts.release, true)?;
    let reader = build_reader("release", "release")?;

    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dump = dir.join("heap.prof");
    let svg = dir.join("heap.svg");
    let pprof = dir.join("heap.pb.gz");
    for stale in [&dump, &svg, &pprof] {
        let _ = fs::remove_file(stale);
    }
    // The program's children inherit the path and write their own dumps at exit; the
    // parent exits last, so its dump is the one left.
    let mut c = Command::new(program);
    c.args(program_args)
        .env("LD_PRELOAD", crate::run::preload_value(&built.so))
        .env("PAGEBREAK_PROFILE", &interval)
        .env("PAGEBREAK_PROFILE_PATH", &dump);
    let status = c
        .status()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if !dump.is_file() {
        return Err(format!(
            "`{}` ({}) wrote no profile to {} (a program killed by a signal never reaches exit)",
            cmd::show(&c),
            cmd::describe(status),
            dump.display()
        ));
    }
    if !status.success() {
        eprintln!(
            "profile: `{}` ended with {}; reading its dump anyway",
            cmd::show(&c),
            cmd::describe(status)
        );
    }
    let mut r = Command::new(&reader);
    r.arg(view)
        .arg("--text")
        .arg("--svg")
        .arg(&svg)
        .arg("--pprof")
        .arg(&pprof)
        .arg(&dump);
    cmd::run(&mut r)?;
    println!("{}", svg.display());
    println!("{}", pprof.display());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}`: {}", cmd::show(&c), cmd::describe(status)))
    }
}

/// Builds the reader with cargo profile `profile` and returns its path under `target/dir`.
/// `profile` builds it for `cargo xtask profile` (symbolising a large program's DWARF
/// unoptimised is slow); the tests take the `test` profile `cargo test --workspace` already
/// built (cargo's up-to-date check, where a plain `cargo build` would rebuild every dependency
/// at another opt-level).
fn build_reader(profile: &str, dir: &str) -> Result<PathBuf, String> {
    let mut c = cmd::cargo();
    c.args([
        "build",
        "--quiet",
        "--profile",
        profile,
        "-p",
        "pagebreak-prof",
    ]);
    cmd::run_silently(&mut c)?;
    Ok(cmd::root().join("target").join(dir).join("pagebreak-prof"))
}

const SITES: [(&str, f64); 3] = [("site_a", 60.0), ("site_b", 30.0), ("site_c", 10.0)];

/// Bytes from the top list's `12.3 MiB` columns.
fn parse_bytes(number: &str, unit: &str) -> Option<f64> {
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The flat bytes of `function` in a top list, if it is listed.
fn flat_of(top: &str, function: &str) -> Option<f64> {
    top.lines()
        .filter(|l| l.ends_with(&format!("  {function}")))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            parse_bytes(f.first()?, f.get(1)?)
        })
}

/// Runs the reader on `dump`; its top list (all functions) on success.
fn read_dump(reader: &Path, dump: &Path, outputs: &[&str]) -> Result<String, String> {
    let mut c = Command::new(reader);
    c.args(["--text", "--top", "0"]).args(outputs).arg(dump);
    let run = cmd::capture(&mut c, Duration::from_secs(120))?;
    if !run.success() {
        return Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            run.outcome(),
            run.stderr_tail(10)
        ));
    }
    Ok(String::from_utf8_lossy(&run.stdout).into_owned())
}

/// End to end: tests/profile/shares.c (three call sites holding 60/30/10% of 256 MiB live)
/// preloaded with profiling on -> its raw dumps -> pagebreak-prof. The top list must give
/// the sites their shares within ±10 points, the flame graph must name them, the pprof file
/// must be written, and after the frees the live profile must not show them.
pub fn check_reader(shares: &Path, so: &Path) -> Result<(), String> {
    let reader = build_reader("test", "debug")?;
    let dir = cmd::root().join("target/pagebreak-tests/profile/reader");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (live, freed) = (dir.join("live.prof"), dir.join("freed.prof"));
    let mut c = Command::new(shares);
    c.arg(&live)
        .arg(&freed)
        .env("LD_PRELOAD", so)
        .env("PAGEBREAK_PROFILE", "1")
        .env("PAGEBREAK_PROFILE_PATH", dir.join("exit.prof"));
    let run = cmd::capture(&mut c, Duration::from_secs(120))?;
    if !run.success() {
        return Err(format!(
            "{}: {}\n{}",
            shares.display(),
            run.outcome(),
            run.stderr_tail(10)
        ));
    }

    let (svg, pprof) = (dir.join("live.svg"), dir.join("live.pb.gz"));
    let svg_arg = svg.to_string_lossy().into_owned();
    let pprof_arg = pprof.to_string_lossy().into_owned();
    let top = read_dump(&reader, &live, &["--svg", &svg_arg, "--pprof", &pprof_arg])?;
    let flats: Vec<f64> = SITES
        .iter()
        .map(|(f, _)| flat_of(&top, f).ok_or_else(|| format!("{f} not in the top list:\n{top}")))
        .collect::<Result<_, _>>()?;
    let in_sites: f64 = flats.iter().sum();
    let mut report = String::new();
    for ((function, want), flat) in SITES.iter().zip(&flats) {
        let share = 100.0 * flat / in_sites;
        report += &format!("{function} {share:.1}% (want {want}%) ");
        if (share - want).abs() > 10.0 {
            return Err(format!(
                "top list off by more than 10 points: {report}\n{top}"
            ));
        }
    }
    let svg_text = fs::read_to_string(&svg).map_err(|e| format!("{}: {e}", svg.display()))?;
    for (function, _) in SITES {
        if !svg_text.contains(&format!("<title>{function} (")) {
            return Err(format!(
                "the flame graph {} has no frame {function}",
                svg.display()
            ));
        }
    }
    if !svg_text.trim_end().ends_with("</svg>") {
        return Err(format!("{}: not a complete SVG", svg.display()));
    }
    let gz = fs::read(&pprof).map_err(|e| format!("{}: {e}", pprof.display()))?;
    if !gz.starts_with(&[0x1f, 0x8b]) {
        return Err(format!("{}: not gzip", pprof.display()));
    }

    let after = read_dump(&reader, &freed, &[])?;
    if let Some((f, _)) = SITES.iter().find(|(f, _)| flat_of(&after, f).is_some()) {
        return Err(format!("{f} is still live after the frees:\n{after}"));
    }
    eprintln!("       {report}");
    Ok(())
}
