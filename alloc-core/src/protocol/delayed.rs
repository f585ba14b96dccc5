//! A heap's delayed list: blocks other threads freed into the heap's *full* pages (see
//! [`thread_free`](super::thread_free)'s DELAY_USE), pushed with one CAS, taken whole by the
//! owner with one swap on its next slow path. The words hold the caller's encoded links.

use super::AtomicWord;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Remote thread: push a block (its encoded link `entry`) onto the list; `link(old_head)`
/// writes the block's link word before the CAS publishes it (Release).
#[inline(always)]
pub fn push<A: AtomicWord>(head: &A, entry: usize, mut link: impl FnMut(usize)) {
    let mut current = head.load(Relaxed);
    loop {
        link(current);
        match head.compare_exchange_weak(current, entry, Release, Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Owner: take the whole list (its first entry, 0 if empty). Acquire pairs with [`push`].
#[inline(always)]
pub fn take<A: AtomicWord>(head: &A) -> usize {
    if head.load(Relaxed) == 0 {
        return 0;
    }
    head.swap(0, Acquire)
}
