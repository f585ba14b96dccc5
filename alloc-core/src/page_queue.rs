//! A heap's page queues and how pages move between them: per size class a queue of pages
//! with free blocks (the first one is what the direct table and the malloc fast path see),
//! one full queue of used-up pages, the slow path's search, and the heap's delayed list
//! (blocks other threads freed into its full pages).
//!
//! A page leaves its class queue when the slow path finds it used up, and comes back once it
//! has `FULL_PAGE_ROOM` free blocks (a local free, a remote
//! free's notification, or the trim pass); an out-of-memory malloc takes it back sooner.

use core::ptr;

use crate::allocator::Allocator;
use crate::checks::{Call, MisuseKind};
use crate::heap::{empty_page, Heap};
use crate::page::{Block, Page};
use crate::protocol::{delayed, thread_free};
use crate::size_class::{class_size, DIRECT_MAX, DIRECT_SLOTS, NUM_CLASSES};
use crate::source::PageSource;
use crate::wait::waiter;

/// The direct-table slots of each class, `lo..hi` (empty past `DIRECT_MAX`): computed once,
/// so that moving a page to the front of its queue rewrites them without a size computation
/// (that was a third of a churn loop's slow path).
const DIRECT_RANGE: [(u8, u8); NUM_CLASSES] = {
    let mut table = [(0u8, 0u8); NUM_CLASSES];
    let mut class = 1;
    while class < NUM_CLASSES {
        let size = class_size(class);
        if size <= DIRECT_MAX {
            let lo = if class == 1 {
                0
            } else {
                class_size(class - 1) / 16 + 1
            };
            table[class] = (lo as u8, (size / 16 + 1) as u8);
        }
        class += 1;
    }
    table
};
const _: () = assert!(DIRECT_SLOTS <= u8::MAX as usize);
#[derive(Clone, Copy)]
pub(crate) struct PageQueue {
    pub(crate) first: *mut Page,
    pub(crate) last: *mut Page,
}

impl PageQueue {
    pub(crate) const EMPTY: PageQueue = PageQueue {
        first: ptr::null_mut(),
        last: ptr::null_mut(),
    };

    /// # Safety
    /// `page` is a live page not in any queue.
    pub(crate) unsafe fn push_front(&mut self, page: *mut Page) {
        // SAFETY: per the contract, `page` and the queue's pages are live metadata we own.
        unsafe {
            (*page).prev = ptr::null_mut();
            (*page).next = self.first;
            if self.first.is_null() {
                self.last = page;
            } else {
                (*self.first).prev = page;
            }
        }
        self.first = page;
    }

    /// # Safety
    /// `page` is a live page not in any queue.
    pub(crate) unsafe fn push_back(&mut self, page: *mut Page) {
        // SAFETY: as in push_front.
        unsafe {
            (*page).next = ptr::null_mut();
            (*page).prev = self.last;
            if self.last.is_null() {
                self.first = page;
            } else {
                (*self.last).next = page;
            }
        }
        self.last = page;
    }

    /// # Safety
    /// `page` is in this queue.
    pub(crate) unsafe fn remove(&mut self, page: *mut Page) {
        // SAFETY: as in push_front.
        unsafe {
            let (prev, next) = ((*page).prev, (*page).next);
            if prev.is_null() {
                self.first = next;
            } else {
                (*prev).next = next;
            }
            if next.is_null() {
                self.last = prev;
            } else {
                (*next).prev = prev;
            }
            (*page).next = ptr::null_mut();
            (*page).prev = ptr::null_mut();
        }
    }
}
impl Heap {
    /// Point the direct-table slots of `class` at its first page.
    pub(crate) fn update_direct(&mut self, class: usize) {
        let (lo, hi) = DIRECT_RANGE[class];
        let first = self.queues[class].first;
        let page = if first.is_null() { empty_page() } else { first };
        for slot in &mut self.direct[lo as usize..hi as usize] {
            *slot = page;
        }
    }
    /// A page of `class` with a free block, or null when out of memory.
    ///
    /// # Safety
    ///
    /// As for `malloc_generic`.
    pub(crate) unsafe fn find_page<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        class: usize,
    ) -> *mut Page {
        let mut adopted = 0;
        loop {
            let mut page = self.queues[class].first;
            // Each page is visited once: it either serves, or moves to the full queue.
            while !page.is_null() {
                // SAFETY: pages in our queues are live metadata we own.
                unsafe {
                    let next = (*page).next;
                    self.collect_page(alloc, page);
                    if (*page).free.is_null()
                        && (*page).held.is_null()
                        && (*page).capacity < (*page).reserved
                    {
                        let fresh = Page::extend(page);
                        self.sample_refill(page, fresh);
                    }
                    // Held blocks: the page serves the sampled allocation next. A used-up
                    // page with only a few blocks free waits in the full queue until it has
                    // more (see Page::may_leave_full), or until the source has no fresh page.
                    let has_room = !(*page).free.is_null()
                        && ((*page).capacity < (*page).reserved || Page::may_leave_full(page));
                    if has_room || !(*page).held.is_null() {
                        return self.serve(class, page);
                    }
                    self.page_to_full(alloc, page);
                    page = next;
                }
            }
            // Adopt a segment abandoned by an exited thread before mapping a new one: it may
            // hold pages of this class, and adopting keeps memory bounded under thread churn.
            // Never into an arena: destroying it would free the adopted blocks' memory under
            // their users.
            if !self.arena && adopted < 2 && alloc.has_abandoned() {
                adopted += 1;
                // SAFETY: we own the heap.
                if unsafe { self.adopt_one(alloc) } {
                    continue;
                }
            }
            break;
        }
        // SAFETY: we own the heap.
        unsafe {
            let page = self.new_page(alloc, class);
            if page.is_null() {
                return self.page_from_full(alloc, class);
            }
            self.queues[class].push_front(page);
            self.update_direct(class);
            let fresh = Page::extend(page);
            self.sample_refill(page, fresh);
            page
        }
    }

    /// `page`, of `class` and in its class queue, serves the next mallocs: it goes to the
    /// front of the queue, where the direct table points. Only a page moved there needs the
    /// table rewritten (rewriting it every time was most of the slow path's cost on a churn
    /// loop). Returns `page`.
    ///
    /// # Safety
    ///
    /// `page` is ours and in `self.queues[class]`.
    unsafe fn serve(&mut self, class: usize, page: *mut Page) -> *mut Page {
        // SAFETY: per the contract.
        unsafe {
            self.publish(page);
            if page != self.queues[class].first {
                self.queues[class].remove(page);
                self.queues[class].push_front(page);
                self.update_direct(class);
            }
        }
        page
    }

    /// Move what was freed into `page` (by other threads, then by this one) onto its free
    /// list, telling the sampler how many blocks that batch holds; a damaged list is reported.
    ///
    /// # Safety
    ///
    /// `page` is ours and in use.
    pub(crate) unsafe fn collect_page<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
    ) {
        // SAFETY: per the contract.
        unsafe {
            match Page::collect(page) {
                Ok(batch) => self.sample_refill_behind(page, batch.behind, batch.len),
                Err(_) => alloc.report(
                    Call::Malloc,
                    MisuseKind::CorruptFreeList,
                    (*page).start as usize,
                ),
            }
        }
    }

    /// Out of memory: serve from a page of `class` waiting in the full queue with a few
    /// blocks free (fewer than Page::may_leave_full asks for) rather than fail. A walk of the
    /// full queue, but only once the page source has refused a fresh page.
    ///
    /// # Safety
    ///
    /// As for `malloc_generic`.
    #[cold]
    unsafe fn page_from_full<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        class: usize,
    ) -> *mut Page {
        let mut page = self.full.first;
        // SAFETY: pages in our full queue are live metadata we own.
        unsafe {
            while !page.is_null() {
                let next = (*page).next;
                if (*page).class as usize == class {
                    self.collect_page(alloc, page);
                    if (*page).used < (*page).capacity {
                        self.page_unfull(alloc, page);
                        return self.serve(class, page);
                    }
                }
                page = next;
            }
        }
        ptr::null_mut()
    }

    /// Move a used-up page (nothing or only a few blocks free) to the full queue, where the
    /// fast path and the slow path's search no longer see it; local frees bring it back once
    /// it has room (see Page::may_leave_full), a remote free through `delayed_free`.
    unsafe fn page_to_full<S: PageSource>(&mut self, alloc: &Allocator<S>, page: *mut Page) {
        // SAFETY: `page` is ours and in its class queue.
        unsafe {
            let class = (*page).class as usize;
            let was_first = self.queues[class].first == page;
            self.queues[class].remove(page);
            if was_first {
                self.update_direct(class);
            }
            self.publish(page);
            (*page).in_full = true;
            self.full.push_back(page);
            // A remote free that landed before DELAY_USE was set sent no notification.
            if thread_free::enter_full(&(*page).thread_free, waiter(alloc.source())) {
                self.page_unfull(alloc, page);
            }
        }
    }

    /// Bring a page back from the full queue (to the back of its class queue).
    pub(crate) unsafe fn page_unfull<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
    ) {
        // SAFETY: `page` is ours and in the full queue.
        unsafe {
            thread_free::set_delay(
                &(*page).thread_free,
                thread_free::DELAY_NO,
                waiter(alloc.source()),
            );
            self.full.remove(page);
            (*page).in_full = false;
            let class = (*page).class as usize;
            self.queues[class].push_back(page);
            if self.queues[class].first == page {
                self.update_direct(class);
            }
        }
    }
    /// A page with no live blocks: keep it if it is the only page of its class (so a
    /// malloc/free loop does not map and unmap a page each time), else give the slot back.
    pub(crate) unsafe fn page_retire<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
    ) {
        // SAFETY: `page` is ours, in its class queue, with no live blocks.
        unsafe {
            let class = (*page).class as usize;
            let queue = self.queues[class];
            if queue.first == page && queue.last == page {
                return;
            }
            self.queues[class].remove(page);
            if queue.first == page {
                self.update_direct(class);
            }
            self.page_free(alloc, page);
        }
    }
    /// Free the blocks other threads pushed onto `delayed_free`.
    pub(crate) unsafe fn process_delayed<S: PageSource>(&mut self, alloc: &Allocator<S>) {
        let mut link = delayed::take(&self.delayed_free);
        while link != 0 {
            let addr = self.decode_delayed(link);
            let block: *mut Block = ptr::with_exposed_provenance_mut(addr);
            // SAFETY: the block was pushed by a remote free that validated it against its page;
            // the page is in our full queue (or was), so we own it.
            unsafe {
                link = (*block).next;
                let page = Allocator::<S>::page_of(block.cast());
                (*block).next = (*page).encode((*page).local_free as usize);
                (*page).local_free = block;
                (*page).used -= 1;
                // The notification is spent: the page must leave the full queue (it may go
                // back from the slow path's search while it has only a few blocks free).
                if (*page).in_full {
                    self.page_unfull(alloc, page);
                }
                self.free_local_cold(alloc, page);
            }
        }
    }

    /// Encode a delayed-list link of the heap at `heap`; other threads call this while the
    /// owner works on the heap, so it reads the key without a reference to the heap.
    ///
    /// # Safety
    ///
    /// `heap` points to a live heap.
    #[inline]
    pub(crate) unsafe fn raw_encode_delayed(heap: *const Heap, addr: usize) -> usize {
        // SAFETY: per the contract; a plain field read.
        (addr ^ unsafe { (*heap).key }).rotate_left(29)
    }

    #[inline]
    fn decode_delayed(&self, link: usize) -> usize {
        link.rotate_right(29) ^ self.key
    }
}
