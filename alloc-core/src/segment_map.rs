//! Which 4 MiB chunks of the address space hold our segments.
//!
//! `free(p)` must reject a pointer we never handed out *before* it reads anything at
//! `p & !SEGMENT_MASK` (that address may not be mapped). The map answers with two dependent
//! loads: a top table (one entry per 256 GiB of the user address space: 512 for x86-64's 47
//! bits, 1024 for aarch64's 48) and a 64 KiB leaf of one byte per chunk, allocated from the
//! page source on first use.
//!
//! A byte is 0 for "not ours"; [`PAGES_64K`] or [`PAGES_512K`] for a page segment starting
//! here, with its slot size (so `free` finds the page without reading the segment header);
//! [`HUGE_START`] for a huge block's header; `HUGE_BACK + k` for "the huge header is 2^k
//! chunks below": a block aligned to 4 MiB or more starts in a chunk of its own; [`SAMPLED`]
//! for a sample segment (profiled blocks); and [`GUARDED`] for the guarded pool.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

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

/// Map entry: a page segment with 64 KiB slots (small and large pages) starts here.
pub const PAGES_64K: u8 = 1;
/// Map entry: a page segment with 512 KiB slots (medium pages) starts here.
pub const PAGES_512K: u8 = 2;
/// Map entry: a huge block's segment header starts here.
pub const HUGE_START: u8 = 3;
/// Map entry base: `HUGE_BACK + k` means the huge header is 2^k chunks below.
pub const HUGE_BACK: u8 = 4;
/// Map entry: a sample segment (profiled blocks, see [`sampling`](crate::sampling)) starts
/// here. Above every `HUGE_BACK + k` (k < 9: alignments up to 1 GiB).
pub const SAMPLED: u8 = 0x20;
/// Map entry: a chunk of the guarded pool (see [`guarded`](crate::guarded)). Above every
/// `HUGE_BACK + k` (k < 64), and not a page segment's, so `free` sends it down its cold path.
pub const GUARDED: u8 = 0xff;

/// Whether `entry` is a page segment's.
#[inline(always)]
pub const fn is_pages(entry: u8) -> bool {
    entry.wrapping_sub(PAGES_64K) <= PAGES_512K - PAGES_64K
}

/// Slot shift of a page segment's entry: 16 (64 KiB) or 19 (512 KiB).
#[inline(always)]
pub const fn slot_shift(entry: u8) -> u32 {
    13 + 3 * entry as u32
}

/// The leaf every unpopulated top entry points to: all zeros ("not ours"), never written.
/// It saves the lookup a null test, and untouched it costs no memory (it stays in .bss).
#[repr(transparent)]
struct ZeroLeaf([AtomicU8; LEAF_BYTES]);
static ZERO_LEAF: ZeroLeaf = ZeroLeaf([const { AtomicU8::new(0) }; LEAF_BYTES]);

#[inline(always)]
fn zero_leaf() -> *mut AtomicU8 {
    ZERO_LEAF.0.as_ptr().cast_mut()
}

/// The two-level chunk map. `const`-constructible; leaves come from the page source.
pub struct SegmentMap {
    top: [AtomicPtr<AtomicU8>; TOP_ENTRIES],
}

impl SegmentMap {
    /// An empty map.
    pub const fn new() -> Self {
        SegmentMap {
            top: [const { AtomicPtr::new(ZERO_LEAF.0.as_ptr().cast_mut()) }; TOP_ENTRIES],
        }
    }

    #[inline]
    fn split(addr: usize) -> Option<(usize, usize)> {
        let chunk = addr >> SEGMENT_SHIFT;
        let top = chunk >> LEAF_BITS;
        (top < TOP_ENTRIES).then_some((top, chunk & (LEAF_BYTES - 1)))
    }

    /// The entry for the chunk holding `addr` (0 when unknown).
    #[inline]
    pub fn get(&self, addr: usize) -> u8 {
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
        if entry < HUGE_BACK {
            chunk_base
        } else {
            chunk_base.wrapping_sub(1usize << (SEGMENT_SHIFT + (entry - HUGE_BACK) as usize))
        }
    }

    /// Set the entry of the chunk holding `addr`. Returns `false` if the leaf could not be
    /// allocated (out of memory).
    pub fn set<S: PageSource>(&self, source: &S, addr: usize, entry: u8) -> bool {
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
        // SAFETY: as in `get`.
        unsafe { (*leaf.add(index)).store(entry, Ordering::Release) };
        true
    }

    /// Forget the chunk holding `addr`.
    pub fn clear(&self, addr: usize) {
        let Some((top, index)) = Self::split(addr) else {
            return;
        };
        let leaf = self.top[top].load(Ordering::Acquire);
        if leaf != zero_leaf() {
            // SAFETY: as in `get`; the zero leaf is never written.
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
    use crate::StaticSource;

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
