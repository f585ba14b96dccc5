//! Spans the heaps gave back (empty segments, freed large blocks), kept for reuse so that a
//! free followed by a similar malloc costs no system call and no page faults. Entries are
//! purged (physical memory returned, range kept) after the purge delay and handed back to the
//! source after [`RELEASE_FACTOR`] times that, or when the cache is full (oldest first).

use core::ptr;

use crate::purge_pace::{PurgeDelay, PurgePace};
use crate::source::Span;

/// Entries in the cache: bounds the mappings it holds and the cost of a lookup.
pub(crate) const CACHE_ENTRIES: usize = 32;
/// Cached spans go back to the source this many purge delays after being freed.
const RELEASE_FACTOR: u64 = 16;
/// A cached span serves a request up to 4x its size, whole: reusing resident pages saves the
/// page faults a fresh mapping costs (the large-block workload faulted 7x more than mimalloc
/// with a 25% fit), and giving the excess back (munmap) only to fault it in again later made
/// that workload 2.5x slower. Untouched excess costs address space, not memory.
const FIT_LIMIT_SHIFT: u32 = 2;
/// Resident bytes the cache may hold before it purges its oldest spans early. Purging
/// early makes the next reuse fault every page again: at 64 MiB the large-block workload ran
/// 3.5x slower for 4% less peak RSS, so the cap only guards against freed giants.
pub(crate) const RESIDENT_CAP: usize = 256 << 20;

#[derive(Clone, Copy)]
struct Entry {
    ptr: *mut u8,
    size: usize,
    freed_at: u64,
    /// When it was purged (if `purged`).
    purged_at: u64,
    purged: bool,
    zeroed: bool,
}

const EMPTY: Entry = Entry {
    ptr: ptr::null_mut(),
    size: 0,
    freed_at: 0,
    purged_at: 0,
    purged: false,
    zeroed: false,
};

/// The cache proper; lives behind the allocator's lock.
pub(crate) struct SpanCache {
    entries: [Entry; CACHE_ENTRIES],
    /// Bytes cached and not purged (resident).
    pub(crate) resident: usize,
    /// The cache's purge delay, lengthened while purged spans are taken back soon.
    pub(crate) pace: PurgePace,
}

// SAFETY: the raw pointers are owned spans; the cache is only touched under its lock.
unsafe impl Send for SpanCache {}

/// What a maintenance pass asks the caller to do outside the lock.
pub(crate) enum Work {
    Purge(*mut u8, usize),
    Release(*mut u8, usize),
}

impl SpanCache {
    pub(crate) const fn new() -> Self {
        SpanCache {
            entries: [EMPTY; CACHE_ENTRIES],
            resident: 0,
            pace: PurgePace::new(),
        }
    }

    /// Best fit for `size` bytes aligned to `align`: the smallest cached span that is large
    /// enough, aligned, and at most 4x larger. A purged span taken back tells the pace, at
    /// the time `clock` gives (asked only then).
    pub(crate) fn take(
        &mut self,
        size: usize,
        align: usize,
        clock: impl FnOnce() -> u64,
        cfg: PurgeDelay,
    ) -> Option<Span> {
        let limit = size.saturating_mul(1 << FIT_LIMIT_SHIFT);
        let mut best: Option<usize> = None;
        for (i, e) in self.entries.iter().enumerate() {
            if e.ptr.is_null()
                || e.size < size
                || e.size > limit
                || (e.ptr as usize) & (align - 1) != 0
            {
                continue;
            }
            if best.is_none_or(|b| self.entries[b].size > e.size) {
                best = Some(i);
            }
        }
        let e = core::mem::replace(&mut self.entries[best?], EMPTY);
        if e.purged {
            self.pace.taken_back(e.purged_at, clock(), cfg);
        } else {
            self.resident -= e.size;
        }
        Some(Span {
            ptr: e.ptr,
            size: e.size,
            zeroed: e.zeroed,
        })
    }

    /// Keep `span`; returns the entry evicted to make room (to be released by the caller).
    pub(crate) fn put(&mut self, ptr: *mut u8, size: usize, now: u64) -> Option<(*mut u8, usize)> {
        let entry = Entry {
            ptr,
            size,
            freed_at: now,
            purged_at: 0,
            purged: false,
            zeroed: false,
        };
        self.resident += size;
        let slot = match self.entries.iter().position(|e| e.ptr.is_null()) {
            Some(free) => free,
            None => {
                let oldest = (0..CACHE_ENTRIES)
                    .min_by_key(|&i| self.entries[i].freed_at)
                    .unwrap_or(0);
                let old = self.entries[oldest];
                self.entries[oldest] = entry;
                if !old.purged {
                    self.resident -= old.size;
                }
                return Some((old.ptr, old.size));
            }
        };
        self.entries[slot] = entry;
        None
    }

    /// Take out the entries due for purging or release (at most `out.len()`), returning how
    /// many were written, at `delay`. Purged spans must be given back with
    /// [`put_purged`](Self::put_purged).
    pub(crate) fn expire(&mut self, now: u64, delay: u64, force: bool, out: &mut [Work]) -> usize {
        let mut n = 0;
        for e in self.entries.iter_mut() {
            if n == out.len() {
                break;
            }
            if e.ptr.is_null() {
                continue;
            }
            let age = now.saturating_sub(e.freed_at);
            if force || age >= delay.saturating_mul(RELEASE_FACTOR).max(1) {
                out[n] = Work::Release(e.ptr, e.size);
            } else if !e.purged && age >= delay {
                out[n] = Work::Purge(e.ptr, e.size);
            } else {
                continue;
            }
            if !e.purged {
                self.resident -= e.size;
            }
            *e = EMPTY;
            n += 1;
        }
        n
    }

    /// Take out the oldest resident spans, to be purged, until the resident bytes fit
    /// [`RESIDENT_CAP`] (at most `out.len()`); returns how many were written.
    pub(crate) fn shed(&mut self, out: &mut [Work]) -> usize {
        let mut n = 0;
        while self.resident > RESIDENT_CAP && n < out.len() {
            let Some(oldest) = (0..CACHE_ENTRIES)
                .filter(|&i| !self.entries[i].ptr.is_null() && !self.entries[i].purged)
                .min_by_key(|&i| self.entries[i].freed_at)
            else {
                break;
            };
            let e = core::mem::replace(&mut self.entries[oldest], EMPTY);
            self.resident -= e.size;
            out[n] = Work::Purge(e.ptr, e.size);
            n += 1;
        }
        n
    }

    /// Return a span taken out by [`expire`](Self::expire) or [`shed`](Self::shed) after
    /// purging it at `purged_at`.
    pub(crate) fn put_purged(
        &mut self,
        ptr: *mut u8,
        size: usize,
        freed_at: u64,
        purged_at: u64,
        zeroed: bool,
    ) -> Option<(*mut u8, usize)> {
        match self.entries.iter().position(|e| e.ptr.is_null()) {
            Some(slot) => {
                self.entries[slot] = Entry {
                    ptr,
                    size,
                    freed_at,
                    purged_at,
                    purged: true,
                    zeroed,
                };
                None
            }
            None => Some((ptr, size)),
        }
    }

    /// Whether nothing is cached.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.ptr.is_null())
    }

    /// Earliest time a maintenance pass has something to do at `delay` (u64::MAX if never).
    pub(crate) fn next_deadline(&self, delay: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| !e.ptr.is_null())
            .map(|e| {
                e.freed_at
                    + if e.purged {
                        delay.saturating_mul(RELEASE_FACTOR)
                    } else {
                        delay
                    }
            })
            .min()
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge_pace::MemoryBudget;

    const TEST_CFG: PurgeDelay = PurgeDelay { base: 10, max: 10 };

    fn p(addr: usize) -> *mut u8 {
        addr as *mut u8
    }

    #[test]
    fn best_fit_within_slack() {
        let mut c = SpanCache::new();
        assert!(c.put(p(0x40_0000), 8 << 20, 0).is_none());
        assert!(c.put(p(0x80_0000), 5 << 20, 0).is_none());
        // Best fit: 4 MiB takes the 5 MiB span, then the 8 MiB one (within 4x); 2 MiB
        // finds nothing left.
        let s = c.take(4 << 20, 1 << 22, || 0, TEST_CFG).expect("fit");
        assert_eq!(s.size, 5 << 20);
        assert_eq!(
            c.take(4 << 20, 1 << 22, || 0, TEST_CFG).map(|s| s.size),
            Some(8 << 20)
        );
        assert!(c.take(2 << 20, 1 << 22, || 0, TEST_CFG).is_none());
        c.put(p(0x40_0000), 16 << 20, 0);
        assert!(
            c.take(3 << 20, 1 << 22, || 0, TEST_CFG).is_none(),
            "more than 4x too big"
        );
        assert_eq!(
            c.take(4 << 20, 1 << 22, || 0, TEST_CFG).map(|s| s.size),
            Some(16 << 20)
        );
        assert!(c.is_empty());
        assert_eq!(c.resident, 0);
    }

    #[test]
    fn alignment_is_honoured() {
        let mut c = SpanCache::new();
        c.put(p(0x40_0000), 4 << 20, 0);
        assert!(c.take(4 << 20, 1 << 23, || 0, TEST_CFG).is_none());
        assert!(c.take(4 << 20, 1 << 22, || 0, TEST_CFG).is_some());
    }

    #[test]
    fn full_cache_evicts_oldest() {
        let mut c = SpanCache::new();
        for i in 0..CACHE_ENTRIES {
            assert!(c.put(p((i + 1) << 22), 4 << 20, i as u64 + 10).is_none());
        }
        let evicted = c.put(p(0x1000 << 22), 4 << 20, 100).expect("evicts");
        assert_eq!(evicted.0, p(1 << 22));
    }

    #[test]
    fn a_purged_span_taken_back_soon_lengthens_the_delay() {
        let cfg = PurgeDelay {
            base: 10,
            max: 1000,
        };
        let memory = MemoryBudget::new();
        let mut c = SpanCache::new();
        c.put(p(1 << 22), 4 << 20, 0);
        assert_eq!(c.pace.delay_at(0, cfg, memory.over_peak(c.resident)), 10);
        c.put_purged(p(2 << 22), 4 << 20, 0, 100, true);
        assert!(c.take(4 << 20, 1 << 22, || 150, cfg).is_some());
        assert!(c.take(4 << 20, 1 << 22, || 150, cfg).is_some());
        // One of the two was purged 50 ms before: the delay doubled. Nothing is in use
        // though (no peak), so keeping the resident span would raise the peak.
        assert_eq!(c.pace.delay(cfg), 20);
        c.put(p(1 << 22), 4 << 20, 160);
        assert_eq!(c.pace.delay_at(160, cfg, memory.over_peak(c.resident)), 10);
        memory.page_taken(16 << 20, 0);
        assert_eq!(c.pace.delay_at(160, cfg, memory.over_peak(c.resident)), 20);
    }

    #[test]
    fn expiry_purges_then_releases() {
        let mut c = SpanCache::new();
        c.put(p(1 << 22), 4 << 20, 0);
        let mut work = [const { Work::Purge(core::ptr::null_mut(), 0) }; 4];
        assert_eq!(c.expire(5, 10, false, &mut work), 0);
        assert_eq!(c.expire(10, 10, false, &mut work), 1);
        assert!(matches!(work[0], Work::Purge(_, _)));
        assert_eq!(c.resident, 0);
        c.put_purged(p(1 << 22), 4 << 20, 0, 10, true);
        assert_eq!(
            c.take(4 << 20, 1 << 22, || 0, TEST_CFG).map(|s| s.zeroed),
            Some(true)
        );
        c.put(p(1 << 22), 4 << 20, 0);
        assert_eq!(c.expire(10 * 16, 10, false, &mut work), 1);
        assert!(matches!(work[0], Work::Release(_, _)));
    }
}
