//! `cargo xtask profile -- PROGRAM ARGS...`: runs a program preloaded with heap profiling on
//! (`PAGEBREAK_PROFILE`, alloc-ffi/src/profile.rs), then reads the dump it writes at exit
//! with pagebreak-prof: a flame graph, a pprof profile and the top list. Opens nothing; prints
//! the paths.

use crate::build;
use crate::cmd;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

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
    let reader = build_reader()?;

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

/// Builds the reader (release: symbolising a large program's DWARF unoptimised is slow).
fn build_reader() -> Result<PathBuf, String> {
    let mut c = cmd::cargo();
    c.args(["build", "--quiet", "--release", "-p", "pagebreak-prof"]);
    let status = c
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", cmd::show(&c)))?;
    if !status.success() {
        return Err(format!(
            "`{}` failed: {}",
            cmd::show(&c),
            cmd::describe(status)
        ));
    }
    Ok(cmd::root().join("target/release/pagebreak-prof"))
}
