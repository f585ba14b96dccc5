//! `cargo xtask threads [--ops N] [--counts 1,2,8,32,128]`: the thread-count sweep
//! (`workloads/src/bin/threads.rs`) under pagebreak (mmap backend) and mimalloc, each
//! preloaded into the same binary; prints a markdown table of throughput and the latency
//! of a single malloc (p50, p99, p99.9, max) per thread count. With `--runs N` (default 3)
//! the allocators take turns N times and each cell is the median of the N runs (the max
//! column: the largest), since a shared machine's load moves single runs by 2x.

use crate::build::{self, Backend};
use crate::cmd;
use std::path::PathBuf;
use std::process::Command;

/// Where Debian's libmimalloc2.0 puts the library.
const MIMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2";

pub fn main(args: &[String]) -> Result<(), String> {
    let mut pass = Vec::new();
    let mut repeats = 3;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                repeats = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--ops" | "--counts" => {
                let v = it.next().ok_or(format!("{a} needs a value"))?;
                pass.extend([a.clone(), v.clone()]);
            }
            other => {
                return Err(format!(
                    "unexpected argument `{other}` (usage: cargo xtask threads [--ops N] [--counts 1,2,8,32,128] [--runs N])"
                ))
            }
        }
    }
    let built = build::build(Backend::Mmap, true, true)?;
    cmd::run(cmd::cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "workloads",
        "--bin",
        "threads",
    ]))?;
    let mut runs: Vec<(&str, PathBuf)> = vec![("pagebreak", built.so)];
    if std::path::Path::new(MIMALLOC).exists() {
        runs.push(("mimalloc", MIMALLOC.into()));
    } else {
        eprintln!("{MIMALLOC} missing (apt-get install libmimalloc2.0): pagebreak only");
    }
    let bin = cmd::root().join("target/release/threads");
    // results[allocator][run][row]
    let mut results: Vec<Vec<Vec<Row>>> = vec![Vec::new(); runs.len()];
    for round in 0..repeats {
        for (k, (name, lib)) in runs.iter().enumerate() {
            eprintln!("run {} of {repeats}: {name}", round + 1);
            let out = Command::new(&bin)
                .env("LD_PRELOAD", lib)
                .args(&pass)
                .output()
                .map_err(|e| format!("{}: {e}", bin.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "threads under {name}: {}\n{}",
                    cmd::describe(out.status),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            results[k].push(parse(&String::from_utf8_lossy(&out.stdout)));
        }
    }
    println!(
        "| threads | {} |",
        runs.iter()
            .map(|r| format!("{} M ops/s | {} malloc p50 / p99 / p99.9 / max", r.0, r.0))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---:|{}", "---:|---:|".repeat(runs.len()));
    let rows = results
        .first()
        .and_then(|r| r.first())
        .map_or(0, |r| r.len());
    for i in 0..rows {
        let threads = results[0][0][i].get("threads").copied().unwrap_or(0.0);
        let mut line = format!("| {threads:.0} |");
        for per_run in &results {
            let all = |k: &str| -> Vec<f64> {
                per_run
                    .iter()
                    .filter_map(|r| r.get(i).and_then(|m| m.get(k).copied()))
                    .collect()
            };
            let max = all("max_ns").into_iter().fold(f64::NAN, f64::max);
            line += &format!(
                " {:.2} | {} / {} / {} / {} |",
                median(all("ops_per_s")) / 1e6,
                ns(median(all("p50_ns"))),
                ns(median(all("p99_ns"))),
                ns(median(all("p999_ns"))),
                ns(max)
            );
        }
        println!("{line}");
    }
    Ok(())
}

type Row = std::collections::HashMap<String, f64>;

/// The median (NaN for none).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `key=value` pairs of each output line.
fn parse(out: &str) -> Vec<Row> {
    out.lines()
        .filter(|l| l.starts_with("threads="))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                .collect()
        })
        .collect()
}

/// Nanoseconds in a readable unit.
fn ns(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 1e3 {
        format!("{v:.0} ns")
    } else if v < 1e6 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{:.1} ms", v / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_workload_lines() {
        let r = parse("threads=8 ops_per_s=1500000 p50_ns=30 p99_ns=360 p999_ns=3515 max_ns=85567 samples=62504\nnoise\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["threads"], 8.0);
        assert_eq!(r[0]["p999_ns"], 3515.0);
        assert_eq!(ns(3515.0), "3.5 µs");
        assert_eq!(ns(30.0), "30 ns");
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
