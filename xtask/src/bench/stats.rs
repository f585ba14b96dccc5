//! Results of the macro workloads: per-run measurements, medians, ratios, geometric means.

/// What the runner measured for one run of one workload under one allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub wall_s: f64,
    pub maxrss_kb: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub minflt: f64,
}

/// How a run ended, as the runner reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Exit(i32),
    Signal(i32),
    Timeout,
}

/// Parses the runner's line: `wall_s=.. maxrss_kb=.. utime_s=.. stime_s=.. minflt=.. majflt=.. status=..`.
pub fn parse_runner_line(line: &str) -> Result<(Run, Status), String> {
    let field = |key: &str| -> Result<&str, String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| format!("runner output lacks `{key}`: {line:?}"))
    };
    let num = |key: &str| -> Result<f64, String> {
        field(key)?
            .parse::<f64>()
            .map_err(|e| format!("runner output `{key}`: {e}: {line:?}"))
    };
    let status = match field("status")? {
        "timeout" => Status::Timeout,
        s => {
            let (kind, n) = s
                .split_once(':')
                .ok_or_else(|| format!("bad runner status {s:?}"))?;
            let n: i32 = n.parse().map_err(|_| format!("bad runner status {s:?}"))?;
            match kind {
                "exit" => Status::Exit(n),
                "signal" => Status::Signal(n),
                _ => return Err(format!("bad runner status {s:?}")),
            }
        }
    };
    let run = Run {
        wall_s: num("wall_s")?,
        maxrss_kb: num("maxrss_kb")?,
        user_s: num("utime_s")?,
        sys_s: num("stime_s")?,
        minflt: num("minflt")?,
    };
    Ok((run, status))
}

/// Medians over the repetitions of one workload under one allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub time_s: f64,
    pub rss_kb: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub minflt: f64,
    pub reps: usize,
}

impl Summary {
    /// Each field's median on its own (the median time and the median RSS need not
    /// come from the same run).
    pub fn of(runs: &[Run]) -> Option<Summary> {
        let m = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Some(Summary {
            time_s: m(|r| r.wall_s)?,
            rss_kb: m(|r| r.maxrss_kb)?,
            user_s: m(|r| r.user_s)?,
            sys_s: m(|r| r.sys_s)?,
            minflt: m(|r| r.minflt)?,
            reps: runs.len(),
        })
    }
}

/// One workload under one allocator.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Ok(Summary),
    /// Crashed, hung, failed its own check, or could not be built: what happened, in words.
    Failed(String),
}

impl Cell {
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Cell::Ok(s) => Some(s),
            Cell::Failed(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub cells: Vec<Cell>,
}

/// All macro results: rows are workloads, columns allocators.
#[derive(Clone, Debug)]
pub struct Table {
    pub allocators: Vec<String>,
    /// Column the ratios are relative to (mimalloc when it ran).
    pub baseline: usize,
    pub rows: Vec<Row>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Time,
    Rss,
}

impl Metric {
    pub fn get(self, s: &Summary) -> f64 {
        match self {
            Metric::Time => s.time_s,
            Metric::Rss => s.rss_kb,
        }
    }
}

impl Table {
    /// `rows[row]`'s value in `col` divided by the baseline's; None if either failed.
    pub fn ratio(&self, row: usize, col: usize, m: Metric) -> Option<f64> {
        let cells = &self.rows[row].cells;
        let v = m.get(cells[col].summary()?);
        let b = m.get(cells[self.baseline].summary()?);
        (b > 0.0 && v > 0.0).then(|| v / b)
    }

    /// Geometric mean of a column's ratios over the workloads where both it and the
    /// baseline succeeded, with how many workloads that was.
    pub fn geomean(&self, col: usize, m: Metric) -> (Option<f64>, usize) {
        self.geomean_vs(col, self.baseline, m)
    }

    /// Geometric mean of `col / other` over the workloads where both succeeded.
    pub fn geomean_vs(&self, col: usize, other: usize, m: Metric) -> (Option<f64>, usize) {
        let rs: Vec<f64> = self
            .rows
            .iter()
            .filter_map(|row| {
                let v = m.get(row.cells[col].summary()?);
                let b = m.get(row.cells[other].summary()?);
                (b > 0.0 && v > 0.0).then(|| v / b)
            })
            .collect();
        (geomean(&rs), rs.len())
    }
}

impl Table {
    /// The fastest of the columns `candidates` by the geometric mean of their wall times
    /// over the workloads all of them finished (the same workloads for each, so the means
    /// compare). Without such a workload, the one that finished the most workloads.
    pub fn fastest(&self, candidates: &[usize]) -> Option<usize> {
        let common: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| candidates.iter().all(|&c| r.cells[c].summary().is_some()))
            .collect();
        if common.is_empty() {
            return candidates
                .iter()
                .copied()
                .filter(|&c| self.rows.iter().any(|r| r.cells[c].summary().is_some()))
                .max_by_key(|&c| {
                    let n = self
                        .rows
                        .iter()
                        .filter(|r| r.cells[c].summary().is_some())
                        .count();
                    // max_by_key keeps the last of equals; the negated index keeps the first.
                    (n, std::cmp::Reverse(c))
                });
        }
        let mean = |c: usize| {
            let times: Vec<f64> = common
                .iter()
                .filter_map(|r| r.cells[c].summary().map(|s| s.time_s))
                .collect();
            geomean(&times).unwrap_or(f64::INFINITY)
        };
        candidates
            .iter()
            .copied()
            .min_by(|&a, &b| mean(a).total_cmp(&mean(b)))
    }
}

pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The geometric mean: the right average for ratios (2x and 0.5x average to 1x).
pub fn geomean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|&x| x <= 0.0 || !x.is_finite()) {
        return None;
    }
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn geomean_of_known_ratios() {
        assert!(close(geomean(&[2.0, 0.5]).unwrap(), 1.0));
        assert!(close(geomean(&[1.0, 4.0, 16.0]).unwrap(), 4.0));
        assert!(close(geomean(&[3.0]).unwrap(), 3.0));
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }

    #[test]
    fn parses_runner_lines() {
        let (r, s) = parse_runner_line(
            "wall_s=1.500000 maxrss_kb=2048 utime_s=1.2 stime_s=0.3 minflt=77 majflt=0 status=exit:0",
        )
        .unwrap();
        assert_eq!(s, Status::Exit(0));
        assert_eq!(r.wall_s, 1.5);
        assert_eq!(r.maxrss_kb, 2048.0);
        assert_eq!(r.minflt, 77.0);
        let (_, s) = parse_runner_line(
            "wall_s=1 maxrss_kb=1 utime_s=0 stime_s=0 minflt=0 majflt=0 status=signal:11",
        )
        .unwrap();
        assert_eq!(s, Status::Signal(11));
        let (_, s) = parse_runner_line(
            "wall_s=1 maxrss_kb=1 utime_s=0 stime_s=0 minflt=0 majflt=0 status=timeout",
        )
        .unwrap();
        assert_eq!(s, Status::Timeout);
        assert!(parse_runner_line("runner: cannot run").is_err());
    }

    pub fn summary(t: f64, rss: f64) -> Cell {
        Cell::Ok(Summary {
            time_s: t,
            rss_kb: rss,
            user_s: t,
            sys_s: 0.0,
            minflt: 0.0,
            reps: 3,
        })
    }

    #[test]
    fn ratios_and_geomeans_skip_failures() {
        let t = Table {
            allocators: vec!["a".into(), "mimalloc".into()],
            baseline: 1,
            rows: vec![
                Row {
                    workload: "w1".into(),
                    cells: vec![summary(2.0, 100.0), summary(1.0, 100.0)],
                },
                Row {
                    workload: "w2".into(),
                    cells: vec![summary(1.0, 50.0), summary(2.0, 200.0)],
                },
                Row {
                    workload: "w3".into(),
                    cells: vec![
                        Cell::Failed("killed by signal 11".into()),
                        summary(1.0, 1.0),
                    ],
                },
            ],
        };
        assert_eq!(t.ratio(0, 0, Metric::Time), Some(2.0));
        assert_eq!(t.ratio(1, 0, Metric::Rss), Some(0.25));
        assert_eq!(t.ratio(2, 0, Metric::Time), None);
        let (g, n) = t.geomean(0, Metric::Time);
        assert!(close(g.unwrap(), 1.0));
        assert_eq!(n, 2);
        let (g, _) = t.geomean(0, Metric::Rss);
        assert!(close(g.unwrap(), 0.5));
        let (g, n) = t.geomean(1, Metric::Time);
        assert_eq!((g, n), (Some(1.0), 3));
        // The other way round: mimalloc against `a` is the inverse, over the same workloads.
        let (g, n) = t.geomean_vs(1, 0, Metric::Rss);
        assert!(close(g.unwrap(), 2.0));
        assert_eq!(n, 2);
    }

    #[test]
    fn the_reference_is_the_fastest_candidate_on_common_workloads() {
        let row = |name: &str, cells: Vec<Cell>| Row {
            workload: name.into(),
            cells,
        };
        // Columns: pagebreak, mimalloc-a, mimalloc-b.
        let mut t = Table {
            allocators: vec!["pb".into(), "mi-a".into(), "mi-b".into()],
            baseline: 0,
            rows: vec![
                // b is 2x faster here, a 1.5x faster on the next: b wins on the geomean.
                row(
                    "w1",
                    vec![summary(1.0, 1.0), summary(4.0, 1.0), summary(2.0, 1.0)],
                ),
                row(
                    "w2",
                    vec![summary(1.0, 1.0), summary(2.0, 1.0), summary(3.0, 1.0)],
                ),
                // a failed here: the row does not count, however fast b was.
                row(
                    "w3",
                    vec![
                        summary(1.0, 1.0),
                        Cell::Failed("x".into()),
                        summary(100.0, 1.0),
                    ],
                ),
            ],
        };
        assert_eq!(t.fastest(&[1, 2]), Some(2));
        // pagebreak is not a candidate, however fast it is.
        assert_eq!(t.fastest(&[1]), Some(1));
        assert_eq!(t.fastest(&[]), None);
        // Make a twice as fast on w2: now 4*1 < 2*3, a wins.
        t.rows[1].cells[1] = summary(1.0, 1.0);
        assert_eq!(t.fastest(&[1, 2]), Some(1));
        // No workload both finished: the one that finished more.
        for r in &mut t.rows[..2] {
            r.cells[2] = Cell::Failed("x".into());
        }
        t.rows[2].cells[1] = Cell::Failed("x".into());
        assert_eq!(t.fastest(&[1, 2]), Some(1));
        // Nobody finished anything.
        t.rows[0].cells[1] = Cell::Failed("x".into());
        t.rows[1].cells[1] = Cell::Failed("x".into());
        t.rows[2].cells[2] = Cell::Failed("x".into());
        assert_eq!(t.fastest(&[1, 2]), None);
    }

    #[test]
    fn summary_takes_medians() {
        let run = |w: f64, m: f64| Run {
            wall_s: w,
            maxrss_kb: m,
            user_s: 0.0,
            sys_s: 0.0,
            minflt: 0.0,
        };
        let s = Summary::of(&[run(3.0, 10.0), run(1.0, 30.0), run(2.0, 20.0)]).unwrap();
        assert_eq!((s.time_s, s.rss_kb, s.reps), (2.0, 20.0, 3));
        assert_eq!(Summary::of(&[]), None);
    }
}
