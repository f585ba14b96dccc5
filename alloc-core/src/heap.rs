//! A thread-owned heap: per size class a queue of pages, the direct table the malloc fast path
//! reads, the segments it owns, and the list of segments waiting to be purged. How pages move
//! between the queues (the slow path's search, the full queue) is in
//! `page_queue.rs`; this module owns segments, purging, abandonment and
//! adoption.
//!
//! Only the owning thread touches a heap, except for its `delayed_free` list, an atomic stack
//! other threads push onto when they free into one of its *full* pages (so the owner learns the
//! page has room again without scanning full pages).

use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::allocator::Allocator;
use crate::checks::{Call, MisuseKind};
use crate::page::Page;
use crate::page_queue::PageQueue;
use crate::protocol::ownership;
use crate::purge_pace::PurgePace;
use crate::segment::{Segment, SegmentHeader};
use crate::size_class::{
    class_of, class_size, page_kind, PageKind, DIRECT_SLOTS, LARGE_MAX, NUM_CLASSES,
};
use crate::source::PageSource;
use crate::util::SpinLock;
use crate::wait::waiter;

/// The page every direct-table slot of an empty heap points to: never has a free block, so the
/// fast path falls through to the slow path, and is never written.
#[repr(transparent)]
pub(crate) struct SyncPage(pub(crate) Page);
// SAFETY: EMPTY_PAGE is only ever read (its free list is null, so nothing pops from it).
unsafe impl Sync for SyncPage {}
pub(crate) static EMPTY_PAGE: SyncPage = SyncPage(Page::EMPTY);

#[inline(always)]
pub(crate) fn empty_page() -> *mut Page {
    ptr::addr_of!(EMPTY_PAGE.0).cast_mut()
}

/// Slow paths between two looks at the purge clock. A slow path runs at most every few
/// dozen mallocs of a class, so purges still happen within milliseconds of their deadline.
pub(crate) const PURGE_CHECK_EVERY: u32 = 32;

/// Per-heap counters, written by the owner with plain load/store pairs (no locked
/// instruction) and read by anyone taking a statistics snapshot.
pub(crate) struct HeapCounters {
    /// Live blocks per class, as of each page's last slow-path event.
    pub(crate) class_live: [AtomicUsize; NUM_CLASSES],
    /// Blocks this heap's thread freed into pages owned by other threads.
    pub(crate) remote_frees: AtomicUsize,
}

#[inline(always)]
pub(crate) fn bump(counter: &AtomicUsize, delta: isize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add_signed(delta),
        Ordering::Relaxed,
    );
}

/// A heap. Obtain one from [`Allocator::new_heap`]; use it from one thread at a time.
/// Cache-line aligned: heaps are carved side by side, and one thread's counters must not
/// share a line with the next thread's direct table (false sharing).
#[repr(C, align(64))]
pub struct Heap {
    pub(crate) direct: [*mut Page; DIRECT_SLOTS],
    pub(crate) live: bool,
    pub(crate) queues: [PageQueue; NUM_CLASSES],
    pub(crate) full: PageQueue,
    /// Blocks freed by other threads into full pages: encoded links, exposed provenance.
    pub(crate) delayed_free: AtomicUsize,
    pub(crate) key: usize,
    pub(crate) secret: usize,
    pub(crate) segs_all: *mut Segment,
    /// Segments with a free slot, per page kind.
    pub(crate) segs_free: [*mut Segment; 3],
    pub(crate) purge_head: *mut Segment,
    pub(crate) purge_tail: *mut Segment,
    pub(crate) next_purge: u64,
    /// Slow-path calls, to pace purge checks.
    pub(crate) slow_ticks: u32,
    pub(crate) pool_next: *mut Heap,
    pub(crate) all_next: *mut Heap,
    pub(crate) counters: HeapCounters,
    /// An arena heap: its huge blocks are listed so `destroy_heap` can free them.
    pub(crate) arena: bool,
    /// Huge blocks of an arena heap; other threads may free them, hence the lock.
    pub(crate) huge: SpinLock<HugeList>,
    /// Countdowns to the next sampled allocation (see [`sampling`](crate::sampling)).
    pub(crate) sampler: crate::sampling::Sampler,
    /// When the heap was parked (the source's clock), while it is.
    pub(crate) parked_at: u64,
    /// This heap's purge delay, lengthened while it takes back pages it purged.
    pub(crate) pace: PurgePace,
    /// When this heap last ran a purge pass (the source's clock).
    pub(crate) last_purge_pass: u64,
}

/// Huge blocks an arena heap owns.
pub(crate) struct HugeList {
    head: *mut SegmentHeader,
}
// SAFETY: the list holds headers of spans the allocator owns; it is used under its lock.
unsafe impl Send for HugeList {}

/// A heap that owns nothing and never allocates: what a thread uses before its first
/// allocation. Its fast path always misses, and frees through it take the remote path.
pub struct EmptyHeap(Heap);
// SAFETY: the empty heap is never written (`live == false` stops every slow path) and its
// only interior-mutable fields are atomics.
unsafe impl Sync for EmptyHeap {}

impl EmptyHeap {
    /// The empty heap.
    pub const fn new() -> Self {
        EmptyHeap(Heap::blank(false))
    }

    /// A pointer usable wherever a `*mut Heap` is expected; never written through.
    pub const fn as_ptr(&'static self) -> *mut Heap {
        ptr::addr_of!(self.0).cast_mut()
    }
}

impl Default for EmptyHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl Heap {
    pub(crate) const fn blank(live: bool) -> Heap {
        Heap {
            direct: [ptr::addr_of!(EMPTY_PAGE.0).cast_mut(); DIRECT_SLOTS],
            live,
            queues: [PageQueue::EMPTY; NUM_CLASSES],
            full: PageQueue::EMPTY,
            delayed_free: AtomicUsize::new(0),
            key: 0,
            secret: 0,
            segs_all: ptr::null_mut(),
            segs_free: [ptr::null_mut(); 3],
            purge_head: ptr::null_mut(),
            purge_tail: ptr::null_mut(),
            next_purge: u64::MAX,
            slow_ticks: 0,
            pool_next: ptr::null_mut(),
            all_next: ptr::null_mut(),
            counters: HeapCounters {
                class_live: [const { AtomicUsize::new(0) }; NUM_CLASSES],
                remote_frees: AtomicUsize::new(0),
            },
            arena: false,
            huge: SpinLock::new(HugeList {
                head: ptr::null_mut(),
            }),
            sampler: crate::sampling::Sampler::OFF,
            parked_at: 0,
            pace: PurgePace::new(),
            last_purge_pass: 0,
        }
    }

    /// Add a huge block to this arena heap's list.
    ///
    /// # Safety
    ///
    /// `hdr` is a live huge header, in no list.
    pub(crate) unsafe fn huge_link<S: PageSource>(&self, source: &S, hdr: *mut SegmentHeader) {
        let mut list = self.huge.lock(source);
        // SAFETY: the header is live and ours; the list's headers are live.
        unsafe {
            (*hdr).owner = self as *const Heap as usize;
            (*hdr).huge_prev = ptr::null_mut();
            (*hdr).huge_next = list.head;
            if !list.head.is_null() {
                (*list.head).huge_prev = hdr;
            }
        }
        list.head = hdr;
    }

    /// Remove a huge block from this arena heap's list.
    ///
    /// # Safety
    ///
    /// `hdr` is in this heap's list.
    pub(crate) unsafe fn huge_unlink<S: PageSource>(&self, source: &S, hdr: *mut SegmentHeader) {
        let mut list = self.huge.lock(source);
        // SAFETY: the header and its neighbours are live members of the list.
        unsafe {
            let (prev, next) = ((*hdr).huge_prev, (*hdr).huge_next);
            if prev.is_null() {
                list.head = next;
            } else {
                (*prev).huge_next = next;
            }
            if !next.is_null() {
                (*next).huge_prev = prev;
            }
            (*hdr).owner = 0;
        }
    }

    /// Take one huge block off this arena heap's list (null when empty).
    pub(crate) fn huge_pop<S: PageSource>(&self, source: &S) -> *mut SegmentHeader {
        let head = self.huge.lock(source).head;
        if !head.is_null() {
            // SAFETY: the head is a live member of our list.
            unsafe { self.huge_unlink(source, head) };
        }
        head
    }

    /// Whether this heap can allocate (false for the empty heap).
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Report `used - published` of `page` into the class counters.
    ///
    /// # Safety
    ///
    /// `page` is a page this heap owns.
    #[inline]
    pub(crate) unsafe fn publish(&self, page: *mut Page) {
        // SAFETY: the owner's field accesses, through the raw pointer (no whole-page
        // reference: other threads read the page's fixed fields meanwhile).
        unsafe {
            let delta = (*page).used as isize - (*page).published as isize;
            if delta != 0 {
                bump(&self.counters.class_live[(*page).class as usize], delta);
                (*page).published = (*page).used;
            }
        }
    }

    // ---------------------------------------------------------------- malloc, slow path

    /// Allocate `size` bytes after the fast path missed: collect frees, find or make a page.
    ///
    /// # Safety
    ///
    /// `self` is a live heap of `alloc`, used by the calling thread only.
    #[inline(never)]
    pub(crate) unsafe fn malloc_generic<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        size: usize,
        zero: bool,
    ) -> *mut u8 {
        if !self.live {
            return ptr::null_mut();
        }
        // SAFETY: we own the heap (caller's contract).
        unsafe {
            self.process_delayed(alloc);
            // Reading the clock costs more than the rest of a typical slow path: look at it
            // on one slow path in PURGE_CHECK_EVERY.
            self.slow_ticks = self.slow_ticks.wrapping_add(1);
            if self.slow_ticks.is_multiple_of(PURGE_CHECK_EVERY) {
                self.maybe_purge(alloc, false);
                alloc.unpark_stale();
            }
            if size > LARGE_MAX {
                return alloc.alloc_large_sampled(self, size, 0, zero);
            }
            let class = class_of(size);
            let page = self.find_page(alloc, class);
            if page.is_null() {
                return ptr::null_mut();
            }
            if (*page).free.is_null() {
                // Only with sampling on: the page's blocks are held behind a sample point.
                return self.malloc_sampled(alloc, page, size, zero);
            }
            let zeroed = (*page).free_is_zero;
            let block = Allocator::<S>::pop(page, (*page).free);
            if zero && !block.is_null() {
                if zeroed {
                    // Fresh memory: only the link word was written.
                    block.cast::<usize>().write(0);
                } else {
                    ptr::write_bytes(block, 0, size);
                }
            }
            block
        }
    }

    /// A fresh page of `class`: from a segment with free slots, or a new segment.
    pub(crate) unsafe fn new_page<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        class: usize,
    ) -> *mut Page {
        let kind = page_kind(class);
        // Large pages take a run of 64 KiB slots; small and medium pages one slot.
        let slots = if kind == PageKind::Large {
            class_size(class).div_ceil(1 << 16)
        } else {
            1
        };
        // SAFETY: segments on our lists are ours.
        let (seg, slot) = unsafe { self.segment_with_run(kind, slots) };
        let (seg, slot) = if seg.is_null() {
            let seg = alloc.new_segment(kind);
            if seg.is_null() {
                return ptr::null_mut();
            }
            // SAFETY: a fresh segment we now own.
            unsafe { self.seg_link(seg) };
            (seg, 1)
        } else {
            (seg, slot)
        };
        // SAFETY: `seg` is ours with `slots` free slots from `slot`.
        unsafe {
            let bits = (u64::MAX >> (64 - slots)) << slot;
            let page_bytes = (*seg).page_bytes();
            let reused = ((*seg).dirty_slots & bits).count_ones() as usize * page_bytes;
            alloc.memory.page_taken(slots * page_bytes, reused);
            (*seg).free_slots &= !bits;
            (*seg).dirty_slots &= !bits;
            (*seg).aged_slots &= !bits;
            if (*seg).purged_slots & bits != 0 {
                (*seg).purged_slots &= !bits;
                let now = alloc.source().now_ms();
                self.pace
                    .taken_back((*seg).purged_at, now, alloc.purge_config());
            }
            let zero = (*seg).zero_slots & bits == bits;
            (*seg).zero_slots &= !bits;
            (*seg).used_pages += 1;
            if (*seg).is_full() && (*seg).in_free_list {
                self.seg_free_list_remove(seg);
            }
            let page = addr_of_mut!((*seg).pages[slot]);
            let start = Segment::slot_start(seg, slot);
            Page::init(
                page,
                start,
                slots * (*seg).page_bytes(),
                class,
                self.secret,
                zero,
            );
            (*page).slots = slots as u8;
            (*page)
                .heap
                .store(self as *mut Heap as usize, Ordering::Relaxed);
            page
        }
    }

    /// A segment of `kind` with `slots` free slots in a row, and the first of them. Looks at
    /// a few segments only: past that a new segment is cheaper than the search.
    unsafe fn segment_with_run(&mut self, kind: PageKind, slots: usize) -> (*mut Segment, usize) {
        const LOOK: usize = 8;
        let mut seg = self.segs_free[kind as usize];
        let mut looked = 0;
        // SAFETY: the free list links live segments we own.
        unsafe {
            while !seg.is_null() && looked < LOOK {
                if let Some(slot) = (*seg).find_free_run(slots) {
                    return (seg, slot);
                }
                seg = (*seg).free_next;
                looked += 1;
            }
        }
        (ptr::null_mut(), 0)
    }

    /// Return a page's slot to its segment (and the segment to the allocator once empty).
    pub(crate) unsafe fn page_free<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
    ) {
        // SAFETY: `page` is ours, in no queue, with no live blocks; its segment is ours.
        unsafe {
            (*page).used = 0;
            self.publish(page);
            (*page).published = 0;
            let seg = Segment::of(page);
            let slot = Segment::slot_of(seg, page);
            let slots = (*page).slots as usize;
            Page::reset(page);
            let bit = (u64::MAX >> (64 - slots)) << slot;
            let was_full = (*seg).is_full();
            (*seg).free_slots |= bit;
            (*seg).dirty_slots |= bit;
            alloc.memory.page_freed(slots * (*seg).page_bytes());
            if alloc.memory.over_peak(0) {
                // Keeping free pages would raise the peak: they age at the configured delay,
                // from a check half of it after our last one.
                let half_base = alloc.purge_delay_ms().div_ceil(2);
                self.next_purge = self.next_purge.min(self.last_purge_pass + half_base);
            }
            (*seg).used_pages -= 1;
            if (*seg).used_pages == 0 {
                self.seg_unlink(seg);
                alloc.free_segment(seg);
                return;
            }
            if was_full {
                self.seg_free_list_push(seg);
            }
            if !(*seg).in_purge_list {
                self.purge_schedule(alloc, seg, alloc.source().now_ms());
            }
        }
    }

    // ---------------------------------------------------------------- segments

    unsafe fn seg_link(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is a segment we own, in none of our lists.
        unsafe {
            (*seg).heap = self as *mut Heap as usize;
            (*seg).all_prev = ptr::null_mut();
            (*seg).all_next = self.segs_all;
            if !self.segs_all.is_null() {
                (*self.segs_all).all_prev = seg;
            }
            self.segs_all = seg;
            if !(*seg).is_full() {
                self.seg_free_list_push(seg);
            }
        }
    }

    unsafe fn seg_unlink(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is in our lists.
        unsafe {
            if (*seg).in_free_list {
                self.seg_free_list_remove(seg);
            }
            if (*seg).in_purge_list {
                self.purge_list_remove(seg);
            }
            let (prev, next) = ((*seg).all_prev, (*seg).all_next);
            if prev.is_null() {
                self.segs_all = next;
            } else {
                (*prev).all_next = next;
            }
            if !next.is_null() {
                (*next).all_prev = prev;
            }
            (*seg).all_next = ptr::null_mut();
            (*seg).all_prev = ptr::null_mut();
            (*seg).heap = 0;
        }
    }

    unsafe fn seg_free_list_push(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is ours and not in the free list.
        unsafe {
            let kind = (*seg).page_kind() as usize;
            (*seg).free_prev = ptr::null_mut();
            (*seg).free_next = self.segs_free[kind];
            if !self.segs_free[kind].is_null() {
                (*self.segs_free[kind]).free_prev = seg;
            }
            self.segs_free[kind] = seg;
            (*seg).in_free_list = true;
        }
    }

    unsafe fn seg_free_list_remove(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is in the free list.
        unsafe {
            let kind = (*seg).page_kind() as usize;
            let (prev, next) = ((*seg).free_prev, (*seg).free_next);
            if prev.is_null() {
                self.segs_free[kind] = next;
            } else {
                (*prev).free_next = next;
            }
            if !next.is_null() {
                (*next).free_prev = prev;
            }
            (*seg).in_free_list = false;
            (*seg).free_next = ptr::null_mut();
            (*seg).free_prev = ptr::null_mut();
        }
    }

    /// Put `seg` (with dirty slots, not in the purge list) in the purge list, due for a check
    /// half the delay in force from `now` (at once without a clock or with a delay of 0; the
    /// delay is the heap's pace, see [`purge_pace`](crate::purge_pace)). Its dirty
    /// slots age from now: that check purges them if they are still free, and slots freed
    /// later wait for the check after it. A free slot stays resident for half the delay to
    /// the whole delay.
    ///
    /// # Safety
    ///
    /// `seg` is ours and not in the purge list.
    unsafe fn purge_schedule<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        seg: *mut Segment,
        now: u64,
    ) {
        let delay = self
            .pace
            .delay_at(now, alloc.purge_config(), alloc.memory.over_peak(0));
        // SAFETY: forwarded contract.
        unsafe {
            (*seg).aged_slots = (*seg).dirty_slots;
            (*seg).aged_since = now;
            (*seg).purge_deadline = if now == 0 { 0 } else { now + delay.div_ceil(2) };
            self.purge_list_push(seg);
        }
    }

    unsafe fn purge_list_push(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is ours and not in the purge list.
        unsafe {
            (*seg).purge_next = ptr::null_mut();
            if self.purge_tail.is_null() {
                self.purge_head = seg;
            } else {
                (*self.purge_tail).purge_next = seg;
            }
            self.purge_tail = seg;
            (*seg).in_purge_list = true;
            self.next_purge = self.next_purge.min((*seg).purge_deadline);
        }
    }

    unsafe fn purge_list_remove(&mut self, seg: *mut Segment) {
        // The purge list is short (segments with freshly freed pages) and removal is rare
        // (a segment going empty), so a walk is fine here.
        let mut prev: *mut Segment = ptr::null_mut();
        let mut cur = self.purge_head;
        // SAFETY: the purge list links live segments we own.
        unsafe {
            while !cur.is_null() && cur != seg {
                prev = cur;
                cur = (*cur).purge_next;
            }
            if cur.is_null() {
                return;
            }
            let next = (*seg).purge_next;
            if prev.is_null() {
                self.purge_head = next;
            } else {
                (*prev).purge_next = next;
            }
            if self.purge_tail == seg {
                self.purge_tail = prev;
            }
            (*seg).purge_next = ptr::null_mut();
            (*seg).in_purge_list = false;
        }
    }

    /// Purge the free pages of segments whose delay ran out (all of them if `force`), and let
    /// the allocator maintain its span cache.
    ///
    /// # Safety
    ///
    /// `self` is a live heap of `alloc` owned by the caller.
    pub(crate) unsafe fn maybe_purge<S: PageSource>(&mut self, alloc: &Allocator<S>, force: bool) {
        let due_cache = alloc.cache_due();
        if !force && self.purge_head.is_null() && !due_cache {
            return;
        }
        let now = alloc.source().now_ms();
        if !force && now < self.next_purge && !(due_cache && alloc.cache_deadline() <= now) {
            return;
        }
        // A due segment is checked, not emptied: only its aged slots (dirty at its previous
        // check or when it was scheduled, and free since) are purged; the rest age until the
        // next check, half a delay later. Before, every free slot went at the segment's
        // deadline, set by its first free page: a page freed just before it was purged at
        // once and faulted back in by the heap's next page (page faults, medians of 5 runs:
        // cpp 5352 then, 3980 now; larson 6013 then, 5604 now).
        let cfg = alloc.purge_config();
        let base = cfg.base;
        let all = force || base == 0;
        self.pace.calm_check(now, cfg);
        self.last_purge_pass = now;
        // While keeping free memory would raise the peak, slots age at the configured delay
        // whatever the pace says.
        let over = alloc.memory.over_peak(0);
        let half_base = base.div_ceil(2);
        let mut pending = self.purge_head;
        self.purge_head = ptr::null_mut();
        self.purge_tail = ptr::null_mut();
        self.next_purge = u64::MAX;
        let mut requeue: *mut Segment = ptr::null_mut();
        // SAFETY: the purge list links live segments we own.
        unsafe {
            // The whole list is walked: deadlines set at different paces are not in order
            // (the list holds the segments with free resident slots: a few dozen at most).
            while !pending.is_null() {
                let seg = pending;
                pending = (*seg).purge_next;
                (*seg).purge_next = ptr::null_mut();
                (*seg).in_purge_list = false;
                let due = force
                    || (*seg).purge_deadline <= now
                    || (over && (*seg).aged_since + half_base <= now);
                if !due {
                    self.purge_list_push(seg);
                    continue;
                }
                let which = if all { u64::MAX } else { (*seg).aged_slots };
                alloc.purge_segment_slots(seg, which, now);
                if (*seg).dirty_slots != 0 {
                    (*seg).purge_next = requeue;
                    requeue = seg;
                }
            }
            // Back in the list only now: without a clock a requeued segment would be due again
            // in this pass, and its fresh slots would not wait for a check of their own.
            while !requeue.is_null() {
                let seg = requeue;
                requeue = (*seg).purge_next;
                self.purge_schedule(alloc, seg, now);
            }
            if !self.purge_head.is_null() && alloc.memory.over_peak(0) {
                self.next_purge = self.next_purge.min(now + half_base);
            }
        }
        alloc.maintain_cache(now, force);
    }

    // ---------------------------------------------------------------- trim

    /// Adopt one abandoned segment (for `trim`, which cleans them all).
    pub(crate) unsafe fn adopt_for_trim<S: PageSource>(&mut self, alloc: &Allocator<S>) -> bool {
        if self.arena {
            return false;
        }
        // SAFETY: forwarded contract: we own the heap.
        unsafe { self.adopt_one(alloc) }
    }

    /// Take every pending free and give back every page with no live block.
    pub(crate) unsafe fn collect_all<S: PageSource>(&mut self, alloc: &Allocator<S>) {
        // SAFETY: we own the heap, its queues and pages.
        unsafe {
            self.process_delayed(alloc);
            for class in 1..NUM_CLASSES {
                let mut page = self.queues[class].first;
                while !page.is_null() {
                    let next = (*page).next;
                    self.collect_page(alloc, page);
                    self.publish(page);
                    if (*page).used == 0 {
                        self.queues[class].remove(page);
                        self.page_free(alloc, page);
                    }
                    page = next;
                }
                self.update_direct(class);
            }
            let mut page = self.full.first;
            while !page.is_null() {
                let next = (*page).next;
                if (*page).has_thread_free() {
                    self.page_unfull(alloc, page);
                }
                page = next;
            }
        }
    }

    /// Drop every page of every segment, live blocks included (arena destruction).
    pub(crate) unsafe fn discard_all<S: PageSource>(&mut self, alloc: &Allocator<S>) {
        // SAFETY: the caller guarantees no block of this heap is used any more.
        unsafe {
            self.delayed_free.store(0, Ordering::Relaxed);
            let mut seg = self.segs_all;
            while !seg.is_null() {
                let next = (*seg).all_next;
                for slot in 1..(*seg).page_count as usize {
                    let page = addr_of_mut!((*seg).pages[slot]);
                    if (*page).in_use {
                        ownership::stop_notifications(&(*page).thread_free, waiter(alloc.source()));
                        alloc
                            .memory
                            .page_discarded((*page).slots as usize * (*seg).page_bytes());
                        Page::reset(page);
                    }
                }
                self.seg_unlink(seg);
                alloc.free_segment(seg);
                seg = next;
            }
            for counter in &self.counters.class_live {
                counter.store(0, Ordering::Relaxed);
            }
            self.queues = [PageQueue::EMPTY; NUM_CLASSES];
            self.full = PageQueue::EMPTY;
            self.direct = [empty_page(); DIRECT_SLOTS];
            self.purge_head = ptr::null_mut();
            self.purge_tail = ptr::null_mut();
            self.next_purge = u64::MAX;
        }
    }

    /// Publish every page's live count (statistics exact for this heap right now).
    pub(crate) unsafe fn publish_all(&mut self) {
        // SAFETY: we own the heap, its queues and pages.
        unsafe {
            for class in 1..NUM_CLASSES {
                let mut page = self.queues[class].first;
                while !page.is_null() {
                    self.publish(page);
                    page = (*page).next;
                }
            }
            let mut page = self.full.first;
            while !page.is_null() {
                self.publish(page);
                page = (*page).next;
            }
        }
    }

    // ---------------------------------------------------------------- thread exit

    /// Give up every segment: empty pages go back, the rest is abandoned for other heaps to
    /// adopt. Leaves the heap empty and reusable.
    ///
    /// # Safety
    ///
    /// `self` is a live heap of `alloc` owned by the caller, who will not use its blocks'
    /// ownership any more (other threads may still free them).
    pub(crate) unsafe fn abandon<S: PageSource>(&mut self, alloc: &Allocator<S>) {
        // SAFETY: we own the heap and all its segments.
        unsafe {
            // 1. No remote free may notify us any more.
            let mut seg = self.segs_all;
            while !seg.is_null() {
                for slot in 1..(*seg).page_count as usize {
                    let page = addr_of_mut!((*seg).pages[slot]);
                    if (*page).in_use {
                        ownership::stop_notifications(&(*page).thread_free, waiter(alloc.source()));
                    }
                }
                seg = (*seg).all_next;
            }
            // 2. Take what was already sent.
            self.process_delayed(alloc);
            // 3. Free empty pages; hand over the rest.
            let mut seg = self.segs_all;
            while !seg.is_null() {
                let next = (*seg).all_next;
                self.abandon_segment(alloc, seg);
                seg = next;
            }
            self.queues = [PageQueue::EMPTY; NUM_CLASSES];
            self.full = PageQueue::EMPTY;
            self.direct = [empty_page(); DIRECT_SLOTS];
            self.purge_head = ptr::null_mut();
            self.purge_tail = ptr::null_mut();
            self.next_purge = u64::MAX;
        }
    }

    unsafe fn abandon_segment<S: PageSource>(&mut self, alloc: &Allocator<S>, seg: *mut Segment) {
        // SAFETY: `seg` is ours; its pages' queue links are dropped (queues reset by caller).
        unsafe {
            for slot in 1..(*seg).page_count as usize {
                let page = addr_of_mut!((*seg).pages[slot]);
                if !(*page).in_use {
                    continue;
                }
                if Page::collect(page).is_err() {
                    alloc.report(
                        Call::Free,
                        MisuseKind::CorruptFreeList,
                        (*page).start as usize,
                    );
                }
                (*page).next = ptr::null_mut();
                (*page).prev = ptr::null_mut();
                (*page).in_full = false;
                if (*page).used == 0 {
                    // page_free may free the whole segment; then we are done with it.
                    let last = (*seg).used_pages == 1;
                    self.page_free(alloc, page);
                    if last {
                        return;
                    }
                    continue;
                }
                // Move its statistics to the allocator's orphan counters.
                self.publish(page);
                bump(
                    &self.counters.class_live[(*page).class as usize],
                    -((*page).published as isize),
                );
                alloc.orphan_live((*page).class as usize, (*page).published as isize);
                ownership::release(&(*page).heap);
            }
            // Free slots stay resident: the thread that adopts the segment will likely reuse
            // them at once (purging here made thread churn fault the same pages in again);
            // the adopter schedules their purge, and `trim` purges them meanwhile.
            self.seg_unlink(seg);
            alloc.push_abandoned(seg);
        }
    }

    /// Take one abandoned segment and make its pages ours. Returns whether one was adopted.
    pub(crate) unsafe fn adopt_one<S: PageSource>(&mut self, alloc: &Allocator<S>) -> bool {
        let seg = alloc.pop_abandoned();
        if seg.is_null() {
            return false;
        }
        // SAFETY: popped from the abandoned list, the segment is now ours alone.
        unsafe {
            self.seg_link(seg);
            if (*seg).dirty_slots != 0 && !(*seg).in_purge_list {
                self.purge_schedule(alloc, seg, alloc.source().now_ms());
            }
            for slot in 1..(*seg).page_count as usize {
                let page = addr_of_mut!((*seg).pages[slot]);
                if !(*page).in_use {
                    continue;
                }
                let class = (*page).class as usize;
                alloc.orphan_live(class, -((*page).published as isize));
                bump(&self.counters.class_live[class], (*page).published as isize);
                ownership::adopt(
                    &(*page).heap,
                    &(*page).thread_free,
                    self as *mut Heap as usize,
                    waiter(alloc.source()),
                );
                self.collect_page(alloc, page);
                if (*page).used == 0 {
                    let last = (*seg).used_pages == 1;
                    self.page_free(alloc, page);
                    if last {
                        return true;
                    }
                } else {
                    self.queues[class].push_back(page);
                    self.update_direct(class);
                }
            }
        }
        true
    }
}
