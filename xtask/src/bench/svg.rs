//! report.svg: two panels of grouped bars (wall time and peak RSS relative to the baseline),
//! one group per workload plus the geometric mean, one bar per allocator.
//!
//! The y axis is logarithmic and bars grow from the 1.0 line, so 2x slower and 2x faster
//! look equally far from the baseline, and "above the line" always means worse.

use super::report::fmt_ratio;
use super::stats::{Cell, Metric, Table};
use std::fmt::Write as _;

const BAR_W: f64 = 14.0;
const GROUP_GAP: f64 = 22.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const PLOT_H: f64 = 250.0;
/// Vertical space of one panel besides the plot: its title and the workload labels.
const PANEL_EXTRA: f64 = 70.0;
const TOP: f64 = 92.0;

/// Colours by allocator name, so a reader learns them once across reports.
fn colour(name: &str, i: usize) -> &'static str {
    match name {
        "pagebreak-mmap" => "#d62728",
        "pagebreak-brk" => "#ff7f0e",
        "glibc" => "#7f7f7f",
        "mimalloc-deb" => "#aec7e8",
        "mimalloc-2" => "#6baed6",
        "mimalloc-3" => "#1f77b4",
        "jemalloc" => "#2ca02c",
        "snmalloc" => "#9467bd",
        _ => ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"][i % 5],
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What one bar shows: a ratio, or why there is none.
enum Bar {
    Ratio(f64, String),
    Failed(String),
    Empty,
}

fn bars(t: &Table, m: Metric) -> Vec<(String, Vec<Bar>)> {
    let mut groups: Vec<(String, Vec<Bar>)> = (0..t.rows.len())
        .map(|r| {
            let row = &t.rows[r];
            let bars = (0..t.allocators.len())
                .map(|c| match (&row.cells[c], t.ratio(r, c, m)) {
                    (Cell::Failed(why), _) => Bar::Failed(why.clone()),
                    (Cell::Ok(s), Some(x)) => {
                        let v = match m {
                            Metric::Time => super::report::fmt_time(s.time_s),
                            Metric::Rss => super::report::fmt_rss(s.rss_kb),
                        };
                        Bar::Ratio(x, v)
                    }
                    (Cell::Ok(_), None) => Bar::Empty,
                })
                .collect();
            (row.workload.clone(), bars)
        })
        .collect();
    let geo = (0..t.allocators.len())
        .map(|c| match t.geomean(c, m) {
            (Some(g), n) => Bar::Ratio(g, format!("geometric mean over {n} workloads")),
            (None, _) => Bar::Empty,
        })
        .collect();
    groups.push(("geomean".into(), geo));
    groups
}

/// Log2 axis range in whole powers of two, covering 1.0 and every ratio (clamped to 1/64..64).
fn range(groups: &[(String, Vec<Bar>)]) -> (i32, i32) {
    let (mut lo, mut hi) = (1.0f64, 1.0f64);
    for (_, bs) in groups {
        for b in bs {
            if let Bar::Ratio(x, _) = b {
                lo = lo.min(*x);
                hi = hi.max(*x);
            }
        }
    }
    let lo = ((lo / 1.1).log2().floor() as i32).clamp(-6, -1);
    let hi = ((hi * 1.1).log2().ceil() as i32).clamp(1, 6);
    (lo, hi)
}

/// `title` in bold on top, `subtitle` (machine, date) under it in small print.
pub fn chart(t: &Table, title: &str, subtitle: &str) -> String {
    let n = t.allocators.len().max(1);
    let ngroups = t.rows.len() + 1;
    // Legend: one swatch per allocator, centred; the chart is at least as wide as it, and
    // as the title (about 8.5 px a character in bold 15 px).
    let item_w: Vec<f64> = t
        .allocators
        .iter()
        .map(|a| 22.0 + 7.0 * a.chars().count() as f64 + 18.0)
        .collect();
    let width = (LEFT + RIGHT + ngroups as f64 * (n as f64 * BAR_W + GROUP_GAP))
        .max(640.0)
        .max(item_w.iter().sum::<f64>() + 20.0)
        .max(8.5 * title.chars().count() as f64 + 20.0);
    // Groups share out the width (a run with few workloads still fills the chart).
    let group_w = (width - LEFT - RIGHT) / ngroups as f64;
    let panel_h = PLOT_H + PANEL_EXTRA;
    let height = TOP + 2.0 * panel_h + 10.0;
    let base = &t.allocators[t.baseline];

    let mut o = String::new();
    let _ = writeln!(
        o,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>
<text x="{:.0}" y="22" font-size="15" font-weight="bold" text-anchor="middle">{}</text>
<text x="{:.0}" y="40" font-size="11" fill="#444" text-anchor="middle">{}</text>"##,
        width / 2.0,
        esc(title),
        width / 2.0,
        esc(subtitle)
    );
    let mut x = (width - item_w.iter().sum::<f64>()) / 2.0;
    for (i, a) in t.allocators.iter().enumerate() {
        let _ = writeln!(
            o,
            r#"<rect class="swatch" x="{x:.1}" y="54" width="14" height="14" fill="{}"/><text x="{:.1}" y="66" font-size="12">{}</text>"#,
            colour(a, i),
            x + 20.0,
            esc(a)
        );
        x += item_w[i];
    }

    for (p, m) in [Metric::Time, Metric::Rss].into_iter().enumerate() {
        let top = TOP + p as f64 * panel_h + 22.0;
        let what = match m {
            Metric::Time => "Wall time",
            Metric::Rss => "Peak RSS",
        };
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{what} relative to {} (log scale; below 1 is better)</text>"#,
            top - 8.0,
            esc(base)
        );
        let groups = bars(t, m);
        let (lo, hi) = range(&groups);
        let y = |r: f64| {
            let l = r.log2().clamp(lo as f64, hi as f64);
            top + (hi as f64 - l) / (hi - lo) as f64 * PLOT_H
        };
        // Grid at each power of two; the 1.0 line drawn last, above the bars.
        for e in lo..=hi {
            let r = 2f64.powi(e);
            let yy = y(r);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                width - RIGHT,
                LEFT - 6.0,
                yy + 4.0,
                if e < 0 {
                    format!("{r}x")
                } else {
                    format!("{r:.0}x")
                }
            );
        }
        for (g, (name, bs)) in groups.iter().enumerate() {
            let gx = LEFT + g as f64 * group_w + (group_w - n as f64 * BAR_W) / 2.0;
            if name == "geomean" {
                // Set the summary group apart.
                let _ = writeln!(
                    o,
                    r##"<rect x="{:.1}" y="{top:.1}" width="{group_w:.1}" height="{PLOT_H}" fill="#f4f4f4"/>"##,
                    LEFT + g as f64 * group_w
                );
            }
            for (i, b) in bs.iter().enumerate() {
                let bx = gx + i as f64 * BAR_W;
                let cx = bx + BAR_W / 2.0;
                let who = &t.allocators[i];
                match b {
                    Bar::Ratio(r, detail) => {
                        let (y1, yr) = (y(1.0), y(*r));
                        let (ytop, h) = (y1.min(yr), (y1 - yr).abs().max(1.0));
                        let _ = writeln!(
                            o,
                            r#"<rect class="bar" x="{:.1}" y="{ytop:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} / {}: {} ({})</title></rect>"#,
                            bx + 1.0,
                            BAR_W - 2.0,
                            colour(who, i),
                            esc(name),
                            esc(who),
                            fmt_ratio(*r),
                            esc(detail)
                        );
                        // Value along the bar's far end, rotated to fit the narrow column.
                        let (ly, anchor) = if *r >= 1.0 {
                            (yr - 3.0, "start")
                        } else {
                            (yr + 3.0, "end")
                        };
                        let clipped = r.log2() > hi as f64 || r.log2() < lo as f64;
                        let _ = writeln!(
                            o,
                            r#"<text x="{:.1}" y="{ly:.1}" font-size="9" text-anchor="{anchor}" transform="rotate(-90 {:.1} {ly:.1})"{}>{}</text>"#,
                            cx + 3.0,
                            cx + 3.0,
                            if clipped {
                                r#" font-weight="bold""#
                            } else {
                                ""
                            },
                            fmt_ratio(*r).trim_end_matches('x')
                        );
                    }
                    Bar::Failed(why) => {
                        let _ = writeln!(
                            o,
                            r##"<text class="failed" x="{cx:.1}" y="{:.1}" font-size="13" font-weight="bold" fill="{}" text-anchor="middle">✕<title>{} / {}: FAILED: {}</title></text>"##,
                            y(1.0) - 4.0,
                            colour(who, i),
                            esc(name),
                            esc(who),
                            esc(why)
                        );
                    }
                    Bar::Empty => {}
                }
            }
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                gx + n as f64 * BAR_W / 2.0,
                top + PLOT_H + 16.0,
                esc(name)
            );
        }
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y1:.1}" x2="{:.1}" y2="{y1:.1}" stroke="#000" stroke-width="1.2" stroke-dasharray="5 3"/>
<line x1="{LEFT}" y1="{top:.1}" x2="{LEFT}" y2="{:.1}" stroke="#000"/>"##,
            width - RIGHT,
            top + PLOT_H,
            y1 = y(1.0)
        );
    }
    let _ = writeln!(
        o,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#555" text-anchor="end">✕ = crashed, hung or failed its check (see report.md)</text>"##,
        width - RIGHT,
        height - 6.0
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::super::stats::tests::summary;
    use super::super::stats::Row;
    use super::*;

    /// A small well-formedness check: tags nest and close, attributes are quoted.
    fn well_formed(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml.trim_start();
        rest = rest
            .strip_prefix("<?xml")
            .and_then(|r| r.split_once("?>"))
            .map_or(rest, |(_, r)| r);
        while let Some(i) = rest.find('<') {
            if rest[..i].contains('>') {
                return Err(format!("stray `>` in text {:?}", &rest[..i]));
            }
            let j = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..j];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else {
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let name = body.split_whitespace().next().ok_or("empty tag")?;
                if body.matches('"').count() & 1 == 1 || body.contains('<') {
                    return Err(format!("bad attributes in <{tag}>"));
                }
                if !self_closing {
                    stack.push(name.to_string());
                }
            }
            rest = &rest[j + 1..];
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    fn table() -> Table {
        Table {
            allocators: vec!["pagebreak-mmap".into(), "glibc".into(), "mimalloc".into()],
            baseline: 2,
            rows: vec![
                Row {
                    workload: "larson & co".into(),
                    cells: vec![summary(2.0, 10.0), summary(0.5, 20.0), summary(1.0, 10.0)],
                },
                Row {
                    workload: "large".into(),
                    cells: vec![
                        Cell::Failed("killed by signal 11 <SIGSEGV>".into()),
                        summary(300.0, 1.0),
                        summary(1.0, 10.0),
                    ],
                },
            ],
        }
    }

    #[test]
    fn svg_is_well_formed_with_one_bar_per_result() {
        let s = chart(&table(), "pagebreak <test>", "machine & date");
        well_formed(&s).unwrap();
        // Per panel: 2 + 3 bars for the workloads that ran, 3 geomeans; two panels.
        assert_eq!(s.matches(r#"class="bar""#).count(), 2 * (5 + 3));
        assert_eq!(s.matches(r#"class="failed""#).count(), 2);
        assert_eq!(s.matches(r#"class="swatch""#).count(), 3);
        assert!(s.contains("larson &amp; co") && s.contains("&lt;SIGSEGV&gt;"));
        assert!(s.contains("machine &amp; date"));
        // 300x is off the 64x axis: drawn clipped, labelled with its true value.
        assert!(s.contains(">300<"), "{s}");
    }

    #[test]
    fn checker_rejects_broken_xml() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg><rect x=\"1/></svg>").is_err());
        assert!(well_formed("<svg><rect/></svg>").is_ok());
    }

    #[test]
    fn axis_covers_one_and_all_ratios() {
        let g = vec![(
            "w".to_string(),
            vec![
                Bar::Ratio(0.3, String::new()),
                Bar::Ratio(5.0, String::new()),
            ],
        )];
        assert_eq!(range(&g), (-2, 3));
        let g = vec![("w".to_string(), vec![Bar::Ratio(1.0, String::new())])];
        assert_eq!(range(&g), (-1, 1));
    }
}
