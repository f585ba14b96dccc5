//! The purge delay, adapted to how soon a program takes back memory it gave up.
//!
//! Purging free memory (`PageSource::purge`) lowers the resident size, and costs a page fault
//! per OS page when the memory is used again. A program that frees a large structure and
//! builds the next one a few hundred milliseconds later pays every fault again: at the
//! 25 ms default, CPython (GC generations) faulted 121k times where glibc faulted 20k, and
//! the Rust workload (maps rebuilt in rounds) spent 0.45 s of system time refaulting 840 MB
//! it had purged. A longer fixed delay is no answer: larson's retired heaps never take their
//! memory back, and at 1,000 ms its peak RSS doubled (72 -> 142 MB).
//!
//! So each heap (and the span cache) keeps a [`PurgePace`]. Memory taken back within the
//! longest delay ([`PurgeDelay::max`], 1,000 ms by default) of being purged doubles the
//! delay, up to that longest one; each stretch of twice the current delay without such a
//! refault halves it again, down to the configured delay. A delay of 0 (purge at once), and
//! a longest delay not above the configured one, turn the adaptation off. And free memory
//! outlives the configured delay only while that does not raise the peak ([`MemoryBudget`]).

use core::sync::atomic::{AtomicUsize, Ordering};

/// The longest delay by default, in ms: mimalloc 3's fixed delay (jemalloc decays over 10 s).
pub const DEFAULT_PURGE_DELAY_MAX_MS: u64 = 1000;

/// The two delays in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PurgeDelay {
    /// The configured delay: the shortest, and the one in force without refaults.
    pub(crate) base: u64,
    /// The longest the pace lengthens it to; also how soon a take-back counts as a refault
    /// (the purge bought less than that much time of lower RSS for a fault per page).
    pub(crate) max: u64,
}

impl PurgeDelay {
    fn adaptive(self) -> bool {
        self.base != 0 && self.max > self.base
    }
}

/// Memory in use (pages and huge blocks) and kept free (resident), process-wide: keeping free
/// memory past the
/// configured delay must not raise the peak. One heap's free pages are another's fresh
/// memory otherwise: larson's 12 heaps (8 threads, 4 parked) each kept their free pages for
/// the whole second while the others took new ones, and its peak RSS went from 63 to 110 MB.
/// A program whose heaps take back what they freed stays under its peak and keeps it all.
///
/// Updated once per page taken or freed (a page is 64 KiB or 512 KiB of blocks) and per
/// purge, with relaxed atomics: the counts are a heuristic's input, not an invariant.
pub(crate) struct MemoryBudget {
    /// Bytes of page slots in use.
    used: AtomicUsize,
    /// Bytes of huge blocks in use (as requested): a program's large buffers and tables,
    /// which come back to the span cache when freed.
    huge: AtomicUsize,
    /// Bytes of free page slots still resident (segments' `dirty_slots`).
    dirty: AtomicUsize,
    /// The most `used + huge` has been.
    peak: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) const fn new() -> Self {
        MemoryBudget {
            used: AtomicUsize::new(0),
            huge: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// A page of `bytes` taken, `reused` of them from free resident slots.
    pub(crate) fn page_taken(&self, bytes: usize, reused: usize) {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if reused != 0 {
            self.dirty.fetch_sub(reused, Ordering::Relaxed);
        }
        self.note_peak(used + self.huge.load(Ordering::Relaxed));
    }

    /// Huge blocks in use grew (a block handed out or grown in place) or shrank by `delta`.
    pub(crate) fn huge_changed(&self, delta: isize) {
        if delta < 0 {
            self.huge.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            let huge = self.huge.fetch_add(delta as usize, Ordering::Relaxed) + delta as usize;
            self.note_peak(self.used.load(Ordering::Relaxed) + huge);
        }
    }

    fn note_peak(&self, in_use: usize) {
        if in_use > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(in_use, Ordering::Relaxed);
        }
    }

    /// A page of `bytes` freed: its slots stay resident until purged.
    pub(crate) fn page_freed(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        self.dirty.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A page of `bytes` dropped with its segment (an arena destroyed): not in use any more,
    /// and its slot leaves with the segment.
    pub(crate) fn page_discarded(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Free resident slots purged, or gone to the span cache with their segment.
    pub(crate) fn dirty_gone(&self, bytes: usize) {
        if bytes != 0 {
            self.dirty.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Whether memory in use, free resident slots and `cached` resident bytes exceed the
    /// peak of memory in use (plus the slack).
    pub(crate) fn over_peak(&self, cached: usize) -> bool {
        let used = self.used.load(Ordering::Relaxed) + self.huge.load(Ordering::Relaxed);
        let dirty = self.dirty.load(Ordering::Relaxed);
        let peak = self.peak.load(Ordering::Relaxed);
        used.wrapping_add(dirty).wrapping_add(cached) > peak + (peak >> PEAK_SLACK_SHIFT)
    }
}

/// Free memory may be kept while in use plus free stays below the peak of in use plus a
/// quarter of it. Measured against the configured delay (11 paired runs of larson with 8
/// threads, 7 of the rest): a slack of 1/8 kept larson-oversub's peak RSS to 1.08x and
/// CPython's faults to 66k (of 135k), 1/4 gives 1.19x and 41k, none 1.31x and 40k.
const PEAK_SLACK_SHIFT: u32 = 2;

/// The state of one adaptive delay (a heap's, or the span cache's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PurgePace {
    /// The delay is the configured one times `2^shift`, at most the longest.
    shift: u32,
    /// The last refault, or the last step down: the calm is measured from here.
    last_event: u64,
}

impl PurgePace {
    pub(crate) const fn new() -> Self {
        PurgePace {
            shift: 0,
            last_event: 0,
        }
    }

    /// The delay in force.
    pub(crate) fn delay(&self, cfg: PurgeDelay) -> u64 {
        if !cfg.adaptive() {
            return cfg.base;
        }
        cfg.base.saturating_mul(1 << self.shift).min(cfg.max)
    }

    /// The delay for memory freed at `now`, after the calm since the last refault: the pace's,
    /// or the configured one while keeping free memory would raise the peak (`over_peak`,
    /// from [`MemoryBudget::over_peak`]).
    pub(crate) fn delay_at(&mut self, now: u64, cfg: PurgeDelay, over_peak: bool) -> u64 {
        self.calm_check(now, cfg);
        if over_peak {
            cfg.base
        } else {
            self.delay(cfg)
        }
    }

    /// Memory purged at `purged_at` is taken back at `now`: a refault if that is within the
    /// longest delay, and the delay doubles. Without a clock (`now == 0`) nothing changes.
    pub(crate) fn taken_back(&mut self, purged_at: u64, now: u64, cfg: PurgeDelay) {
        if now == 0 || !cfg.adaptive() || now.saturating_sub(purged_at) >= cfg.max {
            return;
        }
        if self.delay(cfg) < cfg.max {
            self.shift += 1;
        }
        self.last_event = now;
    }

    /// A purge check at `now`, and before the delay is used: each stretch of twice the delay
    /// without a refault halves it (from 1,000 ms back to 25 ms takes about 4 s of calm).
    pub(crate) fn calm_check(&mut self, now: u64, cfg: PurgeDelay) {
        while self.shift != 0 {
            let stretch = 2 * self.delay(cfg);
            if now.saturating_sub(self.last_event) < stretch {
                return;
            }
            self.shift -= 1;
            self.last_event += stretch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: PurgeDelay = PurgeDelay {
        base: 25,
        max: 1000,
    };

    #[test]
    fn refaults_double_the_delay_up_to_the_longest() {
        let mut pace = PurgePace::new();
        assert_eq!(pace.delay(CFG), 25);
        let mut expected = [50, 100, 200, 400, 800, 1000, 1000].into_iter();
        for t in 1..=7u64 {
            pace.taken_back(t * 100, t * 100 + 10, CFG);
            assert_eq!(pace.delay(CFG), expected.next().unwrap());
        }
    }

    #[test]
    fn late_reuse_is_not_a_refault() {
        let mut pace = PurgePace::new();
        pace.taken_back(100, 100 + CFG.max, CFG);
        assert_eq!(pace.delay(CFG), 25);
        pace.taken_back(100, 100 + CFG.max - 1, CFG);
        assert_eq!(pace.delay(CFG), 50);
    }

    #[test]
    fn calm_halves_the_delay_back_to_the_configured_one() {
        let mut pace = PurgePace::new();
        pace.taken_back(1000, 1010, CFG);
        pace.taken_back(1000, 1010, CFG);
        assert_eq!(pace.delay(CFG), 100);
        pace.calm_check(1010 + 199, CFG);
        assert_eq!(pace.delay(CFG), 100, "less than twice the delay: no change");
        pace.calm_check(1010 + 200, CFG);
        assert_eq!(pace.delay(CFG), 50);
        pace.calm_check(1210 + 99, CFG);
        assert_eq!(pace.delay(CFG), 50);
        pace.calm_check(1210 + 100, CFG);
        assert_eq!(pace.delay(CFG), 25);
        pace.calm_check(100_000, CFG);
        assert_eq!(pace.delay(CFG), 25);
        // A long calm takes every step at once.
        for _ in 0..5 {
            pace.taken_back(200_000, 200_010, CFG);
        }
        assert_eq!(pace.delay(CFG), 800);
        pace.calm_check(200_010 + 2 * (800 + 400 + 200 + 100 + 50) - 1, CFG);
        assert_eq!(pace.delay(CFG), 50);
        pace.calm_check(300_000, CFG);
        assert_eq!(pace.delay(CFG), 25);
    }

    #[test]
    fn fixed_zero_and_clockless_delays_do_not_adapt() {
        for cfg in [
            PurgeDelay { base: 0, max: 1000 },
            PurgeDelay { base: 25, max: 25 },
            PurgeDelay {
                base: 5000,
                max: 1000,
            },
        ] {
            let mut pace = PurgePace::new();
            pace.taken_back(10, 20, cfg);
            assert_eq!(pace.delay(cfg), cfg.base);
        }
        let mut pace = PurgePace::new();
        pace.taken_back(0, 0, CFG);
        assert_eq!(pace.delay(CFG), 25);
    }

    #[test]
    fn keeping_free_memory_stays_under_the_peak_plus_a_quarter() {
        let m = MemoryBudget::new();
        m.page_taken(800, 0);
        assert!(!m.over_peak(0));
        m.page_freed(400);
        // In use 400, free 400: the peak (800) still holds both, plus 200 of slack.
        assert!(!m.over_peak(200));
        assert!(m.over_peak(201));
        m.page_taken(300, 0);
        // A fresh page while 400 are kept: 1100 against 800 + 200.
        assert!(m.over_peak(0));
        m.dirty_gone(400);
        assert!(!m.over_peak(0));
        m.page_freed(300);
        m.page_taken(300, 300);
        assert!(
            !m.over_peak(0),
            "pages taken back from the free ones add nothing"
        );
    }

    #[test]
    fn huge_blocks_count_as_memory_in_use() {
        let m = MemoryBudget::new();
        m.page_taken(100, 0);
        m.huge_changed(900);
        // A freed huge block's span waits in the cache: in use plus cached is the peak.
        m.huge_changed(-900);
        assert!(!m.over_peak(900));
        assert!(!m.over_peak(1150));
        assert!(m.over_peak(1151));
    }
}
