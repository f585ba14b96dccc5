//! Heaps parked at thread exit.
//!
//! When a thread exits, its heap is kept whole (segments, pages, free blocks, queues) for the
//! next thread that starts, instead of abandoning its segments one by one for other heaps to
//! adopt. A thread that replaces an exited one (a server's worker, a pool's new thread)
//! starts with pages that already have free blocks, and the blocks the old thread handed out
//! become its own again: their frees are local, not remote. On larson (threads retire every
//! 20 rounds, 2,400 exits per run) abandonment cost about 4.8 segment adoptions per exit and
//! left each adopter with sparsely used pages of every class.
//!
//! A parked heap is not used by any thread; other threads still free into its pages (onto
//! `thread_free`, or its delayed list for full pages: the heap stays live memory). Parking
//! is bounded: at most [`MAX_PARKED`] heaps, each for at most [`PARK_LIMIT_MS`]; after that
//! the purge check of any running heap retires it (its segments are abandoned as before), and
//! `trim` retires them all. Arena heaps are never parked.

use core::ptr;
use core::sync::atomic::Ordering;

use crate::allocator::Allocator;
use crate::heap::Heap;
use crate::source::PageSource;

/// Heaps kept at most: more than the threads a program usually replaces at once, few enough
/// that the memory they hold stays small (each holds what its thread left).
pub const MAX_PARKED: usize = 4;

/// How long a heap stays parked before it is retired (abandoned): a program that replaces
/// threads does so well within a second, and memory of threads that are not replaced goes
/// back to the other heaps soon after.
pub const PARK_LIMIT_MS: u64 = 1000;

impl<S: PageSource> Allocator<S> {
    /// Thread exit: park `heap` for the next new thread if there is room, else retire it
    /// ([`retire_heap`](Self::retire_heap)). Blocks it handed out stay valid and can be freed
    /// from any thread.
    ///
    /// # Safety
    ///
    /// As for [`retire_heap`](Self::retire_heap): `heap` came from
    /// [`new_heap`](Self::new_heap) of this allocator, no thread uses it, and the caller does
    /// not use it after this call.
    pub unsafe fn park_heap(&self, heap: *mut Heap) {
        // SAFETY: per the contract the heap is ours alone until it is on the parked list.
        unsafe {
            if !(*heap).arena && (*heap).is_live() {
                (*heap).parked_at = self.source().now_ms();
                let mut pool = self.pool.lock(self.source());
                // Only changed under the lock: exact here.
                if self.parked_count.load(Ordering::Relaxed) < MAX_PARKED {
                    (*heap).pool_next = pool.parked;
                    pool.parked = heap;
                    self.parked_count.fetch_add(1, Ordering::Relaxed);
                    drop(pool);
                    self.counters.heaps.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
            self.retire_heap(heap);
        }
    }

    /// The most recently parked heap, now the caller's, or null if none is parked.
    pub(crate) fn take_parked(&self) -> *mut Heap {
        if self.parked_count.load(Ordering::Relaxed) == 0 {
            return ptr::null_mut();
        }
        let mut pool = self.pool.lock(self.source());
        // SAFETY: the link is the list's head, the lock is held until the unlink is done.
        unsafe { self.unlink_parked(&raw mut pool.parked) }
    }

    /// Take the oldest parked heap if `pred` holds for it; null if it does not or none is
    /// parked.
    fn take_oldest_parked(&self, pred: impl Fn(&Heap) -> bool) -> *mut Heap {
        let mut pool = self.pool.lock(self.source());
        // SAFETY: the parked list links live, unused heaps; the lock is held. At most
        // MAX_PARKED of them: the walk to the oldest is short.
        unsafe {
            let mut link: *mut *mut Heap = &raw mut pool.parked;
            if (*link).is_null() {
                return ptr::null_mut();
            }
            while !(**link).pool_next.is_null() {
                link = &raw mut (**link).pool_next;
            }
            if !pred(&**link) {
                return ptr::null_mut();
            }
            self.unlink_parked(link)
        }
    }

    /// Unlink the parked heap `*link` points to (null: none) and hand it to the caller.
    ///
    /// # Safety
    ///
    /// The pool lock is held and `link` is a link of the parked list.
    unsafe fn unlink_parked(&self, link: *mut *mut Heap) -> *mut Heap {
        // SAFETY: per the contract; parked heaps are live, unused heaps of this allocator.
        unsafe {
            let heap = *link;
            if !heap.is_null() {
                *link = (*heap).pool_next;
                (*heap).pool_next = ptr::null_mut();
                self.parked_count.fetch_sub(1, Ordering::Relaxed);
                self.counters.heaps.fetch_add(1, Ordering::Relaxed);
            }
            heap
        }
    }

    /// Retire parked heaps older than [`PARK_LIMIT_MS`]. Called from purge checks; one load
    /// when nothing is parked.
    pub(crate) fn unpark_stale(&self) {
        if self.parked_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = self.source().now_ms();
        loop {
            let heap =
                self.take_oldest_parked(|h| now.saturating_sub(h.parked_at) >= PARK_LIMIT_MS);
            if heap.is_null() {
                return;
            }
            // SAFETY: taken off the parked list, the heap is ours and unused.
            unsafe { self.retire_heap(heap) };
        }
    }

    /// Retire every parked heap (for `trim`).
    pub(crate) fn unpark_all(&self) {
        loop {
            let heap = self.take_oldest_parked(|_| true);
            if heap.is_null() {
                return;
            }
            // SAFETY: as in unpark_stale.
            unsafe { self.retire_heap(heap) };
        }
    }
}
