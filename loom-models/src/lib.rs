//! A model of one page and two heaps built from `alloc_core::protocol`'s functions, composed
//! the way `alloc-core`'s heap and allocator compose them, for loom to check (the tests are
//! in `tests/protocols.rs`).
//!
//! What the model keeps and what it drops: the protocol words are loom atomics; each block's
//! link word is a loom `UnsafeCell` (plain memory in the allocator), so loom reports a read
//! of a link that is not ordered after its write; a heap's liveness is a plain cell the owner
//! clears when its thread exits, so a remote free that touches a retired heap is caught
//! either as a race or by its assertion. Links are not encoded (the key plays no part in
//! the ordering), and the owner's queues shrink to a flag, `in_full`.

use alloc_core::protocol::{delayed, ownership, thread_free, AtomicWord};
use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

/// A loom atomic usable by the protocols.
pub struct Word(AtomicUsize);

impl Word {
    pub fn new(value: usize) -> Self {
        Word(AtomicUsize::new(value))
    }
}

impl AtomicWord for Word {
    fn load(&self, order: Ordering) -> usize {
        self.0.load(order)
    }
    fn store(&self, value: usize, order: Ordering) {
        self.0.store(value, order)
    }
    fn swap(&self, value: usize, order: Ordering) -> usize {
        self.0.swap(value, order)
    }
    fn fetch_and(&self, value: usize, order: Ordering) -> usize {
        self.0.fetch_and(value, order)
    }
    fn compare_exchange_weak(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize> {
        self.0.compare_exchange_weak(current, new, success, failure)
    }
}

/// Blocks in the model's page.
pub const BLOCKS: usize = 4;

/// Block `i`'s address: non-zero, 16-byte aligned (the state bits stay clear).
pub fn addr(i: usize) -> usize {
    (i + 1) * 16
}

fn index(addr: usize) -> usize {
    assert!(
        addr.is_multiple_of(16) && (16..=BLOCKS * 16).contains(&addr),
        "bad link {addr:#x}"
    );
    addr / 16 - 1
}

/// A heap as the protocols see it: its delayed list, and whether it is live.
pub struct HeapModel {
    pub delayed: Word,
    pub live: UnsafeCell<bool>,
}

/// One page (its `thread_free` and `heap` words, its blocks' link words) and two heaps
/// (heap word 1 and 2; 0 is no owner).
pub struct Model {
    pub thread_free: Word,
    pub heap_word: Word,
    pub links: [UnsafeCell<usize>; BLOCKS],
    pub heaps: [HeapModel; 2],
}

/// How a model thread waits (loom must see every spin wait yield).
pub fn wait() {
    loom::thread::yield_now();
}

impl Model {
    /// A page owned by heap `owner` (0: abandoned) in delayed-free state `state`.
    pub fn new(owner: usize, state: usize) -> Self {
        Model {
            thread_free: Word::new(state),
            heap_word: Word::new(owner),
            links: std::array::from_fn(|_| UnsafeCell::new(0)),
            heaps: std::array::from_fn(|_| HeapModel {
                delayed: Word::new(0),
                live: UnsafeCell::new(true),
            }),
        }
    }

    fn write_link(&self, i: usize, value: usize) {
        // SAFETY: loom's cell checks this write against every other access to the block.
        self.links[i].with_mut(|p| unsafe { *p = value });
    }

    fn read_link(&self, i: usize) -> usize {
        // SAFETY: as in write_link.
        self.links[i].with(|p| unsafe { *p })
    }

    /// A thread that does not own the page frees block `i` (alloc-core's `free_remote`).
    pub fn remote_free(&self, i: usize) {
        let block = addr(i);
        let notify = thread_free::push(&self.thread_free, block, |head| self.write_link(i, head));
        if notify {
            let owner = ownership::owner(&self.heap_word);
            assert!(owner == 1 || owner == 2, "notifying owner {owner}");
            let heap = &self.heaps[owner - 1];
            // SAFETY: loom checks this read against the owner's write at retirement.
            heap.live
                .with(|p| assert!(unsafe { *p }, "remote free notified a retired heap"));
            delayed::push(&heap.delayed, block, |head| self.write_link(i, head));
            thread_free::end_notify(&self.thread_free, thread_free::DELAY_NO);
        }
    }

    /// The owner takes the page's remote frees (alloc-core's `Page::collect`).
    pub fn collect(&self, got: &mut Vec<usize>) {
        let (mut link, counted) = thread_free::take(&self.thread_free);
        let before = got.len();
        while link != 0 {
            let i = index(link);
            got.push(i);
            link = self.read_link(i);
        }
        assert_eq!(
            got.len() - before,
            counted,
            "the freers' count is the stack's length"
        );
    }

    /// The owner of heap `heap` takes its delayed list (alloc-core's `process_delayed`); a
    /// block from it brings its page back from the full queue (`free_local_cold`).
    pub fn process_delayed(&self, heap: usize, got: &mut Vec<usize>, in_full: &mut bool) {
        let mut link = delayed::take(&self.heaps[heap - 1].delayed);
        while link != 0 {
            let i = index(link);
            got.push(i);
            link = self.read_link(i);
            if *in_full {
                self.leave_full(in_full);
            }
        }
    }

    /// The owner moves the exhausted page to its full queue (`page_to_full`).
    pub fn enter_full(&self, in_full: &mut bool) {
        *in_full = true;
        if thread_free::enter_full(&self.thread_free, wait) {
            self.leave_full(in_full);
        }
    }

    /// The owner brings the page back from its full queue (`page_unfull`).
    pub fn leave_full(&self, in_full: &mut bool) {
        thread_free::set_delay(&self.thread_free, thread_free::DELAY_NO, wait);
        *in_full = false;
    }

    /// The owner's thread exits (`Heap::abandon`): stop notifications, take the delayed
    /// list, take the page's remote frees, release the page, retire the heap.
    pub fn abandon(&self, heap: usize, got: &mut Vec<usize>) {
        ownership::stop_notifications(&self.thread_free, wait);
        let mut in_full = false;
        self.process_delayed(heap, got, &mut in_full);
        self.collect(got);
        ownership::release(&self.heap_word);
        // SAFETY: loom checks this write against remote frees reading the flag.
        self.heaps[heap - 1]
            .live
            .with_mut(|p| unsafe { *p = false });
    }

    /// Heap `heap` adopts the abandoned page (`Heap::adopt_one`).
    pub fn adopt(&self, heap: usize, got: &mut Vec<usize>) {
        ownership::adopt(&self.heap_word, &self.thread_free, heap, wait);
        self.collect(got);
    }

    /// The page's state bits now.
    pub fn state(&self) -> usize {
        self.thread_free.load(Ordering::Relaxed) & thread_free::DELAY_MASK
    }

    /// Whether blocks wait on the page's stack now.
    pub fn has_blocks(&self) -> bool {
        thread_free::has_blocks(&self.thread_free)
    }

    /// Whether heap `heap`'s delayed list holds blocks now.
    pub fn delayed_pending(&self, heap: usize) -> bool {
        self.heaps[heap - 1].delayed.load(Ordering::Relaxed) != 0
    }
}

/// Asserts that `got` holds each of `want` exactly once.
pub fn assert_each_once(mut got: Vec<usize>, want: &[usize]) {
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "blocks lost or taken twice");
}

/// A loom model run with a preemption bound (LOOM_MAX_PREEMPTIONS, default 3): every
/// interleaving with at most that many preemptions, which finds the known classes of bugs
/// in these protocols (each needs one or two) in seconds rather than hours.
pub fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}
