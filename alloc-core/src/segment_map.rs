//! Which 4 MiB chunks of the address space hold our segments.
//!
//! `free(p)` must reject a pointer we never handed out *before* it reads anything at
//! `p & !SEGMENT_MASK` (that address may not be mapped). The map keeps one byte per chunk of
//! the user address space (47 bits on x86-64, 48 on aarch64), in one of two layouts:
//!
//! * **flat** (sources that can reserve address space, [`PageSource::reserve_zeroed`]): one
//!   table (32 MiB on x86-64, 64 MiB on aarch64), `table[p >> 22]`, one load. Untouched pages of it read as zero and cost no
//!   memory: a program with 1 GiB of segments writes 256 bytes of it (one 4 KiB page).
//! * **two-level** (every other source): a top table (one entry per 256 GiB: 512 for x86-64's
//!   47 bits, 1024 for aarch64's 48) and 64 KiB leaves allocated from the source on first
//!   use; two dependent loads.
//!
//! The layout is chosen at the first `set` and never changes.
//!
//! An entry is 0 for "not ours"; [`PAGES_64K`] or [`PAGES_512K`] for a page segment starting
//! here, whose value is its slot shift (so `free` finds the page without reading the segment
//! header); [`HUGE_START`] for a huge block's header; `HUGE_BACK + k` for "the huge header is
//! 2^k chunks below": a block aligned to 4 MiB or more starts in a chunk of its own;
//! [`SAMPLED`] for a sample segment (profiled blocks); and [`GUARDED`] for the guarded pool.
//! `free` tests one bit, [`PAGES_BIT`], which only page segments' entries have: every other
//! value goes to its cold path, which dispatches on the kind. A new kind takes any value with
//! that bit clear (1, 2, 13..=15, 0x20..=0x2f, ...).

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::source::PageSource;
use crate::SEGMENT_SHIFT;

/// User address bits: x86-64 Linux maps below 2^47 (5-level paging only above it on request);
/// aarch64 Linux below 2^48 (52-bit only on request), and its mmap starts near the top.
#[cfg(not(target_arch = "aarch64"))]
const ADDRESS_BITS: usize = 47;
#[cfg(target_arch = "aarch64")]
const ADDRESS_BITS: usize = 48;
const LEAF_BITS: usize = 16;
const LEAF_BYTES: usize = 1 << LEAF_BITS;
const _: () = assert!(LEAF_BYTES.is_multiple_of(crate::MAX_PAGE_SIZE));
const TOP_ENTRIES: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT - LEAF_BITS);
/// Entries (and bytes) of the flat table: one per chunk of the user address space (32 MiB).
pub const FLAT_BYTES: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);

/// Map entry: a huge block's segment header starts here.
pub const HUGE_START: u8 = 3;
/// Map entry base: `HUGE_BACK + k` means the huge header is 2^k chunks below (k <= 8: the
/// largest alignment served is 1 GiB, 2^8 chunks).
pub const HUGE_BACK: u8 = 4;
/// Map entry: a page segment with 64 KiB slots (small and large pages) starts here. The value
/// is the slot shift.
pub const PAGES_64K: u8 = 16;
/// Map entry: a page segment with 512 KiB slots (medium pages) starts here (the slot shift).
pub const PAGES_512K: u8 = 19;
/// The bit only page segments' entries have.
pub const PAGES_BIT: u8 = 16;
/// Map entry: a sample segment (profiled blocks, see [`sampling`](crate::sampling)) starts
/// here. Above every `HUGE_BACK + k` (k < 9: alignments up to 1 GiB), [`PAGES_BIT`] clear.
pub const SAMPLED: u8 = 0x20;
/// Map entry: a chunk of the guarded pool (see [`guarded`](crate::guarded)). Above every
/// `HUGE_BACK + k`, [`PAGES_BIT`] clear, so `free` sends it down its cold path.
pub const GUARDED: u8 = 0xe0;

const _: () = assert!(HUGE_BACK + 8 < PAGES_BIT);
const _: () = assert!(PAGES_64K & PAGES_BIT != 0 && PAGES_512K & PAGES_BIT != 0);
const _: () = assert!(SAMPLED & PAGES_BIT == 0 && GUARDED & PAGES_BIT == 0);
const _: () = assert!(PAGES_512K < 2 * PAGES_BIT);

/// Whether `entry` is a page segment's (one bit test).
#[inline(always)]
pub const fn is_pages(entry: u8) -> bool {
    entry & PAGES_BIT != 0
}

/// Slot shift of a page segment's entry: 16 (64 KiB) or 19 (512 KiB).
#[inline(always)]
pub const fn slot_shift(entry: u8) -> u32 {
    entry as u32
}

/// `flat` before the first `set`: no layout chosen yet (and no entry set).
const UNDECIDED: usize = 1;

/// The leaf every unpopulated top entry points to: all zeros ("not ours"), never written.
/// It saves the lookup a null test, and untouched it costs no memory (it stays in .bss).
#[repr(transparent)]
struct ZeroLeaf([AtomicU8; LEAF_BYTES]);
static ZERO_LEAF: ZeroLeaf = ZeroLeaf([const { AtomicU8::new(0) }; LEAF_BYTES]);

#[inline(always)]
fn zero_leaf() -> *mut AtomicU8 {
    ZERO_LEAF.0.as_ptr().cast_mut()
}

/// The chunk map. `const`-constructible; its table or leaves come from the page source.
pub struct SegmentMap {
    /// The flat table; [`UNDECIDED`] before the first `set`; null: the two-level layout.
    flat: AtomicPtr<AtomicU8>,
    /// Entries of the flat table ([`FLAT_BYTES`]) once it exists, else 0: the fast path's one
    /// compare both bounds the index and sends two-level maps to the slow lookup.
    flat_len: AtomicUsize,
    top: [AtomicPtr<AtomicU8>; TOP_ENTRIES],
}

impl SegmentMap {
    /// An empty map.
    pub const fn new() -> Self {
        SegmentMap {
            flat: AtomicPtr::new(ptr::without_provenance_mut(UNDECIDED)),
            flat_len: AtomicUsize::new(0),
            top: [const { AtomicPtr::new(ZERO_LEAF.0.as_ptr().cast_mut()) }; TOP_ENTRIES],
        }
    }

    #[inline]
    fn split(addr: usize) -> Option<(usize, usize)> {
        let chunk = addr >> SEGMENT_SHIFT;
        let top = chunk >> LEAF_BITS;
        (top < TOP_ENTRIES).then_some((top, chunk & (LEAF_BYTES - 1)))
    }

    /// Whether lookups take the flat table (one load) rather than two levels.
    pub fn is_flat(&self) -> bool {
        self.flat.load(Ordering::Relaxed).addr() > UNDECIDED
    }

    /// The entry for the chunk holding `addr` (0 when unknown).
    #[inline(always)]
    pub fn get(&self, addr: usize) -> u8 {
        match self.get_flat(addr) {
            Some(entry) => entry,
            None => self.get_slow(addr),
        }
    }

    /// The entry from the flat table, `None` when [`get_slow`](Self::get_slow) must answer
    /// (a two-level map, or an address past the 47-bit space): the fast path inlines only
    /// this, one compare and one load.
    #[inline(always)]
    pub fn get_flat(&self, addr: usize) -> Option<u8> {
        let chunk = addr >> SEGMENT_SHIFT;
        if chunk >= self.flat_len.load(Ordering::Acquire) {
            return None;
        }
        let flat = self.flat.load(Ordering::Relaxed);
        // SAFETY: `flat_len` is non-zero only once `flat` points to FLAT_BYTES of
        // zero-initialised memory reserved for the life of the source (never released), and
        // `chunk < FLAT_BYTES`.
        Some(unsafe { (*flat.add(chunk)).load(Ordering::Acquire) })
    }

    /// The entry when [`get_flat`](Self::get_flat) has none: from the two-level map, or 0.
    #[inline(never)]
    pub fn get_slow(&self, addr: usize) -> u8 {
        // `flat_len` is published just after `flat`: a flat table may exist already.
        let flat = self.flat.load(Ordering::Acquire);
        if flat.addr() > UNDECIDED {
            let chunk = addr >> SEGMENT_SHIFT;
            if chunk >= FLAT_BYTES {
                return 0;
            }
            // SAFETY: as in `get_flat`.
            return unsafe { (*flat.add(chunk)).load(Ordering::Acquire) };
        }
        let Some((top, index)) = Self::split(addr) else {
            return 0;
        };
        let leaf = self.top[top].load(Ordering::Acquire);
        // SAFETY: every leaf (the zero leaf included) is a live LEAF_BYTES-long array of
        // AtomicU8 that is never freed, and `index < LEAF_BYTES`.
        unsafe { (*leaf.add(index)).load(Ordering::Acquire) }
    }

    /// The segment header for a pointer whose chunk entry is `entry` (non-zero).
    #[inline]
    pub fn header_addr(addr: usize, entry: u8) -> usize {
        let chunk_base = addr & !((1usize << SEGMENT_SHIFT) - 1);
        if !(HUGE_BACK..=HUGE_BACK + 8).contains(&entry) {
            chunk_base
        } else {
            chunk_base.wrapping_sub(1usize << (SEGMENT_SHIFT + (entry - HUGE_BACK) as usize))
        }
    }

    /// The flat table, choosing the layout on first use (null: two levels).
    fn flat_table<S: PageSource>(&self, source: &S) -> *mut AtomicU8 {
        let current = self.flat.load(Ordering::Acquire);
        if current.addr() != UNDECIDED {
            return current;
        }
        // First use: choose the layout (a race may reserve twice; one reservation wins).
        let fresh = source
            .reserve_zeroed(FLAT_BYTES)
            .map_or(ptr::null_mut(), |p| p.cast::<AtomicU8>());
        match self
            .flat
            .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                if !fresh.is_null() {
                    self.flat_len.store(FLAT_BYTES, Ordering::Release);
                }
                fresh
            }
            // Another thread chose first; our reservation (if any) stays unused: address
            // space only, this happens at most once per racing thread at start-up.
            Err(winner) => winner,
        }
    }

    /// Set the entry of the chunk holding `addr`. Returns `false` if the map could not get
    /// memory (out of memory).
    pub fn set<S: PageSource>(&self, source: &S, addr: usize, entry: u8) -> bool {
        let flat = self.flat_table(source);
        if !flat.is_null() {
            let chunk = addr >> SEGMENT_SHIFT;
            if chunk >= FLAT_BYTES {
                return false;
            }
            // SAFETY: as in `get`.
            unsafe { (*flat.add(chunk)).store(entry, Ordering::Release) };
            return true;
        }
        let Some((top, index)) = Self::split(addr) else {
            return false;
        };
        let mut leaf = self.top[top].load(Ordering::Acquire);
        if leaf == zero_leaf() {
            // SAFETY: LEAF_BYTES (64 KiB) is a multiple of every page size (MAX_PAGE_SIZE at
            // most), and the page size a valid alignment.
            let Ok(span) = (unsafe { source.alloc(LEAF_BYTES, source.page_size()) }) else {
                return false;
            };
            if !span.zeroed {
                // SAFETY: the span is ours, LEAF_BYTES long and not shared yet.
                unsafe { ptr::write_bytes(span.ptr, 0, LEAF_BYTES) };
            }
            let fresh = span.ptr.cast::<AtomicU8>();
            match self.top[top].compare_exchange(
                zero_leaf(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => leaf = fresh,
                Err(winner) => {
                    // SAFETY: we lost the race; nobody else saw `fresh`.
                    unsafe { source.release(span.ptr, LEAF_BYTES) };
                    leaf = winner;
                }
            }
        }
        // SAFETY: as in `get_slow`.
        unsafe { (*leaf.add(index)).store(entry, Ordering::Release) };
        true
    }

    /// Forget the chunk holding `addr`.
    pub fn clear(&self, addr: usize) {
        let flat = self.flat.load(Ordering::Acquire);
        if flat.addr() > UNDECIDED {
            let chunk = addr >> SEGMENT_SHIFT;
            if chunk < FLAT_BYTES {
                // SAFETY: as in `get`.
                unsafe { (*flat.add(chunk)).store(0, Ordering::Release) };
            }
            return;
        }
        let Some((top, index)) = Self::split(addr) else {
            return;
        };
        let leaf = self.top[top].load(Ordering::Acquire);
        if leaf != zero_leaf() {
            // SAFETY: as in `get_slow`; the zero leaf is never written.
            unsafe { (*leaf.add(index)).store(0, Ordering::Release) };
        }
    }
}

impl Default for SegmentMap {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceError, Span};
    use crate::StaticSource;
    use std::alloc::{alloc_zeroed, Layout};

    /// Hands out leaf pages, and the flat table when `flat`.
    struct LeafSource {
        flat: bool,
    }

    // SAFETY: std's allocator returns disjoint, aligned, zeroed regions.
    unsafe impl PageSource for LeafSource {
        unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size.
            let ptr = unsafe { alloc_zeroed(layout) };
            Ok(Span {
                ptr,
                size,
                zeroed: true,
            })
        }
        unsafe fn release(&self, _: *mut u8, _: usize) {}
        unsafe fn purge(&self, _: *mut u8, _: usize) -> bool {
            false
        }
        fn reserve_zeroed(&self, size: usize) -> Option<*mut u8> {
            // SAFETY: non-zero size.
            self.flat
                .then(|| unsafe { alloc_zeroed(Layout::from_size_align(size, 4096).unwrap()) })
        }
    }

    fn exercise(flat: bool) {
        let source = LeafSource { flat };
        let map = SegmentMap::new();
        let seg = 0x7f12_3440_0000usize;
        assert_eq!(map.get(seg), 0);
        assert!(map.set(&source, seg, PAGES_64K));
        assert_eq!(map.is_flat(), flat);
        assert_eq!(map.get_flat(seg).is_some(), flat);
        assert!(map.set(&source, seg + (4 << 20), PAGES_512K));
        assert!(map.set(&source, 0x1000_0000, HUGE_START));
        for (addr, want) in [
            (seg, PAGES_64K),
            (seg + 12345, PAGES_64K),
            (seg + (4 << 20) - 1, PAGES_64K),
            (seg + (4 << 20), PAGES_512K),
            (seg + (8 << 20), 0),
            (seg - 1, 0),
            (0x1000_0000 + 16, HUGE_START),
            (0, 0),
            (1 << ADDRESS_BITS, 0),
            (usize::MAX, 0),
        ] {
            assert_eq!(map.get(addr), want, "{addr:#x} (flat: {flat})");
        }
        assert!(!map.set(&source, 1 << ADDRESS_BITS, HUGE_START));
        map.clear(seg + 5);
        assert_eq!(map.get(seg), 0);
        assert_eq!(map.get(seg + (4 << 20)), PAGES_512K);
    }

    #[test]
    fn flat_map_sets_gets_and_clears() {
        exercise(true);
    }

    #[test]
    fn two_level_map_sets_gets_and_clears() {
        exercise(false);
    }

    #[test]
    fn kinds_are_routed_by_one_bit() {
        assert!(is_pages(PAGES_64K) && is_pages(PAGES_512K));
        for kind in [
            0,
            1,
            2,
            HUGE_START,
            HUGE_BACK,
            HUGE_BACK + 8,
            15,
            SAMPLED,
            GUARDED,
        ] {
            assert!(!is_pages(kind), "{kind}");
        }
        assert_eq!(slot_shift(PAGES_64K), 16);
        assert_eq!(slot_shift(PAGES_512K), 19);
    }

    #[test]
    fn the_whole_user_address_space_maps() {
        static SOURCE: StaticSource<{ 1 << 20 }> = StaticSource::new();
        let map = SegmentMap::new();
        // The lowest and the highest chunk a process can map (aarch64 Linux hands out
        // addresses just below 2^48 first).
        let top = (1usize << ADDRESS_BITS) - (1 << SEGMENT_SHIFT);
        for addr in [1 << SEGMENT_SHIFT, top] {
            assert!(map.set(&SOURCE, addr + 100, PAGES_64K));
            assert_eq!(map.get(addr), PAGES_64K);
            map.clear(addr);
            assert_eq!(map.get(addr), 0);
        }
        assert_eq!(map.get(1 << ADDRESS_BITS), 0);
        if cfg!(target_arch = "aarch64") {
            assert!(top >= 0xffff_0000_0000);
        }
    }
}
