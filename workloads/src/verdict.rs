//! The soak's verdict on its resident-memory curve.
//!
//! The workload's size mix drifts with a period (the *cycle*), so resident memory rises and
//! falls within each cycle; what must not happen is the peaks creeping up. The first quarter
//! of the cycles (at least one) is the ramp. The *plateau* is the highest peak of the next
//! quarter (one cycle's peak alone moves with the machine's load); the run passes when
//! * the last cycle's peak is at most 10% above the plateau, and
//! * the peaks from the plateau's first cycle on have no upward trend: their least-squares
//!   line rises less than 10% of the plateau over those cycles.
//!
//! A 30-minute run with 2-minute cycles: ramp 0-6 min, plateau 6-12 min. A 2-minute run
//! with 30-second cycles: ramp 0-30 s, plateau 30-60 s.

/// Allowed rise, as a fraction of the plateau, for both checks.
pub const TOLERANCE: f64 = 0.10;

/// What the curve says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Highest peak of the cycles right after the ramp (bytes).
    pub plateau: f64,
    /// Highest RSS of the last cycle (bytes).
    pub end: f64,
    /// Rise of the peaks' fitted line from the plateau's first cycle to the last (bytes).
    pub trend: f64,
    /// Each cycle's peak, ramp included.
    pub peaks: Vec<f64>,
}

impl Verdict {
    /// The last peak within [`TOLERANCE`] of the plateau.
    pub fn end_ok(&self) -> bool {
        self.end <= self.plateau * (1.0 + TOLERANCE)
    }
    /// No upward trend past [`TOLERANCE`].
    pub fn trend_ok(&self) -> bool {
        self.trend <= self.plateau * TOLERANCE
    }
    pub fn pass(&self) -> bool {
        self.end_ok() && self.trend_ok()
    }
}

/// Judge `samples` (seconds since start, RSS bytes) of a run cut into cycles of `cycle_s`
/// seconds. `None` if the run is shorter than three cycles (nothing to compare).
pub fn judge(samples: &[(f64, f64)], cycle_s: f64) -> Option<Verdict> {
    let end_t = samples.last()?.0;
    let cycles = (end_t / cycle_s).floor() as usize;
    if cycles < 3 {
        return None;
    }
    let mut peaks = vec![0.0f64; cycles];
    for &(t, rss) in samples {
        let k = ((t / cycle_s) as usize).min(cycles - 1);
        peaks[k] = peaks[k].max(rss);
    }
    let ramp = (cycles / 4).max(1);
    let plateau = peaks[ramp..2 * ramp].iter().copied().fold(0.0, f64::max);
    let end = peaks[cycles - 1];
    // Least-squares slope of the peaks after the ramp against the cycle index.
    let ys = &peaks[ramp..];
    let n = ys.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    let trend = if sxx > 0.0 {
        sxy / sxx * (n - 1.0)
    } else {
        0.0
    };
    Some(Verdict {
        plateau,
        end,
        trend,
        peaks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A curve that rises within each 60 s cycle, plus `creep` bytes per second.
    fn curve(seconds: usize, creep: f64) -> Vec<(f64, f64)> {
        (0..seconds)
            .map(|s| {
                let within = (s % 60) as f64 / 60.0;
                let ramp = if s < 60 { within } else { 1.0 };
                (
                    s as f64,
                    100e6 * ramp * (0.8 + 0.2 * within) + creep * s as f64,
                )
            })
            .collect()
    }

    #[test]
    fn a_steady_sawtooth_passes() {
        let v = judge(&curve(601, 0.0), 60.0).unwrap();
        assert!(v.pass(), "{v:?}");
        assert_eq!(v.peaks.len(), 10);
    }

    #[test]
    fn a_slow_leak_fails_on_trend_and_end() {
        // 30 kB/s: 18 MB over ten minutes, about 15% of the plateau after the ramp.
        let v = judge(&curve(601, 30e3), 60.0).unwrap();
        assert!(!v.trend_ok(), "{v:?}");
        assert!(!v.end_ok(), "{v:?}");
    }

    #[test]
    fn a_late_jump_fails_on_end() {
        let mut c = curve(601, 0.0);
        c.last_mut().unwrap().1 = 150e6;
        let v = judge(&c, 60.0).unwrap();
        assert!(!v.end_ok() && !v.pass(), "{v:?}");
    }

    #[test]
    fn memory_given_back_is_fine() {
        let mut c = curve(601, 0.0);
        for s in &mut c[540..] {
            s.1 = 10e6;
        }
        assert!(judge(&c, 60.0).unwrap().pass());
    }

    #[test]
    fn too_short_a_run_has_no_verdict() {
        assert!(judge(&curve(150, 0.0), 60.0).is_none());
    }
}
