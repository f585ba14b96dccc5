//! Misuse detection in the core: double frees (small, medium, large; right away, later, from
//! another heap), invalid pointers (stack, global, wild, interior), realloc of a freed block.
//! The default handler panics with the report, so each case is caught and its message checked.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use alloc_core::{Allocator, Heap};
use common::StdSource;

static SOURCE: StdSource = StdSource::new();
static ALLOC: Allocator<&StdSource> = Allocator::new(&SOURCE);

/// Run `f`, expecting a misuse panic whose message contains `want`.
fn expect_report(want: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("misuse was not detected");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.starts_with("pagebreak: "), "unexpected panic: {msg}");
    assert!(msg.contains(want), "report {msg:?} lacks {want:?}");
}

/// The tests share one allocator and run on parallel threads: a block freed "right away"
/// could be handed to another test between its two frees (a 3 MiB span freed by one test
/// served another's 2 MiB malloc under qemu), and a double free of a block in use again is
/// not detectable. One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn heap() -> *mut Heap {
    let h = ALLOC.new_heap();
    assert!(!h.is_null());
    h
}

#[test]
fn double_free_right_away_small_medium_large() {
    let _serial = serial();
    let h = heap();
    for size in [24usize, 40 << 10, 300 << 10, 3 << 20] {
        // SAFETY: p is live until the first free; the second is the misuse under test.
        unsafe {
            let p = ALLOC.malloc(h, size);
            ALLOC.free(h, p);
            let want = format!("free(): double free of {:#x}", p as usize);
            expect_report(&want, || ALLOC.free(h, p));
        }
    }
}

#[test]
fn double_free_after_other_frees() {
    let _serial = serial();
    let h = heap();
    // SAFETY: blocks are live until freed; the repeated free of `victim` is the misuse.
    unsafe {
        let blocks: Vec<*mut u8> = (0..100).map(|_| ALLOC.malloc(h, 64)).collect();
        let victim = blocks[40];
        for &b in &blocks {
            ALLOC.free(h, b);
        }
        let again: Vec<*mut u8> = (0..10).map(|_| ALLOC.malloc(h, 200)).collect();
        expect_report("double free", || ALLOC.free(h, victim));
        for p in again {
            ALLOC.free(h, p);
        }
    }
}

#[test]
fn double_free_first_on_another_heap() {
    let _serial = serial();
    let owner = heap();
    let other = heap();
    // SAFETY: the first free (through a heap that does not own the page) is legal; the second
    // free is the misuse, once through each heap.
    unsafe {
        for size in [48usize, 20 << 10] {
            let p = ALLOC.malloc(owner, size);
            ALLOC.free(other, p);
            expect_report("double free", || ALLOC.free(owner, p));
            expect_report("double free", || ALLOC.free(other, p));
        }
    }
}

#[test]
fn double_free_into_a_used_up_page_stays_detectable() {
    let _serial = serial();
    // 1 KiB blocks: 64 to a 64 KiB page. A used-up page serves again only once two of them
    // are free, so a lone block freed into it is not the next one handed out (it was, before:
    // a second free of it went unseen after 0 allocations).
    for remote in [false, true] {
        let h = heap();
        let other = heap();
        // SAFETY: blocks are live until freed; the second free of `victim` is the misuse.
        unsafe {
            let first: Vec<*mut u8> = (0..64).map(|_| ALLOC.malloc(h, 1024)).collect();
            let victim = first[10];
            ALLOC.free(if remote { other } else { h }, victim);
            let later: Vec<*mut u8> = (0..64).map(|_| ALLOC.malloc(h, 1024)).collect();
            assert!(!later.contains(&victim), "remote {remote}: reused at once");
            expect_report("double free", || ALLOC.free(h, victim));
            for &p in first.iter().chain(&later) {
                if p != victim {
                    ALLOC.free(h, p);
                }
            }
        }
    }
}

#[test]
fn invalid_pointers() {
    let _serial = serial();
    let h = heap();
    static GLOBAL: [u64; 4] = [0; 4];
    let stack = [0u8; 64];
    // SAFETY: each pointer is deliberately not a live block; the allocator must refuse it
    // before touching it.
    unsafe {
        expect_report("invalid pointer", || {
            ALLOC.free(h, stack.as_ptr().cast_mut())
        });
        expect_report("invalid pointer", || {
            ALLOC.free(h, GLOBAL.as_ptr().cast::<u8>().cast_mut())
        });
        expect_report("invalid pointer", || {
            ALLOC.free(h, std::ptr::without_provenance_mut(0xdead_0000_1230))
        });
        let small = ALLOC.malloc(h, 64);
        expect_report("invalid pointer", || ALLOC.free(h, small.add(16)));
        expect_report("invalid pointer", || ALLOC.free(h, small.add(1)));
        let slots = ALLOC.malloc(h, 600 << 10);
        expect_report("invalid pointer", || ALLOC.free(h, slots.add(64 << 10)));
        expect_report("invalid pointer", || ALLOC.free(h, slots.add(16)));
        ALLOC.free(h, slots);
        let large = ALLOC.malloc(h, 2 << 20);
        expect_report("invalid pointer", || ALLOC.free(h, large.add(4096)));
        expect_report("invalid pointer", || ALLOC.free(h, large.add(1 << 20)));
        ALLOC.free(h, small);
        ALLOC.free(h, large);
    }
}

#[test]
fn realloc_of_freed_block() {
    let _serial = serial();
    let h = heap();
    // SAFETY: p is freed, then handed to realloc: the misuse under test.
    unsafe {
        for size in [32usize, 50 << 10, 1 << 20] {
            let p = ALLOC.malloc(h, size);
            ALLOC.free(h, p);
            expect_report("realloc(): pointer already freed", || {
                ALLOC.realloc(h, p, size * 2, 16);
            });
        }
    }
}

#[test]
fn corrupted_free_list_is_reported_not_followed() {
    let _serial = serial();
    let h = heap();
    // SAFETY: we free a block, then write through the dangling pointer (a use-after-free),
    // aiming its link at an address of our choosing; the allocator must refuse to follow it.
    unsafe {
        let a = ALLOC.malloc(h, 512);
        let b = ALLOC.malloc(h, 512);
        ALLOC.free(h, a);
        ALLOC.free(h, b);
        // b is now at the head of the page's local list; overwrite its link.
        b.cast::<usize>().write(0x4141_4141_4141_4141);
        expect_report("free list corrupted", || {
            for _ in 0..200 {
                ALLOC.malloc(h, 512);
            }
        });
    }
}
