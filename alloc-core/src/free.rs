//! The way of a pointer through `free`, in one place:
//!
//! 1. **Validate** before reading anything at the pointer: its 4 MiB chunk's entry in the
//!    [segment map](crate::segment_map) (one load with the flat map) names a page segment and
//!    its slot size, hence the page; the pointer must be exactly a block start of that page
//!    (one multiply, one compare: [`Page::raw_is_block_start`]); the block must not carry its
//!    free canary (double free).
//! 2. **Own thread** (the page's heap is the caller's): push onto the page's `local_free`;
//!    the cold part handles a page leaving the full queue or going empty.
//! 3. **Other thread** (or an abandoned page): one CAS onto the page's `thread_free`, or onto
//!    the owning heap's delayed list when the page sits in its full queue.
//! 4. **Special** (any other map entry: huge blocks, blocks aligned to 4 MiB or more, new
//!    kinds, or not ours at all): [`free_special`](Allocator::free_special), cold.
//!
//! `malloc_usable_size` and `realloc` validate with the same checks ([`checked_size`]).
//!
//! [`checked_size`]: Allocator::checked_size

use core::ptr::{self, addr_of_mut};
use core::sync::atomic::Ordering;

use crate::allocator::{large_usable, Allocator};
use crate::checks::{Call, MisuseKind};
use crate::heap::{bump, Heap, PURGE_CHECK_EVERY};
use crate::page::{Block, Page};
use crate::protocol::{delayed, ownership, thread_free};
use crate::segment::{Segment, SegmentHeader, HUGE_FREE, HUGE_LIVE, KIND_FREE, KIND_HUGE};
use crate::segment_map::{is_pages, slot_shift, SegmentMap, GUARDED, SAMPLED};
use crate::source::PageSource;
use crate::SEGMENT_SIZE;

impl<S: PageSource> Allocator<S> {
    /// The page slot holding `p`, from its map entry (no header read).
    ///
    /// # Safety
    ///
    /// `entry` is the map entry of `p`'s chunk and says it is a page segment.
    #[inline(always)]
    pub(crate) unsafe fn page_in(p: *mut u8, entry: u8) -> *mut Page {
        let seg = Segment::of(p);
        let slot = (p as usize & crate::SEGMENT_MASK) >> slot_shift(entry);
        // SAFETY: slot < 64 (a 22-bit offset shifted by at least 16), so the pointer stays in
        // the header's page array.
        unsafe { addr_of_mut!((*seg).pages).cast::<Page>().add(slot) }
    }

    /// The page holding `p`, which must be a block of a page segment.
    ///
    /// # Safety
    ///
    /// `p` lies in a live page segment.
    #[inline(always)]
    pub(crate) unsafe fn page_of(p: *mut u8) -> *mut Page {
        let seg = Segment::of(p);
        // SAFETY: per the contract the header is live; the slot index is < MAX_SLOTS because
        // p is inside the segment and the shift is at least the small page shift.
        unsafe {
            let slot = (p as usize - seg as usize) >> (*seg).header.page_shift;
            addr_of_mut!((*seg).pages[slot])
        }
    }

    /// Free `p` (null is ignored). Reports and does not return on a double free or a pointer
    /// this allocator did not hand out.
    ///
    /// # Safety
    ///
    /// `heap` is the calling thread's heap of this allocator (an empty heap is fine). `p` is
    /// null or was returned by this allocator; misuse of a pointer that was is detected.
    #[inline(always)]
    pub unsafe fn free(&self, heap: *mut Heap, p: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { self.free_as(heap, p, Call::Free) }
    }

    /// [`free`](Self::free), naming `call` in a misuse report.
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free).
    #[inline(always)]
    pub unsafe fn free_as(&self, heap: *mut Heap, p: *mut u8, call: Call) {
        match self.map.get_flat(p as usize) {
            // SAFETY: forwarded contract.
            Some(entry) => unsafe { self.free_entry(heap, p, entry, call) },
            // SAFETY: forwarded contract.
            None => unsafe { self.free_two_level(heap, p, call) },
        }
    }

    /// [`free_as`](Self::free_as) when the flat map has no answer (a two-level map, or an
    /// address past the 47-bit space): one more load, out of line.
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free).
    #[inline(never)]
    unsafe fn free_two_level(&self, heap: *mut Heap, p: *mut u8, call: Call) {
        let entry = self.map.get_slow(p as usize);
        // SAFETY: forwarded contract.
        unsafe { self.free_entry(heap, p, entry, call) }
    }

    /// Free `p`, whose chunk's map entry is `entry`.
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free); `entry` is the map's entry for `p`.
    #[inline(always)]
    unsafe fn free_entry(&self, heap: *mut Heap, p: *mut u8, entry: u8, call: Call) {
        // Null needs no test here: chunk 0 is never ours, so it takes the cold path below.
        if !is_pages(entry) {
            // SAFETY: forwarded contract.
            return unsafe { self.free_special(heap, p, entry, call) };
        }
        // SAFETY: the map says a page segment with this slot size holds `p`. Every exit to a
        // report is a tail call returning `()`, so the fast path needs no stack frame.
        unsafe {
            let page = Self::page_in(p, entry);
            if !Page::raw_is_block_start(page, p as usize) {
                return self.free_not_a_block(call, page, p);
            }
            let block = p.cast::<Block>();
            let canary = Page::raw_canary(page, p as usize);
            if (*block).canary == canary {
                return self.free_twice(call, p);
            }
            if ownership::is_owner(&(*page).heap, heap as usize) {
                (*heap).free_local(self, page, block, canary);
            } else {
                self.free_remote(heap, page, block);
            }
        }
    }

    /// Report a double free. It returns `()` as far as the compiler can tell (the report never
    /// returns, but `black_box` hides that), so the fast path reaches it with a jump and needs
    /// no stack frame of its own (2 instructions of 50).
    #[cold]
    #[inline(never)]
    fn free_twice(&self, call: Call, p: *mut u8) {
        if core::hint::black_box(true) {
            self.report(call, MisuseKind::DoubleFree, p as usize)
        }
    }

    /// [`report_not_a_block`](Self::report_not_a_block) as a tail call (see `free_twice`).
    ///
    /// # Safety
    ///
    /// As for `report_not_a_block`.
    #[cold]
    #[inline(never)]
    unsafe fn free_not_a_block(&self, call: Call, page: *mut Page, p: *mut u8) {
        if core::hint::black_box(true) {
            // SAFETY: forwarded contract.
            unsafe { self.report_not_a_block(call, page, p) }
        }
    }

    /// `p` lies in one of our page segments but is no block of a page in use. If its page
    /// slot is free, the likeliest story is a block freed twice, its page since given back
    /// (a pointer into our own free memory is not something a program makes up).
    ///
    /// # Safety
    ///
    /// `page` is the page slot the map entry of `p` names.
    #[cold]
    #[inline(never)]
    unsafe fn report_not_a_block(&self, call: Call, page: *mut Page, p: *mut u8) -> ! {
        // SAFETY: `page` is a slot of a live (or cached) page segment header; the error path
        // reads the owner's slot bitmap without synchronisation, which can only mislabel the
        // report, never change what happens next (an abort).
        let slot_free = unsafe {
            let seg = Segment::of(page);
            let slot = Segment::slot_of(seg, page);
            (*seg).header.kind == KIND_FREE || (*seg).free_slots & (1u64 << slot) != 0
        };
        let kind = if slot_free {
            MisuseKind::DoubleFree
        } else {
            MisuseKind::InvalidPointer
        };
        self.report(call, kind, p as usize)
    }

    /// Free a block of a page another heap owns (or that is abandoned): one CAS onto its
    /// `thread_free`, or onto the owner's delayed list if the page is in its full queue.
    #[inline(never)]
    unsafe fn free_remote(&self, heap: *mut Heap, page: *mut Page, block: *mut Block) {
        // SAFETY: `block` is a live block of `page` (checked by the caller); page metadata is
        // live while any block of it is.
        unsafe {
            (*block).canary = Page::raw_canary(page, block as usize);
            let thread_free = &(*page).thread_free;
            let notify = thread_free::push(thread_free, block as usize, |head| {
                (*block).next = Page::raw_encode(page, head);
            });
            if notify {
                // The owner waits for DELAY_FREEING to clear before it abandons the heap, so
                // the heap is live here.
                let owner = ownership::owner(&(*page).heap) as *mut Heap;
                let entry = Heap::raw_encode_delayed(owner, block.expose_provenance());
                delayed::push(&(*owner).delayed_free, entry, |head| (*block).next = head);
                thread_free::end_notify(thread_free, thread_free::DELAY_NO);
            }
            if (*heap).is_live() {
                bump(&(*heap).counters.remote_frees, 1);
            }
        }
    }

    /// Free a pointer whose chunk is not a plain segment start: a large block, a block
    /// aligned to 4 MiB or more, or a pointer that is not ours.
    #[cold]
    #[inline(never)]
    unsafe fn free_special(&self, heap: *mut Heap, p: *mut u8, entry: u8, call: Call) {
        if p.is_null() {
            return;
        }
        if entry == SAMPLED {
            return self.home_free(p, call);
        }
        if entry == GUARDED {
            // SAFETY: the map says the guarded pool holds `p`; it validates `p` itself.
            return unsafe { self.guarded.free(self.source(), p, call) };
        }
        // SAFETY: `large_header` validates before anything is written.
        unsafe {
            let hdr = self.large_header(p, entry, call);
            if (*hdr).huge_state.swap(HUGE_FREE, Ordering::AcqRel) != HUGE_LIVE {
                self.report(call, MisuseKind::DoubleFree, p as usize);
            }
            let offset = (*hdr).block_offset;
            if offset >= SEGMENT_SIZE {
                self.map.clear(p as usize);
            }
            let owner = (*hdr).owner as *mut Heap;
            if !owner.is_null() {
                (*owner).huge_unlink(self.source(), hdr);
            }
            let _ = heap;
            self.release_huge(hdr);
        }
    }

    /// Give a freed huge block's span to the cache.
    ///
    /// # Safety
    ///
    /// `hdr` is the header of a huge block no one uses any more, unlinked from its owner.
    pub(crate) unsafe fn release_huge(&self, hdr: *mut SegmentHeader) {
        // SAFETY: per the contract the span is ours to recycle.
        unsafe {
            (*hdr).kind = KIND_FREE;
            (*hdr).owner = 0;
            if (*hdr).sample != 0 {
                self.forget_sample((*hdr).sample);
                (*hdr).sample = 0;
            }
            self.counters
                .huge_live_bytes
                .fetch_sub((*hdr).requested, Ordering::Relaxed);
            self.memory.huge_changed(-((*hdr).requested as isize));
            self.counters
                .huge_live_count
                .fetch_sub(1, Ordering::Relaxed);
            self.cache_put(hdr.cast(), (*hdr).span_size);
        }
    }

    /// The header of the large block `p` (validated: ours, live or freed-and-cached, and
    /// exactly the block start); reports otherwise.
    pub(crate) unsafe fn large_header(
        &self,
        p: *mut u8,
        entry: u8,
        call: Call,
    ) -> *mut SegmentHeader {
        if entry == 0 {
            self.report(call, MisuseKind::InvalidPointer, p as usize);
        }
        let hdr_addr = SegmentMap::header_addr(p as usize, entry);
        // Not `p.with_addr`: a huge span need not fill its last 4 MiB chunk, so `p` may be
        // foreign memory sharing the chunk; the header's provenance was exposed when the huge
        // block was made.
        let hdr: *mut SegmentHeader = ptr::with_exposed_provenance_mut(hdr_addr);
        // SAFETY: the map says a segment header lives at `hdr_addr` (in our span).
        unsafe {
            let kind = (*hdr).kind;
            let exact = (*hdr).block_offset != 0 && hdr_addr + (*hdr).block_offset == p as usize;
            if kind == KIND_HUGE && exact {
                return hdr;
            }
            if kind == KIND_FREE && exact {
                self.report(call, MisuseKind::DoubleFree, p as usize);
            }
            self.report(call, MisuseKind::InvalidPointer, p as usize)
        }
    }

    // ---------------------------------------------------------------- realloc, sizes

    // ---------------------------------------------------------------- validation

    /// Bytes usable at `p` (0 for null). Reports a pointer that is not a live block.
    ///
    /// # Safety
    ///
    /// `p` is null or was returned by this allocator.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { self.checked_size(p, Call::UsableSize) }
    }

    /// Bytes usable at `p`, after the checks `free` makes (reported as from `call`).
    ///
    /// # Safety
    ///
    /// `p` is null or was returned by this allocator.
    pub(crate) unsafe fn checked_size(&self, p: *mut u8, call: Call) -> usize {
        if p.is_null() {
            return 0;
        }
        let entry = self.map.get(p as usize);
        // SAFETY: the map vouches for the header; checks precede every use.
        unsafe {
            if is_pages(entry) {
                let page = Self::page_in(p, entry);
                if !Page::raw_is_block_start(page, p as usize) {
                    self.report_not_a_block(call, page, p);
                }
                if (*p.cast::<Block>()).canary == Page::raw_canary(page, p as usize) {
                    self.report(call, MisuseKind::DoubleFree, p as usize);
                }
                return (*page).block_size;
            }
            if entry == SAMPLED {
                return self.home_usable(p, call);
            }
            if entry == GUARDED {
                return self.guarded.usable_size(p, call);
            }
            let hdr = self.large_header(p, entry, call);
            large_usable(&*hdr, self.source().page_size())
        }
    }
}

// ---------------------------------------------------------------- own thread

impl Heap {
    /// Free `block` of `page`, which this heap owns; `canary` is the page's canary for it
    /// (the caller computed it for the double-free check).
    ///
    /// # Safety
    ///
    /// `page` is owned by this heap and `block` is a live block of it.
    #[inline(always)]
    pub(crate) unsafe fn free_local<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
        block: *mut Block,
        canary: usize,
    ) {
        // SAFETY: per the contract; the block is ours to overwrite now.
        unsafe {
            (*block).next = (*page).encode((*page).local_free as usize);
            (*block).canary = canary;
            (*page).local_free = block;
            (*page).used -= 1;
            if (*page).used == 0 || (*page).in_full {
                self.free_local_cold(alloc, page);
            }
        }
    }

    /// A local free emptied the page or found it in the full queue (which it leaves once it
    /// has a second free block: see [`Page::may_leave_full`]).
    ///
    /// # Safety
    ///
    /// `page` is owned by this heap.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn free_local_cold<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
    ) {
        // SAFETY: `page` is ours (caller's contract).
        unsafe {
            if (*page).in_full && Page::may_leave_full(page) {
                self.page_unfull(alloc, page);
            }
            if (*page).used == 0 {
                self.page_retire(alloc, page);
                // A program that only frees (or only hits the malloc fast path) must still
                // purge: pages going empty is the other place to look at the clock.
                self.slow_ticks = self.slow_ticks.wrapping_add(1);
                if self.slow_ticks.is_multiple_of(PURGE_CHECK_EVERY) {
                    self.maybe_purge(alloc, false);
                }
            }
        }
    }
}
