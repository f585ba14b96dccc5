//! When free pages go back to the source: a page slot freed at time t is purged by the first
//! purge check at or after t + delay/2 that finds it still free, and never later than about
//! t + delay; a slot freed shortly before its segment's check is not purged by that check
//! (the next page the heap needs would fault it back in), and a slot taken again before its
//! check is not purged at all. A page taken back soon after its purge doubles the heap's
//! delay, a calm stretch halves it, and while keeping free pages would take in use plus free
//! past 1.25x the peak in use the configured delay holds. The clock is the test's own.

mod common;

use std::collections::BTreeMap;

use alloc_core::{Allocator, Heap};
use common::StdSource;

const DELAY_MS: u64 = 100;
const BLOCK: usize = 1024;
/// A size served from another segment kind (medium pages), to drive slow paths.
const MEDIUM: usize = 20_000;

struct Fixture {
    alloc: &'static Allocator<&'static StdSource>,
    heap: *mut Heap,
    /// Live 1 KiB blocks by the 64 KiB page slot holding them.
    pages: BTreeMap<usize, Vec<*mut u8>>,
    /// Keeps the medium page in use while `checks` allocates and frees beside it.
    _medium: *mut u8,
}

impl Fixture {
    fn new() -> Fixture {
        let source: &'static StdSource = Box::leak(Box::new(StdSource::new()));
        source.set_clock(1000);
        let alloc: &'static Allocator<&'static StdSource> =
            Box::leak(Box::new(Allocator::new(source)));
        alloc.set_purge_delay_ms(DELAY_MS);
        let heap = alloc.new_heap();
        let mut pages: BTreeMap<usize, Vec<*mut u8>> = BTreeMap::new();
        // Four pages of 1 KiB blocks, whole (slot 0 of a segment holds its header: skip it).
        while pages.values().filter(|b| b.len() == 64).count() < 4 {
            // SAFETY: `heap` is ours.
            let p = unsafe { alloc.malloc(heap, BLOCK) };
            assert!(!p.is_null());
            pages.entry(p as usize >> 16).or_default().push(p);
        }
        pages.retain(|_, blocks| blocks.len() == 64);
        // SAFETY: as above.
        let medium = unsafe { alloc.malloc(heap, MEDIUM) };
        assert!(!medium.is_null());
        Fixture {
            alloc,
            heap,
            pages,
            _medium: medium,
        }
    }

    fn set_clock(&self, ms: u64) {
        self.alloc.source().set_clock(ms);
    }

    /// Free every block of the `i`-th full page: the page empties and its slot is free.
    fn free_page(&mut self, i: usize) {
        let key = *self.pages.keys().nth(i).unwrap();
        for p in self.pages.get_mut(&key).unwrap().drain(..) {
            // SAFETY: a live block of this heap.
            unsafe { self.alloc.free(self.heap, p) };
        }
    }

    /// Run enough slow paths for at least two purge checks (one slow path in 32 checks).
    fn checks(&self) {
        for _ in 0..64 {
            // SAFETY: `heap` is ours; the block is freed at once, beside a live one of its page.
            unsafe {
                let p = self.alloc.malloc(self.heap, MEDIUM);
                assert!(!p.is_null());
                self.alloc.free(self.heap, p);
            }
        }
    }

    fn purged(&self) -> usize {
        self.alloc.stats().purged_bytes
    }

    /// `n` live blocks of `size` bytes from `heap`.
    fn malloc_n(&self, heap: *mut Heap, n: usize, size: usize) -> Vec<*mut u8> {
        (0..n)
            .map(|_| {
                // SAFETY: `heap` is a heap of this test's allocator, used by this thread.
                let p = unsafe { self.alloc.malloc(heap, size) };
                assert!(!p.is_null());
                p
            })
            .collect()
    }

    /// Free `blocks`, live blocks of `heap`.
    fn free_all(&self, heap: *mut Heap, blocks: Vec<*mut u8>) {
        for p in blocks {
            // SAFETY: the tests pass only blocks `malloc_n` got from `heap`, once each.
            unsafe { self.alloc.free(heap, p) };
        }
    }

    /// Take one page of 512-byte blocks: the heap's lowest free slot serves it.
    fn take_a_page(&self) -> Vec<*mut u8> {
        self.malloc_n(self.heap, PAGE / 512, 512)
    }

    /// Page 0 goes free at 1000 and is purged at 1050; at 1060 its slot serves the next
    /// page, 10 ms after its purge: a refault, which doubles the delay to 200 ms. Returns
    /// that page's blocks.
    fn refault(&mut self) -> Vec<*mut u8> {
        self.free_page(0);
        self.set_clock(1050);
        self.checks();
        assert_eq!(self.purged(), PAGE);
        self.set_clock(1060);
        self.take_a_page()
    }
}

const PAGE: usize = 64 * 1024;

#[test]
fn a_free_page_is_purged_after_half_the_delay_and_one_freed_later_waits_a_check() {
    let mut f = Fixture::new();
    assert_eq!(f.purged(), 0);

    // t = 1000: page 0 goes free; its segment's check is due at 1050.
    f.free_page(0);
    f.set_clock(1049);
    f.checks();
    assert_eq!(f.purged(), 0, "purged before half the delay");

    // t = 1049: page 1 goes free, just before the segment's check.
    f.free_page(1);
    f.set_clock(1050);
    f.checks();
    assert_eq!(
        f.purged(),
        PAGE,
        "the check at 1050 purges page 0, not page 1"
    );

    // Page 1 was seen free by that check: the next one (due at 1100) purges it.
    f.set_clock(1099);
    f.checks();
    assert_eq!(f.purged(), PAGE);
    f.set_clock(1100);
    f.checks();
    assert_eq!(
        f.purged(),
        2 * PAGE,
        "page 1 purged 51 ms after it went free"
    );

    // Nothing is left to purge; later checks purge nothing more.
    f.set_clock(2000);
    f.checks();
    assert_eq!(f.purged(), 2 * PAGE);
}

#[test]
fn a_slot_taken_again_before_its_check_is_not_purged() {
    let mut f = Fixture::new();
    f.free_page(0);
    f.free_page(1);
    // The heap needs two pages of another size: the free slots serve them.
    let again = f.malloc_n(f.heap, 2 * (PAGE / 512), 512);
    f.set_clock(1000 + DELAY_MS * 10);
    f.checks();
    f.checks();
    assert_eq!(f.purged(), 0, "slots in use again were purged");
    f.free_all(f.heap, again);
}

#[test]
fn with_a_delay_of_zero_a_check_purges_every_free_slot() {
    let mut f = Fixture::new();
    f.alloc.set_purge_delay_ms(0);
    f.free_page(0);
    f.free_page(1);
    f.checks();
    assert_eq!(f.purged(), 2 * PAGE);
}

#[test]
fn a_page_taken_back_soon_after_its_purge_doubles_the_delay() {
    let mut f = Fixture::new();
    let again = f.refault();
    // Page 1 goes free now. At the doubled delay (200 ms) its check is due at 1160, not 1110.
    f.free_page(1);
    f.set_clock(1110);
    f.checks();
    assert_eq!(
        f.purged(),
        PAGE,
        "purged at the configured delay after a refault"
    );
    f.set_clock(1160);
    f.checks();
    assert_eq!(f.purged(), 2 * PAGE, "not purged at the doubled delay");
    // A calm stretch (twice the delay without a refault) halves it again: page 2, freed
    // at 1600, is checked at 1650.
    f.set_clock(1600);
    f.checks();
    f.free_page(2);
    f.set_clock(1650);
    f.checks();
    assert_eq!(f.purged(), 3 * PAGE, "the delay did not come back down");
    f.free_all(f.heap, again);
}

#[test]
fn with_the_longest_delay_at_the_configured_one_the_delay_is_fixed() {
    let mut f = Fixture::new();
    f.alloc.set_purge_delay_max_ms(DELAY_MS);
    let again = f.refault();
    f.free_page(1);
    f.set_clock(1110);
    f.checks();
    assert_eq!(f.purged(), 2 * PAGE, "the delay grew though it is fixed");
    f.free_all(f.heap, again);
}

#[test]
fn while_keeping_free_pages_would_raise_the_peak_the_configured_delay_holds() {
    let mut f = Fixture::new();
    // A refault doubles this heap's delay to 200 ms.
    let again = f.refault();
    // Another heap fills 8 pages and frees them, keeping its segment with one live block:
    // 512 KiB of free resident pages that this heap cannot reuse.
    let other = f.alloc.new_heap();
    let keep = f.malloc_n(other, 1, 512);
    let blocks = f.malloc_n(other, 8 * 64, BLOCK);
    f.free_all(other, blocks);
    // This heap takes 6 fresh pages: in use plus free is now over 1.25x the peak in use.
    let fresh = f.malloc_n(f.heap, 6 * 64, BLOCK);
    // Page 1 goes free at 1060: checked at 1110 (half the configured delay), not at 1160.
    let before = f.purged();
    f.free_page(1);
    f.set_clock(1110);
    f.checks();
    assert_eq!(
        f.purged(),
        before + PAGE,
        "over the peak, a free page waited for the longer delay"
    );
    f.free_all(f.heap, again);
    f.free_all(f.heap, fresh);
    f.free_all(other, keep);
    // SAFETY: `other` is ours and nothing uses it after this.
    unsafe { f.alloc.retire_heap(other) };
}
