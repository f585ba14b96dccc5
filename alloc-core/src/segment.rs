//! Segments: 4 MiB spans aligned to their size, so `p & !SEGMENT_MASK` finds the header of any
//! block. After its header slot a page segment holds 63 small pages (64 KiB), or 7 medium
//! pages (512 KiB), or large pages (one block each, a run of 64 KiB slots); a huge segment
//! holds one block of its own size.

use core::ptr;
use core::sync::atomic::AtomicU8;

use crate::page::Page;
use crate::size_class::PageKind;
use crate::{SEGMENT_MASK, SEGMENT_SIZE};

/// Header kinds (first byte of every segment).
pub(crate) const KIND_FREE: u8 = 0;
pub(crate) const KIND_SMALL: u8 = 1;
pub(crate) const KIND_MEDIUM: u8 = 2;
pub(crate) const KIND_LARGE: u8 = 3;
pub(crate) const KIND_HUGE: u8 = 4;
/// A sample segment (see [`sampling`](crate::sampling)).
pub(crate) const KIND_SAMPLED: u8 = 5;

/// Small pages: 64 KiB.
pub(crate) const SMALL_PAGE_SHIFT: u32 = 16;
/// Medium pages: 512 KiB.
pub(crate) const MEDIUM_PAGE_SHIFT: u32 = 19;
/// Page slots per segment at the small page size; slot 0 holds the header.
pub(crate) const MAX_SLOTS: usize = SEGMENT_SIZE >> SMALL_PAGE_SHIFT;
// Slots purge as whole pages of any page size a source may report.
const _: () = assert!(crate::MAX_PAGE_SIZE <= 1 << SMALL_PAGE_SHIFT);

/// The prefix every segment header shares.
#[repr(C)]
pub(crate) struct SegmentHeader {
    pub(crate) kind: u8,
    /// Huge segments: `HUGE_LIVE` while the block is handed out.
    pub(crate) huge_state: AtomicU8,
    pub(crate) page_shift: u8,
    /// Bytes of the span (a page segment: `SEGMENT_SIZE`).
    pub(crate) span_size: usize,
    /// Huge segments: offset of the block from the header.
    pub(crate) block_offset: usize,
    /// Huge segments: bytes the caller asked for.
    pub(crate) requested: usize,
    /// Huge segments of an arena heap: the heap, which frees them all when destroyed.
    pub(crate) owner: usize,
    pub(crate) huge_next: *mut SegmentHeader,
    pub(crate) huge_prev: *mut SegmentHeader,
    /// Huge segments: the profile's token for a sampled block (0: not sampled).
    pub(crate) sample: usize,
}

impl SegmentHeader {
    /// A fresh header of `kind` for a span of `span_size` bytes.
    pub(crate) const fn new(kind: u8, page_shift: u8, span_size: usize) -> Self {
        SegmentHeader {
            kind,
            huge_state: AtomicU8::new(HUGE_FREE),
            page_shift,
            span_size,
            block_offset: 0,
            requested: 0,
            owner: 0,
            huge_next: ptr::null_mut(),
            huge_prev: ptr::null_mut(),
            sample: 0,
        }
    }
}

pub(crate) const HUGE_FREE: u8 = 0;
pub(crate) const HUGE_LIVE: u8 = 1;

/// A page segment's header: pages and the links its owning heap keeps it on.
#[repr(C)]
pub(crate) struct Segment {
    pub(crate) header: SegmentHeader,
    /// Owning heap (type-erased), null while abandoned.
    pub(crate) heap: usize,
    pub(crate) used_pages: u32,
    pub(crate) page_count: u32,
    /// Bit i: slot i is free.
    pub(crate) free_slots: u64,
    /// Bit i: slot i is free but its memory is still resident (not purged yet).
    pub(crate) dirty_slots: u64,
    /// Bit i: slot i was dirty when the segment's next purge check was scheduled and has
    /// stayed free since: that check purges it (see [`Heap`](crate::heap::Heap)'s
    /// `maybe_purge`). Always a subset of `dirty_slots`.
    pub(crate) aged_slots: u64,
    /// Bit i: slot i's memory reads as zero.
    pub(crate) zero_slots: u64,
    /// Bit i: slot i was purged (at `purged_at`) and not taken since: taking it back soon
    /// is a refault (see [`purge_pace`](crate::purge_pace)).
    pub(crate) purged_slots: u64,
    /// The source's clock at the segment's last purge.
    pub(crate) purged_at: u64,
    pub(crate) purge_deadline: u64,
    /// When `aged_slots` was taken (the segment's last scheduling).
    pub(crate) aged_since: u64,
    pub(crate) in_purge_list: bool,
    pub(crate) in_free_list: bool,
    pub(crate) all_next: *mut Segment,
    pub(crate) all_prev: *mut Segment,
    pub(crate) free_next: *mut Segment,
    pub(crate) free_prev: *mut Segment,
    pub(crate) purge_next: *mut Segment,
    pub(crate) abandoned_next: *mut Segment,
    pub(crate) pages: [Page; MAX_SLOTS],
}

const _: () = assert!(core::mem::size_of::<Segment>() <= (1 << SMALL_PAGE_SHIFT));

impl Segment {
    /// Initialise a page segment at `base`.
    ///
    /// # Safety
    ///
    /// `base` is a `SEGMENT_SIZE`-aligned span of `span_size >= SEGMENT_SIZE` bytes that nothing
    /// else uses.
    pub(crate) unsafe fn init(
        base: *mut u8,
        span_size: usize,
        kind: PageKind,
        zeroed: bool,
    ) -> *mut Segment {
        let seg = base.cast::<Segment>();
        let shift = if kind == PageKind::Medium {
            MEDIUM_PAGE_SHIFT
        } else {
            SMALL_PAGE_SHIFT
        };
        let count = (SEGMENT_SIZE >> shift) as u32;
        // Slots 1..count are free; slot 0 holds this header.
        let free = (u64::MAX >> (64 - count)) & !1;
        // SAFETY: the caller hands us the whole span; the header fits in slot 0 (asserted above).
        unsafe {
            ptr::write(
                seg,
                Segment {
                    header: SegmentHeader::new(
                        match kind {
                            PageKind::Small => KIND_SMALL,
                            PageKind::Medium => KIND_MEDIUM,
                            PageKind::Large => KIND_LARGE,
                        },
                        shift as u8,
                        span_size,
                    ),
                    heap: 0,
                    used_pages: 0,
                    page_count: count,
                    free_slots: free,
                    dirty_slots: 0,
                    aged_slots: 0,
                    zero_slots: if zeroed { free } else { 0 },
                    purged_slots: 0,
                    purged_at: 0,
                    purge_deadline: 0,
                    aged_since: 0,
                    in_purge_list: false,
                    in_free_list: false,
                    all_next: ptr::null_mut(),
                    all_prev: ptr::null_mut(),
                    free_next: ptr::null_mut(),
                    free_prev: ptr::null_mut(),
                    purge_next: ptr::null_mut(),
                    abandoned_next: ptr::null_mut(),
                    pages: [const { Page::EMPTY }; MAX_SLOTS],
                },
            );
        }
        seg
    }

    /// The segment holding `p` (no check that it is one).
    #[inline(always)]
    pub(crate) fn of<T>(p: *mut T) -> *mut Segment {
        p.cast::<u8>().map_addr(|a| a & !SEGMENT_MASK).cast()
    }

    /// Bytes of one page slot.
    #[inline(always)]
    pub(crate) fn page_bytes(&self) -> usize {
        1 << self.header.page_shift
    }

    /// Bytes of the free slots still resident.
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.dirty_slots.count_ones() as usize * self.page_bytes()
    }

    /// The kind of pages the segment holds.
    #[inline]
    pub(crate) fn page_kind(&self) -> PageKind {
        match self.header.kind {
            KIND_MEDIUM => PageKind::Medium,
            KIND_LARGE => PageKind::Large,
            _ => PageKind::Small,
        }
    }

    /// The first slot of a run of `count` free slots, if there is one.
    #[inline]
    pub(crate) fn find_free_run(&self, count: usize) -> Option<usize> {
        // Bit i of `run` ends up set iff slots i..i+count are all free: O(log count) steps.
        let mut run = self.free_slots;
        let mut covered = 1;
        while covered < count && run != 0 {
            let step = covered.min(count - covered);
            run &= run >> step;
            covered += step;
        }
        (run != 0).then(|| run.trailing_zeros() as usize)
    }

    /// Start of slot `slot`.
    #[inline]
    pub(crate) fn slot_start(seg: *mut Segment, slot: usize) -> *mut u8 {
        // SAFETY: reading the shift of a live header.
        let shift = unsafe { (*seg).header.page_shift };
        seg.cast::<u8>().wrapping_add(slot << shift)
    }

    /// The index of `page` in its segment.
    #[inline]
    pub(crate) fn slot_of(seg: *mut Segment, page: *mut Page) -> usize {
        // SAFETY: only the address of the field is taken.
        let first = unsafe { ptr::addr_of_mut!((*seg).pages) }.cast::<Page>();
        (page as usize - first as usize) / core::mem::size_of::<Page>()
    }

    /// Whether no page of the segment is free.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.free_slots == 0
    }
}
