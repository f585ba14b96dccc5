//! Statistics snapshots.

use crate::size_class::NUM_CLASSES;

/// A point-in-time view of an allocator's counters. Small-block counts are exact as of each
/// page's last slow-path event: the fast paths count nothing, so counting costs them nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes in live blocks (small and medium blocks at their class size).
    pub allocated: usize,
    /// Bytes obtained from the page source and not released.
    pub reserved: usize,
    /// Highest `reserved` seen.
    pub peak_reserved: usize,
    /// Page segments in use.
    pub segments: usize,
    /// Purge operations done (each one source call).
    pub purges: usize,
    /// Bytes purged in total.
    pub purged_bytes: usize,
    /// Blocks freed by a thread other than their owner.
    pub remote_frees: usize,
    /// Live huge blocks (over 1 MiB, a span each).
    pub huge_count: usize,
    /// Bytes requested in live huge blocks.
    pub huge_bytes: usize,
    /// Live heaps (threads with a heap).
    pub heaps: usize,
    /// Segments abandoned by exited threads and not yet adopted.
    pub abandoned_segments: usize,
    /// Heaps of exited threads parked whole for the next new thread
    /// (see [`parking`](crate::parking)).
    pub parked_heaps: usize,
    /// Bytes of freed spans kept resident in the span cache.
    pub cached_resident: usize,
    /// Live blocks per size class (index: class, see [`class_size`](crate::size_class::class_size)).
    pub class_live: [usize; NUM_CLASSES],
    /// The guarded pool's counters (all zero when it is off).
    pub guarded: crate::guarded::GuardedStats,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            allocated: 0,
            reserved: 0,
            peak_reserved: 0,
            segments: 0,
            purges: 0,
            purged_bytes: 0,
            remote_frees: 0,
            huge_count: 0,
            huge_bytes: 0,
            heaps: 0,
            abandoned_segments: 0,
            parked_heaps: 0,
            cached_resident: 0,
            class_live: [0; NUM_CLASSES],
            guarded: crate::guarded::GuardedStats {
                slots: 0,
                allocated: 0,
                live: 0,
                pool_full: 0,
            },
        }
    }
}

/// The counters that track memory moving to and from the page source (cheap to read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Bytes obtained from the source and not released.
    pub reserved: usize,
    /// Purge operations so far.
    pub purges: usize,
    /// Bytes purged so far.
    pub purged_bytes: usize,
    /// Page segments in use.
    pub segments: usize,
}
