//! Address hints for aligned spans.
//!
//! Segments and huge blocks must start at a multiple of 4 MiB. A map placed by the kernel
//! rarely is: on the large-block workload most aligned requests cost four system calls (map,
//! unmap, map `size + align`, unmap the ends), and every map and unmap takes the process's
//! mmap lock, stalling the other threads' page faults (196 context switches against
//! mimalloc's 16). Like mimalloc, we pass the kernel a hint: the next aligned address of a
//! region no one else uses, handed out in increasing order. Taken, a hinted map is aligned in
//! one call.
//!
//! The region starts at a random multiple of 1 GiB between 2 and 6 TiB (address-space layout
//! randomisation keeps working) and ends at 30 TiB, far below the 47-bit limit. A hint is
//! only a hint: the kernel places the map elsewhere if the range is taken (or beyond the
//! address space of a smaller configuration), and then hints are switched off for good,
//! so a process where they do not work pays one extra call, once.

use core::sync::atomic::{AtomicUsize, Ordering};

const GIB: usize = 1 << 30;
/// Where the hint region may start: 2 TiB plus up to 4 TiB of randomness.
const BASE: usize = 2048 * GIB;
const RANDOM_GIBS: u64 = 4096;
/// Where the hint region ends.
const END: usize = 30 * 1024 * GIB;
/// `next` before the first hint.
const UNSET: usize = 0;
/// `next` once hints are off.
const OFF: usize = usize::MAX;

/// The next hinted address (shared by all threads).
#[derive(Debug)]
pub(crate) struct Hints {
    next: AtomicUsize,
}

impl Hints {
    pub(crate) const fn new() -> Self {
        Hints {
            next: AtomicUsize::new(UNSET),
        }
    }

    /// An address, a multiple of `align`, where `size` bytes are reserved for this caller's
    /// hint; `None` when hints are off or used up. `entropy` seeds the region's start.
    pub(crate) fn take(
        &self,
        size: usize,
        align: usize,
        entropy: impl Fn() -> u64,
    ) -> Option<usize> {
        let step = size.checked_next_multiple_of(align)?;
        let mut current = self.next.load(Ordering::Relaxed);
        loop {
            if current == OFF {
                return None;
            }
            if current == UNSET {
                let start = BASE + (entropy() % RANDOM_GIBS) as usize * GIB;
                current = match self.next.compare_exchange(
                    UNSET,
                    start,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => start,
                    Err(seen) => seen,
                };
                continue;
            }
            let start = current.checked_next_multiple_of(align)?;
            let end = start.checked_add(step)?;
            if end > END {
                return None;
            }
            match self.next.compare_exchange_weak(
                current,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(start),
                Err(seen) => current = seen,
            }
        }
    }

    /// The kernel did not take a hint: stop giving them.
    pub(crate) fn switch_off(&self) {
        self.next.store(OFF, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_aligned_disjoint_and_inside_the_region() {
        let hints = Hints::new();
        let mut last_end = 0;
        for (i, (size, align)) in [(4 << 20, 4 << 20), (5 << 20, 4 << 20), (64 << 10, 8 << 20)]
            .into_iter()
            .cycle()
            .take(300)
            .enumerate()
        {
            let h = hints.take(size, align, || 12345).unwrap();
            assert_eq!(h % align, 0, "{i}");
            assert!(h >= last_end, "{i}: overlaps the hint before");
            assert!((BASE..END).contains(&h));
            last_end = h + size;
        }
    }

    #[test]
    fn the_start_is_random_and_hints_stop_when_used_up_or_off() {
        let a = Hints::new().take(4 << 20, 4 << 20, || 1).unwrap();
        let b = Hints::new().take(4 << 20, 4 << 20, || 2).unwrap();
        assert_eq!(b - a, GIB);
        let hints = Hints::new();
        assert!(
            hints.take(END, 4 << 20, || 0).is_none(),
            "beyond the region"
        );
        assert!(hints.take(4 << 20, 4 << 20, || 0).is_some());
        hints.switch_off();
        assert!(hints.take(4 << 20, 4 << 20, || 0).is_none());
    }
}
