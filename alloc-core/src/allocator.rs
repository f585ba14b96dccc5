//! The allocator: the page source, the segment map, and the state heaps share (the heap pool,
//! abandoned segments, the span cache, counters). Entry points take the calling thread's heap
//! explicitly; binding a heap to each thread is the embedder's job (see `alloc-ffi`).

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use crate::checks::{report, Call, Misuse, MisuseKind};
use crate::guarded::GuardedPool;
use crate::heap::Heap;
use crate::page::{Block, Page};
use crate::purge_pace::{MemoryBudget, PurgeDelay, DEFAULT_PURGE_DELAY_MAX_MS};
use crate::segment::{Segment, SegmentHeader, HUGE_FREE, HUGE_LIVE, KIND_FREE, KIND_HUGE};
use crate::segment_map::{
    is_pages, SegmentMap, GUARDED, HUGE_BACK, HUGE_START, PAGES_512K, PAGES_64K, SAMPLED,
};
use crate::size_class::{aligned_class, class_size, PageKind, DIRECT_MAX, LARGE_MAX, NUM_CLASSES};
use crate::source::{PageSource, Span};
use crate::span_cache::{SpanCache, Work};
use crate::stats::{SourceCounters, Stats};
use crate::util::{align_up, prefetch, SpinLock};
use crate::view::SegmentView;
use crate::SEGMENT_SIZE;

/// Bytes before a large block: its segment header. 128 keeps large blocks 128-byte aligned.
pub(crate) const LARGE_HEADER: usize = 128;
/// Default delay before free memory is purged: 25 ms, mimalloc 2.0's decommit delay. Page
/// faults cost about 0.25 us per 4 KiB page on these VMs. Against 100 ms, larson's peak RSS
/// fell from 48.6 to 34.1 MiB (larson-oversub: 92 to 67 MiB) at the same time (0.99x,
/// medians of 9 paired runs); binary-trees, large, realloc and the Rust workload moved by
/// 1-3%, within noise. The price is page faults: larson's rose 1.6x (mimalloc: a third of
/// ours) and realloc's system time by a third.
pub const DEFAULT_PURGE_DELAY_MS: u64 = 25;
/// Largest alignment served (1 GiB); larger requests fail as out of memory.
pub const MAX_ALIGN: usize = 1 << 30;
/// Largest request served; larger ones fail as out of memory (as glibc does past PTRDIFF_MAX).
pub const MAX_ALLOC: usize = isize::MAX as usize - 2 * MAX_ALIGN;

pub(crate) struct HeapPool {
    free: *mut Heap,
    all: *mut Heap,
    /// Heaps of exited threads kept whole for the next new thread (see
    /// [`park_heap`](Allocator::park_heap)), the most recent first.
    pub(crate) parked: *mut Heap,
}
// SAFETY: the pool only holds pointers to heap metadata owned by the allocator, used under lock.
unsafe impl Send for HeapPool {}

struct Abandoned {
    head: *mut Segment,
}
// SAFETY: as for HeapPool.
unsafe impl Send for Abandoned {}

/// Counters shared by all heaps, updated on cold paths.
pub(crate) struct Counters {
    reserved: AtomicUsize,
    peak_reserved: AtomicUsize,
    segments: AtomicUsize,
    pub(crate) huge_live_bytes: AtomicUsize,
    pub(crate) huge_live_count: AtomicUsize,
    purges: AtomicUsize,
    purged_bytes: AtomicUsize,
    orphan_class_live: [AtomicUsize; NUM_CLASSES],
    pub(crate) heaps: AtomicUsize,
}

/// A complete allocator over the page source `S`. `const`-constructible, so it can be a
/// `static`; it must not move once heaps exist.
pub struct Allocator<S: PageSource> {
    source: S,
    pub(crate) map: SegmentMap,
    secret: AtomicUsize,
    purge_delay: AtomicU64,
    purge_delay_max: AtomicU64,
    // Each lock on its own cache line (CachePadded: 128 bytes on x86-64, where the adjacent-
    // line prefetcher pairs lines): threads queueing for one do not slow the holder of another.
    pub(crate) pool: CachePadded<SpinLock<HeapPool>>,
    /// How many heaps are parked: changed under the pool lock, read without it by the
    /// purge check.
    pub(crate) parked_count: AtomicUsize,
    abandoned: CachePadded<SpinLock<Abandoned>>,
    /// Read on every malloc slow path; written when a thread exits or adopts.
    abandoned_count: CachePadded<AtomicUsize>,
    cache: CachePadded<SpinLock<SpanCache>>,
    /// Page memory in use and kept free, for the purge pace's bound.
    pub(crate) memory: CachePadded<MemoryBudget>,
    cache_deadline: AtomicU64,
    /// Written on every segment and huge-block event, from any thread.
    pub(crate) counters: CachePadded<Counters>,
    pub(crate) sampling: crate::sampling::Sampling,
    /// Sampled blocks on guarded pages (off unless enabled).
    pub(crate) guarded: GuardedPool,
}

impl<S: PageSource> Allocator<S> {
    /// An allocator drawing memory from `source`. Misuse is reported through
    /// [`set_misuse_handler`](crate::checks::set_misuse_handler).
    pub const fn new(source: S) -> Self {
        Allocator {
            source,
            map: SegmentMap::new(),
            secret: AtomicUsize::new(0),
            purge_delay: AtomicU64::new(DEFAULT_PURGE_DELAY_MS),
            purge_delay_max: AtomicU64::new(DEFAULT_PURGE_DELAY_MAX_MS),
            pool: CachePadded::new(SpinLock::new(HeapPool {
                free: ptr::null_mut(),
                all: ptr::null_mut(),
                parked: ptr::null_mut(),
            })),
            parked_count: AtomicUsize::new(0),
            abandoned: CachePadded::new(SpinLock::new(Abandoned {
                head: ptr::null_mut(),
            })),
            abandoned_count: CachePadded::new(AtomicUsize::new(0)),
            cache: CachePadded::new(SpinLock::new(SpanCache::new())),
            memory: CachePadded::new(MemoryBudget::new()),
            cache_deadline: AtomicU64::new(u64::MAX),
            counters: CachePadded::new(Counters {
                reserved: AtomicUsize::new(0),
                peak_reserved: AtomicUsize::new(0),
                segments: AtomicUsize::new(0),
                huge_live_bytes: AtomicUsize::new(0),
                huge_live_count: AtomicUsize::new(0),
                purges: AtomicUsize::new(0),
                purged_bytes: AtomicUsize::new(0),
                orphan_class_live: [const { AtomicUsize::new(0) }; NUM_CLASSES],
                heaps: AtomicUsize::new(0),
            }),
            sampling: crate::sampling::Sampling::new(),
            guarded: GuardedPool::new(),
        }
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Delay before free pages are purged, in milliseconds.
    pub fn purge_delay_ms(&self) -> u64 {
        self.purge_delay.load(Ordering::Relaxed)
    }

    /// Set the purge delay (0: purge as soon as memory is free).
    pub fn set_purge_delay_ms(&self, ms: u64) {
        self.purge_delay.store(ms, Ordering::Relaxed);
    }

    /// The longest the purge delay grows to while the program takes back memory soon after
    /// it was purged (see [`set_purge_delay_max_ms`](Self::set_purge_delay_max_ms)).
    pub fn purge_delay_max_ms(&self) -> u64 {
        self.purge_delay_max.load(Ordering::Relaxed)
    }

    /// Set the longest purge delay, in milliseconds (default
    /// [`DEFAULT_PURGE_DELAY_MAX_MS`]). Each heap doubles its delay, up to this, when it
    /// takes back pages within this long of purging them, and halves it again after a calm
    /// stretch; free memory outlives the configured delay only while in use plus free stays
    /// under the peak in use plus a quarter. A value not above the purge delay gives a fixed
    /// delay.
    pub fn set_purge_delay_max_ms(&self, ms: u64) {
        self.purge_delay_max.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn purge_config(&self) -> PurgeDelay {
        PurgeDelay {
            base: self.purge_delay_ms(),
            max: self.purge_delay_max_ms(),
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn report(&self, call: Call, kind: MisuseKind, ptr: usize) -> ! {
        report(Misuse { call, kind, ptr })
    }

    fn secret(&self) -> usize {
        let s = self.secret.load(Ordering::Relaxed);
        if s != 0 {
            return s;
        }
        let fresh = (self.source.entropy() as usize) | 1;
        match self
            .secret
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(current) => current,
        }
    }

    // ---------------------------------------------------------------- heaps

    /// A heap for one thread, or null when out of memory: the heap of a thread that exited
    /// lately if one is parked (with its pages and their free blocks), else a fresh one.
    /// Heaps are recycled, never returned to the source: a program that creates thousands of
    /// threads reuses a few.
    pub fn new_heap(&self) -> *mut Heap {
        let parked = self.take_parked();
        if !parked.is_null() {
            return parked;
        }
        self.fresh_heap()
    }

    /// A heap that owns nothing yet, or null when out of memory.
    fn fresh_heap(&self) -> *mut Heap {
        let secret = self.secret();
        let mut pool = self.pool.lock(&self.source);
        while pool.free.is_null() {
            // Carve 16 more heaps from a fresh span, asking the source with no lock held.
            drop(pool);
            let page = self.source.page_size();
            let size = align_up(core::mem::size_of::<Heap>() * 16, page).unwrap_or(page);
            // SAFETY: size is a page multiple, the page size a valid alignment.
            let Ok(span) = (unsafe { self.source.alloc(size, page) }) else {
                return ptr::null_mut();
            };
            self.add_reserved(size);
            pool = self.pool.lock(&self.source);
            let count = size / core::mem::size_of::<Heap>();
            for i in 0..count {
                // SAFETY: heap i lies inside the fresh span, properly aligned (Heap's
                // alignment divides the page size and its size).
                unsafe {
                    let heap = span
                        .ptr
                        .add(i * core::mem::size_of::<Heap>())
                        .cast::<Heap>();
                    ptr::write(heap, Heap::blank(false));
                    (*heap).all_next = pool.all;
                    pool.all = heap;
                    (*heap).pool_next = pool.free;
                    pool.free = heap;
                }
            }
        }
        let heap = pool.free;
        // SAFETY: heaps in the pool's free list are initialised and unused.
        unsafe {
            pool.free = (*heap).pool_next;
            drop(pool);
            (*heap).pool_next = ptr::null_mut();
            (*heap).live = true;
            (*heap).secret = secret;
            (*heap).key = secret ^ crate::util::mix64(heap as u64) as usize;
            (*heap).sampler = self
                .sampling
                .sampler(crate::util::mix64((*heap).key as u64));
        }
        self.counters.heaps.fetch_add(1, Ordering::Relaxed);
        heap
    }

    /// A heap whose blocks all go away at once with [`destroy_heap`](Self::destroy_heap): an
    /// arena. Use it from one thread at a time; its blocks may be freed one by one as usual
    /// (from any thread) before that.
    pub fn new_arena_heap(&self) -> *mut Heap {
        let heap = self.fresh_heap();
        if !heap.is_null() {
            // SAFETY: a fresh heap, ours alone. Not sampled: a sampled block lives outside
            // the arena's segments, and destroying the arena would not free it.
            unsafe {
                (*heap).arena = true;
                (*heap).sampler = crate::sampling::Sampler::OFF;
            }
        }
        heap
    }

    /// Free every block of an arena heap at once, give its memory back to the span cache,
    /// and return the heap to the pool.
    ///
    /// # Safety
    ///
    /// `heap` came from [`new_arena_heap`](Self::new_arena_heap), no thread uses it, and no
    /// block it handed out is used (or freed) afterwards.
    pub unsafe fn destroy_heap(&self, heap: *mut Heap) {
        // SAFETY: per the contract all of the heap's memory is dead.
        unsafe {
            let h = &mut *heap;
            loop {
                let hdr = h.huge_pop(&self.source);
                if hdr.is_null() {
                    break;
                }
                (*hdr).huge_state.store(HUGE_FREE, Ordering::Relaxed);
                if (*hdr).block_offset >= SEGMENT_SIZE {
                    self.map.clear(hdr as usize + (*hdr).block_offset);
                }
                self.release_huge(hdr);
            }
            h.discard_all(self);
            h.live = false;
            h.arena = false;
            let mut pool = self.pool.lock(&self.source);
            h.pool_next = pool.free;
            pool.free = heap;
        }
        self.counters.heaps.fetch_sub(1, Ordering::Relaxed);
    }

    /// Retire a heap when its thread exits: its segments are abandoned (other heaps adopt
    /// them), and the heap goes back to the pool. Blocks it handed out stay valid and can be
    /// freed from any thread.
    ///
    /// # Safety
    ///
    /// `heap` came from [`new_heap`](Self::new_heap) of this allocator, is not in use by any
    /// thread, and is not used after this call.
    pub unsafe fn retire_heap(&self, heap: *mut Heap) {
        // SAFETY: per the contract the heap is ours alone.
        unsafe {
            (*heap).abandon(self);
            (*heap).live = false;
            let mut pool = self.pool.lock(&self.source);
            (*heap).pool_next = pool.free;
            pool.free = heap;
        }
        self.counters.heaps.fetch_sub(1, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------- malloc

    /// Pop `block` from `page`'s free list.
    ///
    /// # Safety
    ///
    /// `page` is owned by the caller's heap and `block` is its non-null `free` head.
    #[inline(always)]
    pub(crate) unsafe fn pop(page: *mut Page, block: *mut Block) -> *mut u8 {
        // SAFETY: `block` is a free block of `page` (caller's contract). The link is tested
        // against the page's range first: the end of the list (0) fails that test like damage
        // does and is told apart off the fast path (2 instructions fewer than testing it
        // first).
        unsafe {
            let next = (*page).decode((*block).next);
            (*page).free = if (*page).in_area(next) {
                // The next malloc reads this block's link: start the load now, while the
                // program works with the block it gets (lists collected from other threads
                // are cold: on larson, 81% of malloc's samples waited on that read).
                prefetch(next);
                (*page).block_at(next)
            } else if next == 0 {
                ptr::null_mut()
            } else {
                return corrupt_list(block.cast());
            };
            (*page).used += 1;
            (*block).canary = 0;
        }
        block.cast()
    }

    /// The malloc fast path alone: a block of `size` bytes from the heap's direct table, or
    /// null if the slow path is needed. About a dozen instructions.
    ///
    /// # Safety
    ///
    /// `heap` is the calling thread's heap (possibly an empty heap) of this allocator.
    #[inline(always)]
    pub unsafe fn malloc_fast(heap: *mut Heap, size: usize) -> *mut u8 {
        if size <= DIRECT_MAX {
            // SAFETY: the direct table always points at a page (EMPTY_PAGE at worst).
            unsafe {
                let page = (*heap).direct[(size + 15) >> 4];
                let block = (*page).free;
                if !block.is_null() {
                    return Self::pop(page, block);
                }
            }
        }
        ptr::null_mut()
    }

    /// Allocate `size` bytes (16-byte aligned); null when out of memory.
    ///
    /// # Safety
    ///
    /// `heap` is a live heap of this allocator owned by the calling thread.
    #[inline(always)]
    pub unsafe fn malloc(&self, heap: *mut Heap, size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe {
            let p = Self::malloc_fast(heap, size);
            if !p.is_null() {
                return p;
            }
            self.malloc_slow(heap, size, false)
        }
    }

    /// The slow path of malloc (and of calloc with `zero`).
    ///
    /// # Safety
    ///
    /// As for [`malloc`](Self::malloc).
    #[inline(never)]
    pub unsafe fn malloc_slow(&self, heap: *mut Heap, size: usize, zero: bool) -> *mut u8 {
        if size > MAX_ALLOC {
            return ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { (*heap).malloc_generic(self, size, zero) }
    }

    /// Allocate `size` zeroed bytes; the memset is skipped for memory the source gave zeroed.
    ///
    /// # Safety
    ///
    /// As for [`malloc`](Self::malloc).
    #[inline]
    pub unsafe fn zalloc(&self, heap: *mut Heap, size: usize) -> *mut u8 {
        if size <= DIRECT_MAX {
            // SAFETY: as in malloc_fast.
            unsafe {
                let page = (*heap).direct[(size + 15) >> 4];
                let block = (*page).free;
                if !block.is_null() {
                    let zeroed = (*page).free_is_zero;
                    let p = Self::pop(page, block);
                    if zeroed {
                        p.cast::<usize>().write(0);
                    } else {
                        ptr::write_bytes(p, 0, size);
                    }
                    return p;
                }
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.malloc_slow(heap, size, true) }
    }

    /// Allocate `size` bytes aligned to `align` (a power of two); null when out of memory or
    /// when `align` exceeds [`MAX_ALIGN`].
    ///
    /// Small and medium requests take the smallest size class whose block size is a multiple
    /// of `align` (pages start 64 KiB-aligned, so every block of such a class is aligned):
    /// no padding, and `free` needs no special case.
    ///
    /// # Safety
    ///
    /// As for [`malloc`](Self::malloc).
    pub unsafe fn malloc_aligned(
        &self,
        heap: *mut Heap,
        size: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        debug_assert!(align.is_power_of_two());
        // SAFETY: forwarded contract.
        unsafe {
            if align <= 16 {
                return if zero {
                    self.zalloc(heap, size)
                } else {
                    self.malloc(heap, size)
                };
            }
            if align > MAX_ALIGN || size > MAX_ALLOC {
                return ptr::null_mut();
            }
            if let Some(class) = aligned_class(size, align) {
                let block_size = class_size(class);
                // A sample taken inside records the request, not the class chosen for it.
                let sampling = (*heap).sampler.active;
                if sampling {
                    (*heap).sampler.aligned_request = (size, align);
                }
                let p = if zero {
                    self.zalloc(heap, block_size)
                } else {
                    self.malloc(heap, block_size)
                };
                if sampling {
                    (*heap).sampler.aligned_request = (0, 0);
                }
                debug_assert!((p as usize).is_multiple_of(align));
                return p;
            }
            if !(*heap).is_live() {
                return ptr::null_mut();
            }
            self.alloc_large_sampled(&mut *heap, size, align, zero)
        }
    }

    /// Grow or shrink a huge block by moving its span (no copy where the source can remap).
    ///
    /// # Safety
    ///
    /// `hdr` is the live header of a huge block whose offset is below `SEGMENT_SIZE`.
    unsafe fn remap_huge(&self, hdr: *mut SegmentHeader, size: usize) -> Option<*mut u8> {
        // SAFETY: the block is live and ours; after a successful remap the old range is gone
        // and only the new header is used.
        unsafe {
            let offset = (*hdr).block_offset;
            let old_size = (*hdr).span_size;
            let new_size = align_up(offset.checked_add(size)?, self.source.page_size())?;
            // An arena's list links the header, which is about to move.
            let owner = (*hdr).owner as *mut Heap;
            if !owner.is_null() {
                (*owner).huge_unlink(&self.source, hdr);
            }
            let Some(span) = self
                .source
                .remap(hdr.cast(), old_size, new_size, SEGMENT_SIZE)
            else {
                if !owner.is_null() {
                    (*owner).huge_link(&self.source, hdr);
                }
                return None;
            };
            if !owner.is_null() {
                (*owner).huge_link(&self.source, span.ptr.cast());
            }
            if span.ptr != hdr.cast::<u8>() {
                self.map.clear(hdr as usize);
                span.ptr.expose_provenance();
                if !self.map.set(&self.source, span.ptr as usize, HUGE_START) {
                    // No memory for a map leaf (64 KiB): the moved block could never be
                    // found again. Stop loudly rather than lose it silently.
                    self.report(Call::Realloc, MisuseKind::InvalidPointer, span.ptr as usize);
                }
            }
            let new_hdr = span.ptr.cast::<SegmentHeader>();
            let delta = size as isize - (*new_hdr).requested as isize;
            (*new_hdr).span_size = span.size;
            (*new_hdr).requested = size;
            bump_shared(&self.counters.huge_live_bytes, delta);
            self.memory.huge_changed(delta);
            bump_shared(
                &self.counters.reserved,
                span.size as isize - old_size as isize,
            );
            Some(span.ptr.add(offset))
        }
    }

    // ---------------------------------------------------------------- realloc

    /// Resize `p` to `size` bytes keeping `align` (16 for plain realloc): in place when the
    /// block's class or span allows, else allocate, copy, free. Null when out of memory (then
    /// `p` is untouched). `p` null: allocate.
    ///
    /// # Safety
    ///
    /// `heap` is a live heap of this allocator owned by the calling thread; `p` is null or was
    /// returned by this allocator with alignment `align`.
    pub unsafe fn realloc(
        &self,
        heap: *mut Heap,
        p: *mut u8,
        size: usize,
        align: usize,
    ) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe {
            if p.is_null() {
                return self.malloc_aligned(heap, size, align, false);
            }
            let old = self.checked_size(p, Call::Realloc);
            let entry = self.map.get(p as usize);
            let large = !is_pages(entry) && entry != SAMPLED && entry != GUARDED;
            if large {
                // In place while the span holds the new size and at least half of it is used
                // (a cached span may be up to 25% larger than its first use needed).
                let hdr = self.large_header(p, entry, Call::Realloc);
                let room = (*hdr).span_size - (*hdr).block_offset;
                // A sampled block moves: its profile record keeps its size and address.
                let sampled = (*hdr).sample != 0;
                if size <= room && size >= room / 2 && size > LARGE_MAX && !sampled {
                    let delta = size as isize - (*hdr).requested as isize;
                    (*hdr).requested = size;
                    bump_shared(&self.counters.huge_live_bytes, delta);
                    self.memory.huge_changed(delta);
                    return p;
                }
                if size > LARGE_MAX && (*hdr).block_offset < SEGMENT_SIZE && !sampled {
                    if let Some(q) = self.remap_huge(hdr, size) {
                        return q;
                    }
                }
            } else if entry != SAMPLED
                && entry != GUARDED
                && size <= old
                && (size >= old / 2 || old <= 64)
            {
                // Keep the block if it fits and would not waste more than half of it.
                return p;
            }
            let new = self.malloc_aligned(heap, size, align, false);
            if new.is_null() {
                return new;
            }
            ptr::copy_nonoverlapping(p, new, old.min(size));
            self.free_as(heap, p, Call::Realloc);
            new
        }
    }

    // ---------------------------------------------------------------- large blocks

    /// A block of its own span: header at the span start, block `max(128, align)` further.
    ///
    /// # Safety
    ///
    /// `heap` is the calling thread's live heap.
    pub(crate) unsafe fn alloc_large(
        &self,
        heap: &Heap,
        size: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        let _ = heap;
        let offset = align.max(LARGE_HEADER);
        let span_align = align.max(SEGMENT_SIZE);
        // Page-granular: RLIMIT_DATA and RSS count what is mapped, so a 1.1 MiB block must not
        // map 4 MiB. (A bump source loses the gap to the next 4 MiB boundary; blocks this big
        // make that at most 4x of address space, never of memory touched.)
        let Some(span_size) = offset
            .checked_add(size)
            .and_then(|n| align_up(n, self.source.page_size()))
        else {
            return ptr::null_mut();
        };
        let Some(span) = self.obtain_span(span_size, span_align) else {
            return ptr::null_mut();
        };
        // SAFETY: the span is ours and at least `offset + size` bytes.
        unsafe {
            span.ptr.expose_provenance();
            let hdr = span.ptr.cast::<SegmentHeader>();
            ptr::write(
                hdr,
                SegmentHeader {
                    huge_state: core::sync::atomic::AtomicU8::new(HUGE_LIVE),
                    block_offset: offset,
                    requested: size,
                    ..SegmentHeader::new(KIND_HUGE, 0, span.size)
                },
            );
            let block = span.ptr.add(offset);
            let mut mapped = self.map.set(&self.source, span.ptr as usize, HUGE_START);
            if offset >= SEGMENT_SIZE {
                let back = (offset / SEGMENT_SIZE).trailing_zeros() as u8;
                mapped &= self.map.set(&self.source, block as usize, HUGE_BACK + back);
            }
            if !mapped {
                (*hdr).kind = KIND_FREE;
                self.map.clear(span.ptr as usize);
                self.release_span(span.ptr, span.size);
                return ptr::null_mut();
            }
            if zero && !span.zeroed {
                ptr::write_bytes(block, 0, size);
            }
            if heap.arena {
                heap.huge_link(&self.source, hdr);
            }
            self.counters
                .huge_live_bytes
                .fetch_add(size, Ordering::Relaxed);
            self.memory.huge_changed(size as isize);
            self.counters
                .huge_live_count
                .fetch_add(1, Ordering::Relaxed);
            block
        }
    }

    // ---------------------------------------------------------------- spans and segments

    fn add_reserved(&self, size: usize) {
        let now = self.counters.reserved.fetch_add(size, Ordering::Relaxed) + size;
        self.counters
            .peak_reserved
            .fetch_max(now, Ordering::Relaxed);
    }

    /// A span from the cache or the source. On failure the cache is emptied back to the
    /// source and the request retried once: cached address space must not cause an ENOMEM.
    pub(crate) fn obtain_span(&self, size: usize, align: usize) -> Option<Span> {
        let cfg = self.purge_config();
        let cached = self
            .cache
            .lock(&self.source)
            .take(size, align, || self.source.now_ms(), cfg);
        if let Some(span) = cached {
            if span.zeroed {
                // Purged but for the header page (see `purge_cached`): zero that page too.
                // SAFETY: the span is ours and at least a page long.
                unsafe { ptr::write_bytes(span.ptr, 0, self.source.page_size()) };
            }
            return Some(span);
        }
        for attempt in 0..2 {
            // SAFETY: size is a non-zero page multiple; align a power of two >= SEGMENT_SIZE.
            match unsafe { self.source.alloc(size, align) } {
                Ok(span) => {
                    self.add_reserved(span.size);
                    return Some(span);
                }
                Err(_) if attempt == 0 => self.maintain_cache(self.source.now_ms(), true),
                Err(_) => {}
            }
        }
        None
    }

    pub(crate) fn release_span(&self, ptr: *mut u8, size: usize) {
        self.map.clear(ptr as usize);
        self.counters.reserved.fetch_sub(size, Ordering::Relaxed);
        // SAFETY: the span came from our source and nothing uses it any more.
        unsafe { self.source.release(ptr, size) };
    }

    pub(crate) fn cache_put(&self, ptr: *mut u8, size: usize) {
        let now = self.source.now_ms();
        let (evicted, delay) = {
            let mut cache = self.cache.lock(&self.source);
            let evicted = cache.put(ptr, size, now);
            let over = self.memory.over_peak(cache.resident);
            (evicted, cache.pace.delay_at(now, self.purge_config(), over))
        };
        if let Some((old, old_size)) = evicted {
            self.release_span(old, old_size);
        }
        let deadline = if now == 0 { 0 } else { now + delay };
        self.cache_deadline.fetch_min(deadline, Ordering::Relaxed);
        self.shed_cache();
        if now == 0 {
            self.maintain_cache(now, false);
        }
    }

    /// Purge a cached span except its first page, which keeps the header: a second free of
    /// a huge block whose span waits in the cache is still reported as a double free.
    /// Returns whether the purged part reads as zero (`obtain_span` zeroes the first page).
    ///
    /// # Safety
    ///
    /// The span is out of the cache and unused.
    unsafe fn purge_cached(&self, ptr: *mut u8, size: usize) -> bool {
        let page = self.source.page_size();
        if size <= page {
            return false;
        }
        // SAFETY: per the contract; the range is page-aligned and inside the span.
        unsafe { self.source.purge(ptr.add(page), size - page) }
    }

    /// Purge the oldest cached spans now if the cache holds more than its resident cap.
    fn shed_cache(&self) {
        let mut work = [const { Work::Release(ptr::null_mut(), 0) }; 8];
        let n = self.cache.lock(&self.source).shed(&mut work);
        for item in &work[..n] {
            if let Work::Purge(ptr, size) = *item {
                // SAFETY: the span is out of the cache and unused.
                let zeroed = unsafe { self.purge_cached(ptr, size) };
                self.counters.purges.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .purged_bytes
                    .fetch_add(size, Ordering::Relaxed);
                let now = self.source.now_ms();
                let back = self
                    .cache
                    .lock(&self.source)
                    .put_purged(ptr, size, now, now, zeroed);
                if let Some((p, s)) = back {
                    self.release_span(p, s);
                }
            }
        }
    }

    pub(crate) fn cache_due(&self) -> bool {
        self.cache_deadline.load(Ordering::Relaxed) != u64::MAX
    }

    pub(crate) fn cache_deadline(&self) -> u64 {
        self.cache_deadline.load(Ordering::Relaxed)
    }

    /// Purge or release cached spans whose time has come (all of them if `force`).
    pub(crate) fn maintain_cache(&self, now: u64, force: bool) {
        if !force && self.cache_deadline.load(Ordering::Relaxed) > now {
            return;
        }
        let delay = {
            let mut cache = self.cache.lock(&self.source);
            let over = self.memory.over_peak(cache.resident);
            cache.pace.delay_at(now, self.purge_config(), over)
        };
        loop {
            let mut work = [const { Work::Release(ptr::null_mut(), 0) }; 8];
            let n = {
                let mut cache = self.cache.lock(&self.source);
                let n = cache.expire(now, delay, force, &mut work);
                if n == 0 {
                    let next = cache.next_deadline(delay);
                    self.cache_deadline.store(next, Ordering::Relaxed);
                }
                n
            };
            if n == 0 {
                return;
            }
            for item in &work[..n] {
                match *item {
                    Work::Release(ptr, size) => self.release_span(ptr, size),
                    Work::Purge(ptr, size) => {
                        // SAFETY: the span is out of the cache and unused; header included.
                        let zeroed = unsafe { self.purge_cached(ptr, size) };
                        self.counters.purges.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .purged_bytes
                            .fetch_add(size, Ordering::Relaxed);
                        let back = self.cache.lock(&self.source).put_purged(
                            ptr,
                            size,
                            now.saturating_sub(delay),
                            now,
                            zeroed,
                        );
                        if let Some((p, s)) = back {
                            self.release_span(p, s);
                        }
                    }
                }
            }
        }
    }

    /// A new page segment, or null when out of memory.
    pub(crate) fn new_segment(&self, kind: PageKind) -> *mut Segment {
        let Some(span) = self.obtain_span(SEGMENT_SIZE, SEGMENT_SIZE) else {
            return ptr::null_mut();
        };
        // A page's remote-free word keeps a block count above bit 48 (see
        // `protocol::thread_free`): blocks must lie below 2^48. Linux maps there unless a
        // program asks for higher addresses with a hint; a source that does not is refused.
        if (span.ptr as usize + SEGMENT_SIZE - 1) >> crate::protocol::thread_free::COUNT_SHIFT != 0
        {
            self.release_span(span.ptr, span.size);
            return ptr::null_mut();
        }
        let entry = if kind == PageKind::Medium {
            PAGES_512K
        } else {
            PAGES_64K
        };
        if !self.map.set(&self.source, span.ptr as usize, entry) {
            self.release_span(span.ptr, span.size);
            return ptr::null_mut();
        }
        self.counters.segments.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a whole aligned segment-sized span that nothing else uses.
        unsafe { Segment::init(span.ptr, span.size, kind, span.zeroed) }
    }

    /// An empty page segment goes to the span cache.
    pub(crate) fn free_segment(&self, seg: *mut Segment) {
        // SAFETY: the segment is empty and unlinked from every heap.
        let size = unsafe {
            // Its free resident slots now count in the cache's resident bytes.
            self.memory.dirty_gone((*seg).dirty_bytes());
            (*seg).header.kind = KIND_FREE;
            (*seg).header.span_size
        };
        self.counters.segments.fetch_sub(1, Ordering::Relaxed);
        self.cache_put(seg.cast(), size);
    }

    /// Purge the free-but-resident page slots of `seg` among `which`, one source call per run
    /// of slots; `now` is the source's clock.
    pub(crate) fn purge_segment_slots(&self, seg: *mut Segment, which: u64, now: u64) {
        // SAFETY: the caller owns the segment; dirty slots hold no blocks.
        unsafe {
            let purged = (*seg).dirty_slots & which;
            let mut dirty = purged;
            let bytes = (*seg).page_bytes();
            while dirty != 0 {
                let first = dirty.trailing_zeros() as usize;
                let run = (dirty >> first).trailing_ones() as usize;
                let start = Segment::slot_start(seg, first);
                let zeroed = self.source.purge(start, run * bytes);
                let mask = if run == 64 {
                    u64::MAX
                } else {
                    ((1u64 << run) - 1) << first
                };
                if zeroed {
                    (*seg).zero_slots |= mask;
                }
                dirty &= !mask;
                self.counters.purges.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .purged_bytes
                    .fetch_add(run * bytes, Ordering::Relaxed);
            }
            (*seg).dirty_slots &= !purged;
            (*seg).aged_slots &= !purged;
            if purged != 0 {
                // One time per segment: slots purged over a window ago no longer count.
                if now.saturating_sub((*seg).purged_at) >= self.purge_delay_max_ms() {
                    (*seg).purged_slots = 0;
                }
                (*seg).purged_slots |= purged;
                (*seg).purged_at = now;
            }
            self.memory.dirty_gone(purged.count_ones() as usize * bytes);
        }
    }

    // ---------------------------------------------------------------- abandonment

    pub(crate) fn has_abandoned(&self) -> bool {
        self.abandoned_count.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn push_abandoned(&self, seg: *mut Segment) {
        let mut list = self.abandoned.lock(&self.source);
        // SAFETY: the segment is unlinked from its heap; only the list holds it now.
        unsafe { (*seg).abandoned_next = list.head };
        list.head = seg;
        self.abandoned_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn pop_abandoned(&self) -> *mut Segment {
        let mut list = self.abandoned.lock(&self.source);
        let seg = list.head;
        if !seg.is_null() {
            // SAFETY: segments on the list are live and owned by the list.
            unsafe {
                list.head = (*seg).abandoned_next;
                (*seg).abandoned_next = ptr::null_mut();
            }
            self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
        }
        seg
    }

    pub(crate) fn orphan_live(&self, class: usize, delta: isize) {
        bump_shared(&self.counters.orphan_class_live[class], delta);
    }

    // ---------------------------------------------------------------- maintenance

    /// Free what can be freed now: collect remote frees, return empty pages, retire parked
    /// heaps, adopt and clean abandoned segments, purge all free memory and hand the span
    /// cache back to the source
    /// (`malloc_trim`). Returns whether anything was released.
    ///
    /// # Safety
    ///
    /// `heap` is a live heap of this allocator owned by the calling thread.
    pub unsafe fn trim(&self, heap: *mut Heap) -> bool {
        let before = self.counters.reserved.load(Ordering::Relaxed);
        let purged_before = self.counters.purged_bytes.load(Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe {
            self.unpark_all();
            let heap = &mut *heap;
            while heap.adopt_for_trim(self) {}
            heap.collect_all(self);
            heap.maybe_purge(self, true);
        }
        self.counters.reserved.load(Ordering::Relaxed) < before
            || self.counters.purged_bytes.load(Ordering::Relaxed) > purged_before
    }

    /// Take every lock before `fork()`, so the child finds none held by a thread that does not
    /// exist there. Pair with [`after_fork_parent`](Self::after_fork_parent) or
    /// [`after_fork_child`](Self::after_fork_child).
    pub fn before_fork(&self) {
        self.pool.raw_lock(&self.source);
        self.abandoned.raw_lock(&self.source);
        self.cache.raw_lock(&self.source);
        self.sampling.before_fork(&self.source);
        self.guarded.before_fork(&self.source);
        self.source.before_fork();
    }

    /// Release the locks in the parent.
    ///
    /// # Safety
    ///
    /// Called once after [`before_fork`](Self::before_fork), in the parent.
    pub unsafe fn after_fork_parent(&self) {
        // SAFETY: before_fork took each lock; we release each once.
        unsafe {
            self.source.after_fork();
            self.sampling.after_fork_parent();
            self.guarded.after_fork(false);
            self.cache.raw_unlock();
            self.abandoned.raw_unlock();
            self.pool.raw_unlock();
        }
    }

    /// Release the locks in the child (only the forking thread exists there).
    ///
    /// # Safety
    ///
    /// Called once after [`before_fork`](Self::before_fork), in the child.
    pub unsafe fn after_fork_child(&self) {
        // SAFETY: the child is single-threaded: nobody else holds or waits for these locks.
        unsafe {
            self.source.after_fork();
            self.sampling.after_fork_child();
            self.guarded.after_fork(true);
            self.cache.force_unlock();
            self.abandoned.force_unlock();
            self.pool.force_unlock();
        }
    }

    /// Call `f` with a view of every page segment: each heap's, then the abandoned ones. See
    /// [`view`](crate::view) for what a snapshot of a running program can and cannot promise.
    /// Allocates nothing.
    pub fn visit_segments(&self, f: &mut dyn FnMut(&SegmentView)) {
        let pool = self.pool.lock(&self.source);
        let mut heap = pool.all;
        // SAFETY: pooled heaps are never freed; segments on their lists are live page
        // segments (a racing owner may unlink one, which stays mapped in the span cache).
        unsafe {
            while !heap.is_null() {
                let mut seg = core::ptr::read_volatile(core::ptr::addr_of!((*heap).segs_all));
                let mut budget = 1 << 16;
                while !seg.is_null() && budget > 0 {
                    if let Some(view) = SegmentView::read(seg, false) {
                        f(&view);
                    }
                    seg = core::ptr::read_volatile(core::ptr::addr_of!((*seg).all_next));
                    budget -= 1;
                }
                heap = (*heap).all_next;
            }
        }
        drop(pool);
        let list = self.abandoned.lock(&self.source);
        let mut seg = list.head;
        // SAFETY: abandoned segments are live and only change under this lock.
        unsafe {
            while !seg.is_null() {
                if let Some(view) = SegmentView::read(seg, true) {
                    f(&view);
                }
                seg = (*seg).abandoned_next;
            }
        }
    }

    /// The counters that change when memory moves between the allocator and its source,
    /// read without a lock (for event reporting around a call).
    pub fn source_counters(&self) -> SourceCounters {
        let c = &self.counters;
        SourceCounters {
            reserved: c.reserved.load(Ordering::Relaxed),
            purges: c.purges.load(Ordering::Relaxed),
            purged_bytes: c.purged_bytes.load(Ordering::Relaxed),
            segments: c.segments.load(Ordering::Relaxed),
        }
    }

    /// Bring `heap`'s per-class counts up to date (they are otherwise published at slow-path
    /// events), e.g. before printing statistics at exit.
    ///
    /// # Safety
    ///
    /// `heap` is the calling thread's heap of this allocator (an empty heap is ignored).
    pub unsafe fn publish_counts(&self, heap: *mut Heap) {
        // SAFETY: forwarded contract.
        unsafe {
            if (*heap).is_live() {
                (*heap).publish_all();
            }
        }
    }

    /// A snapshot of the allocator's counters. Per-class counts are exact as of each page's
    /// last slow-path event (the fast paths count nothing).
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        let c = &self.counters;
        for (class, counter) in c.orphan_class_live.iter().enumerate() {
            stats.class_live[class] = counter.load(Ordering::Relaxed);
        }
        let pool = self.pool.lock(&self.source);
        let mut heap = pool.all;
        while !heap.is_null() {
            // SAFETY: pooled heaps are never freed; counters are atomics.
            unsafe {
                for (class, counter) in (*heap).counters.class_live.iter().enumerate() {
                    stats.class_live[class] =
                        stats.class_live[class].wrapping_add(counter.load(Ordering::Relaxed));
                }
                stats.remote_frees += (*heap).counters.remote_frees.load(Ordering::Relaxed);
                heap = (*heap).all_next;
            }
        }
        drop(pool);
        stats.huge_count = c.huge_live_count.load(Ordering::Relaxed);
        stats.huge_bytes = c.huge_live_bytes.load(Ordering::Relaxed);
        stats.allocated = stats.huge_bytes
            + (1..NUM_CLASSES)
                .map(|k| stats.class_live[k] * class_size(k))
                .sum::<usize>();
        stats.reserved = c.reserved.load(Ordering::Relaxed);
        stats.peak_reserved = c.peak_reserved.load(Ordering::Relaxed);
        stats.segments = c.segments.load(Ordering::Relaxed);
        stats.purges = c.purges.load(Ordering::Relaxed);
        stats.purged_bytes = c.purged_bytes.load(Ordering::Relaxed);
        stats.heaps = c.heaps.load(Ordering::Relaxed);
        stats.abandoned_segments = self.abandoned_count.load(Ordering::Relaxed);
        stats.parked_heaps = self.parked_count.load(Ordering::Relaxed);
        stats.cached_resident = self.cache.lock(&self.source).resident;
        stats.guarded = self.guarded.stats();
        stats
    }
}

/// Bytes usable in a large block: the request rounded up to whole pages of `page` bytes.
pub(crate) fn large_usable(hdr: &SegmentHeader, page: usize) -> usize {
    let end = align_up(hdr.block_offset + hdr.requested, page).unwrap_or(hdr.span_size);
    end.min(hdr.span_size) - hdr.block_offset
}

fn bump_shared(counter: &AtomicUsize, delta: isize) {
    if delta >= 0 {
        counter.fetch_add(delta as usize, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

/// Report a damaged free list met by malloc at `block`. Typed to return `block` (`black_box`
/// hides that the report never returns) so that the malloc fast path reaches it with a jump
/// and needs no stack frame (2 instructions of 30).
#[cold]
#[inline(never)]
fn corrupt_list(block: *mut u8) -> *mut u8 {
    if core::hint::black_box(true) {
        report(Misuse {
            call: Call::Malloc,
            kind: MisuseKind::CorruptFreeList,
            ptr: block as usize,
        })
    }
    block
}

const _: () = assert!(LARGE_MAX < SEGMENT_SIZE / 2);
