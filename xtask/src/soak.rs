//! `cargo xtask soak --minutes N [--backend mmap|brk]`: the server-like soak
//! (`workloads/src/bin/soak.rs`) with libpagebreak.so preloaded. It prints RSS and
//! throughput once a minute and ends with the verdict on its RSS curve (nonzero exit on
//! failure); the curve goes to `target/pagebreak-soak/<backend>.csv` and `.svg`.
//! `--render A.csv [B.csv...] -o OUT.svg` draws several runs in one chart (the README's).

use crate::build::{self, Backend};
use crate::cmd;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask soak --minutes N [--backend mmap|brk] [--cycle-secs S] [--report-secs R] [--rss-advisory]\n       cargo xtask soak --render A.csv [B.csv...] -o OUT.svg";

pub fn main(args: &[String]) -> Result<(), String> {
    let mut backend = Backend::Mmap;
    let mut minutes = None;
    let mut extra = Vec::new();
    let mut render = Vec::new();
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--backend" => backend = Backend::parse(&value()?)?,
            "--minutes" => minutes = Some(value()?),
            "--cycle-secs" | "--report-secs" => {
                let v = value()?;
                extra.extend([a.clone(), v]);
            }
            "--rss-advisory" => extra.push(a.clone()),
            "--render" => render.push(PathBuf::from(value()?)),
            "-o" => out = Some(PathBuf::from(value()?)),
            other if !render.is_empty() && !other.starts_with('-') => {
                render.push(PathBuf::from(other))
            }
            other => return Err(format!("unexpected argument `{other}`\n{USAGE}")),
        }
    }
    if !render.is_empty() {
        let out = out.ok_or(format!("--render needs -o OUT.svg\n{USAGE}"))?;
        return write_chart(&render, &out);
    }
    let minutes = minutes.ok_or(USAGE.to_string())?;
    run(backend, &minutes, &extra)
}

/// Builds the library and the workload, runs the soak, draws its curve.
pub fn run(backend: Backend, minutes: &str, extra: &[String]) -> Result<(), String> {
    let built = build::build(backend, true, true)?;
    cmd::run(cmd::cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "workloads",
        "--bin",
        "soak",
    ]))?;
    let dir = cmd::root().join("target").join("pagebreak-soak");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let csv = dir.join(format!("pagebreak-{}.csv", backend.name()));
    let bin = cmd::root().join("target/release/soak");
    let mut c = Command::new(&bin);
    c.env("LD_PRELOAD", &built.so)
        .args(["--minutes", minutes, "--csv"])
        .arg(&csv)
        .args(extra);
    let result = cmd::run(&mut c);
    if csv.exists() {
        let svg = csv.with_extension("svg");
        write_chart(&[csv], &svg)?;
        eprintln!("curve: {}", svg.display());
    }
    result
}

/// One run's samples and, if it finished, its plateau and limit.
struct Series {
    name: String,
    /// (minutes, RSS MiB, M ops/s)
    points: Vec<(f64, f64, f64)>,
    plateau: Option<f64>,
    limit: Option<f64>,
    verdict: Option<String>,
}

fn read_series(path: &Path) -> Result<Series, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut s = Series {
        name: path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        points: Vec::new(),
        plateau: None,
        limit: None,
        verdict: None,
    };
    const MIB: f64 = 1048576.0;
    for line in text.lines().skip(1) {
        if let Some(meta) = line.strip_prefix("# ") {
            for kv in meta.split_whitespace() {
                match kv.split_once('=') {
                    Some(("plateau_bytes", v)) => {
                        s.plateau = v.parse::<f64>().ok().map(|b| b / MIB)
                    }
                    Some(("limit_bytes", v)) => s.limit = v.parse::<f64>().ok().map(|b| b / MIB),
                    Some(("verdict", v)) => s.verdict = Some(v.to_string()),
                    _ => {}
                }
            }
            continue;
        }
        let f: Vec<f64> = line.split(',').filter_map(|v| v.parse().ok()).collect();
        if f.len() >= 3 {
            s.points.push((f[0] / 60.0, f[1] / MIB, f[2] / 1e6));
        }
    }
    if s.points.is_empty() {
        return Err(format!("{}: no samples", path.display()));
    }
    Ok(s)
}

fn colour(name: &str, i: usize) -> &'static str {
    match name {
        "pagebreak-mmap" => "#d62728",
        "pagebreak-brk" => "#ff7f0e",
        _ => ["#1f77b4", "#2ca02c", "#9467bd"][i % 3],
    }
}

/// A "nice" axis top: 1, 2 or 5 times a power of ten, at least `v`.
fn nice_top(v: f64) -> f64 {
    let e = 10f64.powf(v.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * e)
        .find(|&t| t >= v)
        .unwrap_or(10.0 * e)
}

const W: f64 = 760.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const PLOT_H: f64 = 220.0;

/// Two panels, RSS and throughput against minutes; one line per run; the RSS panel shows
/// each finished run's plateau (dotted) and the +10% limit (dashed).
fn chart(series: &[Series]) -> String {
    let height = 70.0 + 2.0 * (PLOT_H + 60.0);
    let x_max = nice_top(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(0.0, f64::max),
    );
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect x="0" y="0" width="{W}" height="{height}" fill="white"/>
<text x="{}" y="22" font-size="15" font-weight="bold" text-anchor="middle">pagebreak soak: resident memory and throughput</text>"#,
        W / 2.0
    );
    let mut lx = LEFT;
    for (i, s) in series.iter().enumerate() {
        let label = match &s.verdict {
            Some(v) => format!("{} ({v})", s.name),
            None => s.name.clone(),
        };
        let _ = writeln!(
            o,
            r#"<rect x="{lx:.1}" y="34" width="14" height="14" fill="{}"/><text x="{:.1}" y="46" font-size="12">{}</text>"#,
            colour(&s.name, i),
            lx + 20.0,
            label
        );
        lx += 40.0 + 7.0 * label.len() as f64;
    }
    for (panel, title) in [
        "Resident set size (MiB)",
        "Throughput (M malloc+free per second)",
    ]
    .into_iter()
    .enumerate()
    {
        let top = 80.0 + panel as f64 * (PLOT_H + 60.0);
        let value = |p: &(f64, f64, f64)| if panel == 0 { p.1 } else { p.2 };
        let y_max = nice_top(
            series
                .iter()
                .flat_map(|s| s.points.iter().map(value).chain(s.limit))
                .fold(0.0, f64::max)
                * 1.05,
        );
        let x = |m: f64| LEFT + m / x_max * (W - LEFT - RIGHT);
        let y = |v: f64| top + PLOT_H - v / y_max * PLOT_H;
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{title}</text>"#,
            top - 10.0
        );
        for k in 0..=4 {
            let v = y_max * k as f64 / 4.0;
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e0e0e0"/><text x="{2:.1}" y="{3:.1}" font-size="11" text-anchor="end">{4}</text>"##,
                y(v),
                W - RIGHT,
                LEFT - 6.0,
                y(v) + 4.0,
                if y_max >= 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            );
        }
        for k in 0..=5 {
            let m = x_max * k as f64 / 5.0;
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                x(m),
                top + PLOT_H + 16.0,
                if x_max >= 5.0 {
                    format!("{m:.0}")
                } else {
                    format!("{m:.1}")
                }
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">minutes</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            top + PLOT_H + 32.0
        );
        for (i, s) in series.iter().enumerate() {
            let c = colour(&s.name, i);
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.0), y(value(p))))
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline class="series" fill="none" stroke="{c}" stroke-width="1.3" points="{}"/>"#,
                pts.join(" ")
            );
            if panel == 0 {
                for (v, dash, what) in [
                    (s.plateau, "2 3", "plateau"),
                    (s.limit, "6 3", "limit (+10%)"),
                ] {
                    if let Some(v) = v {
                        let _ = writeln!(
                            o,
                            r#"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{c}" stroke-dasharray="{dash}"><title>{2} {what}: {v:.1} MiB</title></line>"#,
                            y(v),
                            W - RIGHT,
                            s.name
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{top:.1}" x2="{LEFT}" y2="{0:.1}" stroke="#000"/><line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#000"/>"##,
            top + PLOT_H,
            W - RIGHT
        );
    }
    o.push_str("</svg>\n");
    o
}

fn write_chart(csvs: &[PathBuf], out: &Path) -> Result<(), String> {
    let series = csvs
        .iter()
        .map(|p| read_series(p))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::write(out, chart(&series)).map_err(|e| format!("{}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_line_per_run_and_the_limits() {
        let dir = std::env::temp_dir().join(format!("xtask-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("pagebreak-mmap.csv");
        std::fs::write(
            &a,
            "seconds,rss_bytes,ops_per_s,threads_live,threads_started\n1.0,10485760,2000000,8,8\n60.0,20971520,1500000,8,30\n# cycle_s=30 plateau_bytes=20971520 limit_bytes=23068672 verdict=PASS\n",
        )
        .unwrap();
        let s = read_series(&a).unwrap();
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.plateau, Some(20.0));
        assert_eq!(s.verdict.as_deref(), Some("PASS"));
        let svg = chart(&[s]);
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert!(svg.contains("limit (+10%): 22.0 MiB"));
        assert!(svg.trim_end().ends_with("</svg>"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nice_tops() {
        assert_eq!(nice_top(0.7), 1.0);
        assert_eq!(nice_top(130.0), 200.0);
        assert_eq!(nice_top(30.0), 50.0);
    }
}
