//! The guarded pool in the core, on a page source that records which pages are protected
//! instead of protecting them: block placement against the guard page, protection after
//! free, the FIFO quarantine, the pool-full fallback, misuse of guarded blocks, and how faults
//! are explained.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use alloc_core::guarded::{set_stack_capture, set_thread_id, STACK_FRAMES};
use alloc_core::{
    Allocator, FaultKind, GuardedConfig, Heap, PageSource, SourceError, Span, StaticSource,
    PAGE_SIZE,
};
use common::{PagedSource, StdSource};

/// StdSource whose `protect` records the state of each page (absent: accessible).
struct ProtSource {
    inner: StdSource,
    inaccessible: Mutex<BTreeMap<usize, ()>>,
}

impl ProtSource {
    const fn new() -> Self {
        ProtSource {
            inner: StdSource::new(),
            inaccessible: Mutex::new(BTreeMap::new()),
        }
    }

    fn accessible(&self, addr: usize) -> bool {
        let page = addr & !(PAGE_SIZE - 1);
        !self.inaccessible.lock().unwrap().contains_key(&page)
    }

    /// Every byte of `[addr, addr + len)` accessible.
    fn all_accessible(&self, addr: usize, len: usize) -> bool {
        (addr..addr + len)
            .step_by(PAGE_SIZE)
            .chain([addr + len - 1])
            .all(|a| self.accessible(a))
    }
}

// SAFETY: forwards to StdSource; protection is only recorded.
unsafe impl PageSource for ProtSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        // SAFETY: forwarded.
        unsafe { self.inner.alloc(size, align) }
    }
    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        // SAFETY: forwarded.
        unsafe { self.inner.release(ptr, size) }
    }
    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        assert!(
            self.all_accessible(ptr as usize, size),
            "purge of protected pages"
        );
        // SAFETY: forwarded.
        unsafe { self.inner.purge(ptr, size) }
    }
    unsafe fn protect(&self, ptr: *mut u8, size: usize, accessible: bool) -> bool {
        assert_eq!(ptr as usize % PAGE_SIZE, 0);
        assert_eq!(size % PAGE_SIZE, 0);
        let mut map = self.inaccessible.lock().unwrap();
        for page in (ptr as usize..ptr as usize + size).step_by(PAGE_SIZE) {
            if accessible {
                map.remove(&page);
            } else {
                map.insert(page, ());
            }
        }
        true
    }
}

/// A fresh allocator with its pool on.
fn setup(
    config: GuardedConfig,
) -> (
    &'static Allocator<ProtSource>,
    &'static ProtSource,
    *mut Heap,
) {
    let alloc: &'static Allocator<ProtSource> =
        Box::leak(Box::new(Allocator::new(ProtSource::new())));
    assert!(alloc.enable_guarded(config));
    assert!(!alloc.enable_guarded(config), "enabled twice");
    let heap = alloc.new_heap();
    assert!(!heap.is_null());
    (alloc, alloc.source(), heap)
}

fn small(slots: usize) -> GuardedConfig {
    GuardedConfig {
        slots,
        ..GuardedConfig::DEFAULT
    }
}

/// Run `f`, expecting a misuse panic whose message is `want`.
fn expect_report(want: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("misuse was not detected");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert_eq!(msg, want);
}

#[test]
fn off_without_protection_and_by_default() {
    static SOURCE: StaticSource<{ 8 << 20 }> = StaticSource::new();
    let alloc = Allocator::new(&SOURCE);
    // SAFETY: nothing is handed out.
    assert!(unsafe { alloc.guarded_alloc(16, 16, false) }.is_null());
    assert!(
        !alloc.enable_guarded(GuardedConfig::DEFAULT),
        "a source without protect"
    );
    assert!(!alloc.guarded_enabled());
    let bad = GuardedConfig {
        slots: 0,
        ..GuardedConfig::DEFAULT
    };
    let alloc = Allocator::new(ProtSource::new());
    assert!(!alloc.enable_guarded(bad));
    assert!(alloc.enable_guarded(small(8)));
}

#[test]
fn right_aligned_against_the_guard_page() {
    let (alloc, src, heap) = setup(small(16));
    // SAFETY: blocks are used within their usable size and freed once.
    unsafe {
        for (size, align, usable) in [
            (1, 16, 16),
            (13, 16, 16),
            (100, 16, 112),
            (4096, 16, 4096),
            (5000, 16, 5008),
            (16384, 16, 16384),
            (40, 64, 64),
            (10, 4096, 4096),
        ] {
            let p = alloc.guarded_alloc(size, align, false);
            assert!(!p.is_null(), "{size}/{align}");
            let a = p as usize;
            assert_eq!(a % align, 0);
            assert_eq!(alloc.usable_size(p), usable);
            assert_eq!((a + usable) % PAGE_SIZE, 0, "block ends on the guard page");
            assert!(src.all_accessible(a, usable));
            assert!(!src.accessible(a + usable), "guard page after the block");
            assert!(
                !src.accessible((a & !(PAGE_SIZE - 1)) - 1),
                "page before the block"
            );
            p.write_bytes(0xab, usable);
            let fault = alloc.guarded_fault(a + usable).unwrap();
            assert_eq!(fault.kind, FaultKind::Overflow);
            let block = fault.block.unwrap();
            assert_eq!(
                (block.addr, block.requested, block.usable, block.live),
                (a, size, usable, true)
            );
            alloc.free(heap, p);
            assert!(
                !src.accessible(a) && !src.accessible(a + usable - 1),
                "freed pages protected"
            );
            let fault = alloc.guarded_fault(a + usable / 2).unwrap();
            assert_eq!(fault.kind, FaultKind::UseAfterFree);
            assert!(!fault.block.unwrap().live);
        }
        // Aligned past a page: still against the guard.
        let p = alloc.guarded_alloc(8192, 8192, false);
        assert_eq!(p as usize % 8192, 0);
        assert!(!src.accessible(p as usize + 8192) && src.all_accessible(p as usize, 8192));
        alloc.free(heap, p);
        let p = alloc.guarded_alloc(9000, 8192, false);
        assert_eq!((p as usize % 8192, alloc.usable_size(p)), (0, 16384));
        alloc.free(heap, p);
        // Not eligible: too big, or aligned past the data region.
        assert!(alloc.guarded_alloc(16385, 16, false).is_null());
        assert!(alloc.guarded_alloc(16, 32768, false).is_null());
        // Not ours at all.
        assert!(alloc.guarded_fault(0x1000).is_none());
        let q = alloc.malloc(heap, 64);
        assert!(alloc.guarded_fault(q as usize).is_none());
        alloc.free(heap, q);
    }
}

#[test]
fn left_aligned_catches_underflow() {
    let (alloc, src, heap) = setup(GuardedConfig {
        slots: 8,
        left_aligned: true,
        ..GuardedConfig::DEFAULT
    });
    // SAFETY: as above.
    unsafe {
        let p = alloc.guarded_alloc(24, 16, false);
        let a = p as usize;
        assert_eq!(a % PAGE_SIZE, 0, "starts the data region");
        assert!(src.all_accessible(a, 32));
        assert!(!src.accessible(a - 1));
        let fault = alloc.guarded_fault(a - 1).unwrap();
        assert_eq!(fault.kind, FaultKind::Underflow);
        assert_eq!(fault.block.unwrap().addr, a);
        alloc.free(heap, p);
    }
}

#[test]
fn quarantine_is_fifo_and_a_full_pool_falls_back() {
    let slots = 16;
    let reserve = slots / 8;
    let (alloc, src, heap) = setup(small(slots));
    // SAFETY: as above.
    unsafe {
        // Free one block, then allocate: its slot comes back only after every other slot.
        let first = alloc.guarded_alloc(64, 16, false);
        alloc.free(heap, first);
        let mut seen = Vec::new();
        for _ in 0..slots - reserve {
            let p = alloc.guarded_alloc(64, 16, false);
            assert!(!p.is_null());
            assert_ne!(p, first, "a quarantined slot handed out early");
            seen.push(p);
        }
        assert!(!src.accessible(first as usize));
        // Only `reserve` slots are left, the quarantine's minimum: the pool is full.
        assert_eq!(alloc.guarded_stats().live, slots - reserve);
        assert!(alloc.guarded_alloc(64, 16, false).is_null());
        assert_eq!(alloc.guarded_stats().pool_full, 1);
        // Free them all; the oldest free slots go first: the never-used one, then `first`.
        for &p in &seen {
            alloc.free(heap, p);
        }
        let unused = alloc.guarded_alloc(64, 16, false);
        assert!(!seen.contains(&unused) && unused != first);
        let next = alloc.guarded_alloc(64, 16, false);
        assert_eq!(next, first, "the oldest freed slot is reused first");
        alloc.free(heap, unused);
        alloc.free(heap, next);
        let stats = alloc.guarded_stats();
        assert_eq!(
            (stats.slots, stats.live, stats.allocated),
            (slots, 0, slots - reserve + 3)
        );
    }
}

#[test]
fn misuse_of_guarded_blocks() {
    let (alloc, _, heap) = setup(small(8));
    // SAFETY: each misuse is caught before anything is touched.
    unsafe {
        let p = alloc.guarded_alloc(24, 16, false);
        let a = p as usize;
        expect_report(
            &format!(
                "pagebreak: free(): invalid pointer (not allocated by pagebreak) {:#x}",
                a + 16
            ),
            || alloc.free(heap, p.add(16)),
        );
        alloc.free(heap, p);
        expect_report(&format!("pagebreak: free(): double free of {a:#x}"), || {
            alloc.free(heap, p)
        });
        expect_report(
            &format!("pagebreak: realloc(): pointer already freed: {a:#x}"),
            || {
                alloc.realloc(heap, p, 100, 16);
            },
        );
        expect_report(
            &format!("pagebreak: malloc_usable_size(): pointer already freed: {a:#x}"),
            || {
                alloc.usable_size(p);
            },
        );
        let block = alloc.guarded_block(a).unwrap();
        assert!(!block.live);
    }
}

fn fake_stack(out: &mut [usize]) -> usize {
    for (i, f) in out.iter_mut().enumerate() {
        *f = 0x1000 + i;
    }
    out.len()
}

std::thread_local! {
    static FAKE_TID: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn fake_thread_id() -> usize {
    FAKE_TID.with(|t| t.get())
}

#[test]
fn threads_that_allocated_and_freed_are_recorded() {
    let (alloc, _, _) = setup(small(8));
    set_thread_id(fake_thread_id);
    FAKE_TID.with(|t| t.set(41));
    // SAFETY: the block is live until the other thread frees it.
    let p = unsafe { alloc.guarded_alloc(64, 16, false) } as usize;
    let block = alloc.guarded_block(p).unwrap();
    assert_eq!((block.alloc_thread, block.free_thread), (41, 0));
    std::thread::scope(|s| {
        s.spawn(|| {
            FAKE_TID.with(|t| t.set(42));
            let other = alloc.new_heap();
            // SAFETY: a live guarded block; any thread may free it, through its own heap.
            unsafe { alloc.free(other, p as *mut u8) };
        });
    });
    let block = alloc.guarded_block(p).unwrap();
    assert!(!block.live);
    assert_eq!((block.alloc_thread, block.free_thread), (41, 42));
}

#[test]
fn realloc_calloc_and_stacks() {
    let (alloc, _, heap) = setup(small(8));
    set_stack_capture(fake_stack);
    // SAFETY: blocks used within their sizes.
    unsafe {
        let p = alloc.guarded_alloc(100, 16, false);
        common::fill(p, 100, 7);
        let block = alloc.guarded_block(p as usize).unwrap();
        assert_eq!(block.alloc_stack.frames().len(), STACK_FRAMES);
        assert_eq!(block.alloc_stack.frames()[3], 0x1003);
        assert!(block.free_stack.frames().is_empty());
        // realloc moves a guarded block to a normal one, contents kept.
        let q = alloc.realloc(heap, p, 50, 16);
        assert!(alloc.guarded_fault(q as usize).is_none());
        common::check(q, 50, 7);
        let old = alloc.guarded_block(p as usize).unwrap();
        assert!(!old.live && old.free_stack.frames().len() == STACK_FRAMES);
        alloc.free(heap, q);
        // A zeroed block on a slot whose pages held data (8 slots: from the 9th on).
        for _ in 0..if cfg!(miri) { 10 } else { 20 } {
            let z = alloc.guarded_alloc(4000, 16, true);
            assert!(std::slice::from_raw_parts(z, 4000).iter().all(|&b| b == 0));
            z.write_bytes(0xee, 4000);
            alloc.free(heap, z);
        }
    }
}

#[test]
fn wild_access_between_unused_slots() {
    let (alloc, _, _) = setup(small(8));
    let p = unsafe { alloc.guarded_alloc(16, 16, false) } as usize;
    // Slot 0's block is at the end of its data region; slot 3 (32 KiB a slot) is far and
    // never used.
    let far = p + 3 * (32 << 10) + 100;
    let fault = alloc.guarded_fault(far).unwrap();
    assert_eq!(fault.kind, FaultKind::Wild);
    assert!(fault.block.is_none());
}

/// 16 and 64 KiB pages (aarch64 kernels): protection in whole pages of the source's size,
/// blocks still against the guard.
#[test]
fn guarded_blocks_on_large_pages() {
    for page in [16 << 10, 64 << 10] {
        let source = PagedSource::new(page);
        let alloc = Allocator::new(&source);
        assert!(alloc.enable_guarded(small(16)));
        let heap = alloc.new_heap();
        // SAFETY: blocks are used within their usable size and freed once.
        unsafe {
            for (size, align) in [(1, 16), (100, 16), (5000, 16), (16384, 16), (10, 4096)] {
                let p = alloc.guarded_alloc(size, align, false);
                assert!(!p.is_null(), "page {page}: {size}/{align}");
                let usable = alloc.usable_size(p);
                assert!(usable >= size && (p as usize).is_multiple_of(align));
                assert_eq!(
                    (p as usize + usable) % page,
                    0,
                    "block ends on the guard page"
                );
                p.write_bytes(0xcd, usable);
                let fault = alloc.guarded_fault(p as usize + usable).unwrap();
                assert_eq!(fault.kind, FaultKind::Overflow);
                alloc.free(heap, p);
            }
            alloc.retire_heap(heap);
        }
        let bad = source.violations();
        assert!(bad.is_empty(), "page {page}: {bad:?}");
    }
}
