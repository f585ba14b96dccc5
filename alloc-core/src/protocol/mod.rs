//! The lock-free protocols between threads, each a small state machine over atomic words:
//!
//! * [`thread_free`](crate::protocol::thread_free): a page's remote-free stack and its
//!   delayed-free states;
//! * [`delayed`](crate::protocol::delayed): a heap's list of blocks freed into its *full*
//!   pages;
//! * [`ownership`](crate::protocol::ownership): which heap owns a page, and how a page
//!   changes hands when its thread exits (abandonment) and another heap takes it (adoption).
//!
//! They are written over the [`AtomicWord`](crate::protocol::AtomicWord) trait so that the
//! allocator runs them on `core`'s atomics (each function is `#[inline(always)]`: the code
//! generated is what a direct use of `AtomicUsize` gives) and the `loom-models` crate runs the same
//! code on loom's atomics, which explores every interleaving and every weak-memory outcome the C++
//! memory model allows. Block memory is touched only through the callers' closures, so the models
//! can watch those plain reads and writes for data races too.
//!
//! Public only for those model checks; not part of pagebreak's API.

pub mod delayed;
pub mod ownership;
pub mod thread_free;

use core::sync::atomic::{AtomicUsize, Ordering};

/// The operations the protocols use on a word-sized atomic.
pub trait AtomicWord {
    /// [`AtomicUsize::load`].
    fn load(&self, order: Ordering) -> usize;
    /// [`AtomicUsize::store`].
    fn store(&self, value: usize, order: Ordering);
    /// [`AtomicUsize::swap`].
    fn swap(&self, value: usize, order: Ordering) -> usize;
    /// [`AtomicUsize::fetch_and`].
    fn fetch_and(&self, value: usize, order: Ordering) -> usize;
    /// [`AtomicUsize::compare_exchange_weak`].
    fn compare_exchange_weak(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize>;
}

impl AtomicWord for AtomicUsize {
    #[inline(always)]
    fn load(&self, order: Ordering) -> usize {
        AtomicUsize::load(self, order)
    }
    #[inline(always)]
    fn store(&self, value: usize, order: Ordering) {
        AtomicUsize::store(self, value, order)
    }
    #[inline(always)]
    fn swap(&self, value: usize, order: Ordering) -> usize {
        AtomicUsize::swap(self, value, order)
    }
    #[inline(always)]
    fn fetch_and(&self, value: usize, order: Ordering) -> usize {
        AtomicUsize::fetch_and(self, value, order)
    }
    #[inline(always)]
    fn compare_exchange_weak(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize> {
        AtomicUsize::compare_exchange_weak(self, current, new, success, failure)
    }
}
