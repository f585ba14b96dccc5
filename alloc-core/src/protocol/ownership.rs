//! Which heap owns a page: the page's `heap` word (0 when abandoned), and the hand-over when
//! a thread exits.
//!
//! Abandonment, by the exiting owner:
//! 1. [`stop_notifications`] on every page (DELAY_NEVER, after any remote thread still in
//!    DELAY_FREEING has finished pushing onto this heap's delayed list);
//! 2. take the heap's delayed list (nothing can be added to it any more);
//! 3. per page: take `thread_free`, then [`release`] (heap word 0); the segment goes on the
//!    allocator's abandoned list (under its lock).
//!
//! Adoption, by another heap that popped the segment from that list: per page [`adopt`]
//! (heap word, then DELAY_NO), then take `thread_free`. Remote frees meanwhile push onto
//! `thread_free` (DELAY_NEVER sends no notification), so no block is lost in between.

use super::thread_free::{self, DELAY_NEVER, DELAY_NO};
use super::AtomicWord;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Whether `heap` owns the page now. Relaxed: only the owner itself can make this true, so
/// a thread that sees its own heap here really is the owner.
#[inline(always)]
pub fn is_owner<A: AtomicWord>(heap_word: &A, heap: usize) -> bool {
    heap_word.load(Relaxed) == heap
}

/// Remote thread in DELAY_FREEING: the heap to notify. The owner cannot change while the
/// page is in that state (see [`thread_free::set_delay`]); Acquire pairs with the Release
/// of [`adopt`] and the page's creation, so the heap's fields are visible.
#[inline(always)]
pub fn owner<A: AtomicWord>(heap_word: &A) -> usize {
    heap_word.load(Acquire)
}

/// Exiting owner, step 1: no remote free may notify this heap any more.
#[inline(always)]
pub fn stop_notifications<A: AtomicWord>(thread_free: &A, wait: impl FnMut()) {
    thread_free::set_delay(thread_free, DELAY_NEVER, wait);
}

/// Exiting owner, step 3: the page has no owner.
#[inline(always)]
pub fn release<A: AtomicWord>(heap_word: &A) {
    heap_word.store(0, Release);
}

/// Adopter: `heap` owns the page, and remote frees may notify it again.
#[inline(always)]
pub fn adopt<A: AtomicWord>(heap_word: &A, thread_free: &A, heap: usize, wait: impl FnMut()) {
    heap_word.store(heap, Release);
    thread_free::set_delay(thread_free, DELAY_NO, wait);
}
