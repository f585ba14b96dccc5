//! The fixed-size table of free address ranges below the break. Pure bookkeeping: no system
//! calls, so it is unit-tested on its own.

/// Capacity of the free-range table. Each entry is 24 bytes; 64 of them cover the holes a
/// segment-granular allocator leaves in practice.
pub const FREE_SLOTS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Every byte reads as zero (fresh from the kernel, or purged).
    pub(crate) zeroed: bool,
}

const EMPTY: Range = Range {
    start: 0,
    end: 0,
    zeroed: false,
};

/// Disjoint, non-adjacent ranges, sorted by address: adjacent ranges are always merged.
pub(crate) struct FreeTable {
    ranges: [Range; FREE_SLOTS],
    len: usize,
}

impl FreeTable {
    pub(crate) const fn new() -> Self {
        Self {
            ranges: [EMPTY; FREE_SLOTS],
            len: 0,
        }
    }

    pub(crate) fn as_slice(&self) -> &[Range] {
        &self.ranges[..self.len]
    }

    /// First fit: carve `size` bytes aligned to `align` (a power of two) out of a free range.
    /// Returns the start and whether it reads as zero. The unused head and tail stay in the
    /// table; a range that would need a new slot for them while the table is full is skipped.
    pub(crate) fn take(&mut self, size: usize, align: usize) -> Option<(usize, bool)> {
        for i in 0..self.len {
            let r = self.ranges[i];
            let Some(start) = r.start.checked_add(align - 1).map(|a| a & !(align - 1)) else {
                continue;
            };
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            if end > r.end {
                continue;
            }
            match (start > r.start, end < r.end) {
                (false, false) => self.remove(i),
                (true, false) => self.ranges[i].end = start,
                (false, true) => self.ranges[i].start = end,
                (true, true) => {
                    if self.len == FREE_SLOTS {
                        continue;
                    }
                    self.ranges[i].end = start;
                    self.insert_at(i + 1, Range { start: end, ..r });
                }
            }
            return Some((start, r.zeroed));
        }
        None
    }

    /// Add the free range `[start, end)`, merging it with its neighbours. Returns `false` if
    /// it touches no neighbour and the table is full: the caller then loses the range.
    pub(crate) fn insert(&mut self, start: usize, end: usize, zeroed: bool) -> bool {
        if start >= end {
            return true;
        }
        let idx = self.ranges[..self.len].partition_point(|r| r.start < start);
        debug_assert!(idx == 0 || self.ranges[idx - 1].end <= start);
        debug_assert!(idx == self.len || end <= self.ranges[idx].start);
        let joins_prev = idx > 0 && self.ranges[idx - 1].end == start;
        let joins_next = idx < self.len && self.ranges[idx].start == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                let next = self.ranges[idx];
                let prev = &mut self.ranges[idx - 1];
                prev.end = next.end;
                prev.zeroed &= zeroed && next.zeroed;
                self.remove(idx);
            }
            (true, false) => {
                let prev = &mut self.ranges[idx - 1];
                prev.end = end;
                prev.zeroed &= zeroed;
            }
            (false, true) => {
                let next = &mut self.ranges[idx];
                next.start = start;
                next.zeroed &= zeroed;
            }
            (false, false) => {
                if self.len == FREE_SLOTS {
                    return false;
                }
                self.insert_at(idx, Range { start, end, zeroed });
            }
        }
        true
    }

    /// Remove and return the highest range if it ends exactly at `end`.
    pub(crate) fn pop_ending_at(&mut self, end: usize) -> Option<Range> {
        match self.len.checked_sub(1).map(|i| self.ranges[i]) {
            Some(r) if r.end == end => {
                self.len -= 1;
                Some(r)
            }
            _ => None,
        }
    }

    fn remove(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Caller checked there is a free slot.
    fn insert_at(&mut self, i: usize, r: Range) {
        self.ranges.copy_within(i..self.len, i + 1);
        self.ranges[i] = r;
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: usize = 4096;

    fn r(start: usize, end: usize, zeroed: bool) -> Range {
        Range { start, end, zeroed }
    }

    #[test]
    fn insert_sorts_and_coalesces() {
        let mut t = FreeTable::new();
        assert!(t.insert(10 * P, 12 * P, true));
        assert!(t.insert(2 * P, 4 * P, true));
        assert!(t.insert(6 * P, 8 * P, false));
        assert_eq!(
            t.as_slice(),
            &[
                r(2 * P, 4 * P, true),
                r(6 * P, 8 * P, false),
                r(10 * P, 12 * P, true)
            ]
        );
        assert!(t.insert(4 * P, 6 * P, true)); // joins both neighbours, one is dirty
        assert!(t.insert(8 * P, 9 * P, true)); // joins the previous one
        assert!(t.insert(10 * P, 10 * P, true)); // empty: ignored
        assert!(t.insert(9 * P, 10 * P, true)); // closes the last gap
        assert_eq!(t.as_slice(), &[r(2 * P, 12 * P, false)]);
    }

    #[test]
    fn take_honours_alignment_and_splits() {
        let mut t = FreeTable::new();
        let a = 16 * P;
        t.insert(P, 40 * P, true);
        assert_eq!(t.take(4 * P, a), Some((16 * P, true)));
        assert_eq!(t.as_slice(), &[r(P, 16 * P, true), r(20 * P, 40 * P, true)]);
        assert_eq!(t.take(8 * P, a), Some((32 * P, true)));
        assert_eq!(t.take(17 * P, P), None);
        assert_eq!(t.take(15 * P, P), Some((P, true)));
        assert_eq!(t.as_slice(), &[r(20 * P, 32 * P, true)]);
        assert_eq!(t.take(12 * P, P), Some((20 * P, true)));
        assert!(t.as_slice().is_empty());
    }

    #[test]
    fn full_table_drops_lone_ranges_but_still_merges() {
        let mut t = FreeTable::new();
        for i in 0..FREE_SLOTS {
            assert!(t.insert((4 * i + 1) * P, (4 * i + 4) * P, true));
        }
        let past = 4 * FREE_SLOTS * P;
        assert!(!t.insert(past + P, past + 2 * P, true));
        // Every fit would leave a head and a tail, which needs a slot: none is used.
        assert_eq!(t.take(P, 2 * P), None);
        assert_eq!(t.take(P, P), Some((P, true)));
        assert!(t.insert(0, 2 * P, false)); // merges with what is left of the first range
        assert_eq!(t.as_slice()[0], r(0, 4 * P, false));
        assert_eq!(t.as_slice().len(), FREE_SLOTS);
    }

    #[test]
    fn pop_only_the_range_at_the_top() {
        let mut t = FreeTable::new();
        t.insert(P, 2 * P, true);
        t.insert(3 * P, 5 * P, false);
        assert_eq!(t.pop_ending_at(4 * P), None);
        assert_eq!(t.pop_ending_at(5 * P), Some(r(3 * P, 5 * P, false)));
        assert_eq!(t.pop_ending_at(2 * P), Some(r(P, 2 * P, true)));
        assert_eq!(t.pop_ending_at(2 * P), None);
    }
}
