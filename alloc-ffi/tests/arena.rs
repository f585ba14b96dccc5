//! First-class heaps: `pagebreak::Arena` through allocator-api2's `Allocator` (and the
//! standard library's, with feature `nightly`).
//!
//! The statistics these tests read are the selected instance's, shared by every test of this
//! binary, so each test holds `SERIAL` for its whole run.
#![cfg_attr(feature = "nightly", feature(allocator_api))]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use pagebreak::{selected, Arena};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Node<'a> {
    value: u64,
    next: Option<Box<Node<'a>, &'a Arena>>,
}

#[test]
fn vec_and_box_live_in_the_arena() {
    let _g = serial();
    let arena = Arena::new();
    let mut v: Vec<u64, &Arena> = Vec::new_in(&arena);
    for i in 0..100_000u64 {
        v.push(i * 3);
    }
    assert_eq!(v.len(), 100_000);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    // The buffer is one of the arena's blocks: pagebreak knows its size.
    // SAFETY: a live block of the selected instance.
    let usable = unsafe { selected::usable_size(v.as_ptr() as *mut u8) };
    assert!(
        usable >= v.capacity() * 8,
        "{usable} < {}",
        v.capacity() * 8
    );

    let b = Box::new_in([0x5au8; 3000], &arena);
    assert!(b.iter().all(|&x| x == 0x5a));
    // SAFETY: as above.
    assert!(unsafe { selected::usable_size(&*b as *const _ as *mut u8) } >= 3000);

    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(&v[..], &[0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
}

#[test]
fn thousands_of_objects_in_a_linked_list() {
    let _g = serial();
    let arena = Arena::new();
    let mut head: Option<Box<Node, &Arena>> = None;
    for value in 0..20_000u64 {
        head = Some(Box::new_in(Node { value, next: head }, &arena));
    }
    let (mut count, mut sum, mut node) = (0u64, 0u64, head.as_deref());
    let mut expect = 20_000u64;
    while let Some(n) = node {
        expect -= 1;
        assert_eq!(n.value, expect);
        count += 1;
        sum += n.value;
        node = n.next.as_deref();
    }
    assert_eq!(count, 20_000);
    assert_eq!(sum, 19_999 * 20_000 / 2);
    // Dropping a long list recursively would overflow the stack; the arena's drop takes all
    // of it at once without running a destructor, so leak the list into it.
    std::mem::forget(head);
}

#[test]
fn drop_frees_everything_at_once() {
    let _g = serial();
    let before = selected::stats().allocated;
    let arena = Arena::new();
    let mut kept: Vec<&mut [u8; 256], &Arena> = Vec::new_in(&arena);
    for i in 0..20_000usize {
        // Leak half the boxes and keep references to the others: none is freed one by one.
        let b = Box::leak(Box::new_in([i as u8; 256], &arena));
        if i % 2 == 0 {
            kept.push(b);
        }
    }
    // Three huge blocks (over 1 MiB: a span each).
    for _ in 0..3 {
        let mut big: Vec<u8, &Arena> = Vec::with_capacity_in(3 << 20, &arena);
        big.resize(3 << 20, 1);
        std::mem::forget(big);
    }
    assert!(kept
        .iter()
        .enumerate()
        .all(|(j, b)| b[255] == (2 * j) as u8));
    std::mem::forget(kept);
    let during = selected::stats();
    // 20_000 * 256 B = 5 MB of small blocks (counted up to each page's last slow-path event)
    // and 9 MiB of huge blocks (counted exactly).
    assert!(
        during.allocated >= before + (9 << 20) + (4 << 20),
        "before {before}, during {}",
        during.allocated
    );
    assert!(during.huge_count >= 3);
    drop(arena);
    let after = selected::stats();
    assert!(
        after.allocated <= before + (256 << 10),
        "before {before}, after {}: the arena's blocks were not all freed",
        after.allocated
    );
    assert!(after.huge_count + 3 <= during.huge_count);
}

#[test]
fn blocks_freed_one_by_one_are_reused() {
    let _g = serial();
    let arena = Arena::new();
    let reserved = selected::stats().reserved;
    // 500 rounds of 2 MB each: without individual frees, 1 GB.
    for round in 0..500usize {
        let blocks: std::vec::Vec<Box<[u8; 1024], &Arena>> = (0..2000)
            .map(|i| Box::new_in([(round + i) as u8; 1024], &arena))
            .collect();
        assert!(blocks
            .iter()
            .enumerate()
            .all(|(i, b)| b[0] == (round + i) as u8 && b[1023] == (round + i) as u8));
    }
    let grown = selected::stats().reserved.saturating_sub(reserved);
    assert!(grown <= 64 << 20, "reserved grew by {grown} bytes");
}

fn check_aligned<T>(p: *const T, align: usize) {
    assert_eq!(p as usize % align, 0, "{p:p} is not {align}-aligned");
}

#[test]
fn over_aligned_types_keep_their_alignment() {
    let _g = serial();
    #[derive(Clone, Copy)]
    #[repr(align(64))]
    struct Line([u64; 8]);
    #[repr(align(4096))]
    struct Page([u8; 4096]);

    let arena = Arena::new();
    let mut lines: Vec<Line, &Arena> = Vec::new_in(&arena);
    let mut last = std::ptr::null();
    for i in 0..50_000u64 {
        lines.push(Line([i; 8]));
        if lines.as_ptr() != last {
            // Every growth (small, medium, large and huge sizes) keeps 64-byte alignment.
            last = lines.as_ptr();
            check_aligned(last, 64);
        }
    }
    assert!(lines.iter().enumerate().all(|(i, l)| l.0 == [i as u64; 8]));
    lines.truncate(3);
    lines.shrink_to_fit();
    check_aligned(lines.as_ptr(), 64);
    assert_eq!(lines[2].0, [2; 8]);

    let pages: std::vec::Vec<Box<Page, &Arena>> = (0..100)
        .map(|i| Box::new_in(Page([i as u8; 4096]), &arena))
        .collect();
    for (i, p) in pages.iter().enumerate() {
        check_aligned(&**p, 4096);
        assert!(p.0.iter().all(|&x| x == i as u8));
    }

    // Alignments from 32 bytes to 8 MiB through the trait directly.
    for shift in 5..=23 {
        let align = 1usize << shift;
        for size in [1, align / 2, align, 3 * align + 8] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let block = (&arena).allocate(layout).unwrap();
            let p = block.cast::<u8>();
            check_aligned(p.as_ptr(), align);
            assert_eq!(block.len(), size);
            // SAFETY: `size` writable bytes at `p`.
            unsafe { p.as_ptr().write_bytes(0xc3, size) };
            if size > 1 {
                // Grow and shrink keep the alignment and the contents.
                let big = Layout::from_size_align(size * 2, align).unwrap();
                // SAFETY: `p` is live with `layout`; `big` is not smaller.
                let g = unsafe { (&arena).grow(p, layout, big) }
                    .unwrap()
                    .cast::<u8>();
                check_aligned(g.as_ptr(), align);
                // SAFETY: the first `size` bytes were copied.
                assert!(unsafe { std::slice::from_raw_parts(g.as_ptr(), size) }
                    .iter()
                    .all(|&x| x == 0xc3));
                let small = Layout::from_size_align(size / 2, align).unwrap();
                // SAFETY: `g` is live with `big`; `small` is not larger.
                let s = unsafe { (&arena).shrink(g, big, small) }
                    .unwrap()
                    .cast::<u8>();
                check_aligned(s.as_ptr(), align);
                // SAFETY: the first `size / 2` bytes were kept.
                assert!(unsafe { std::slice::from_raw_parts(s.as_ptr(), size / 2) }
                    .iter()
                    .all(|&x| x == 0xc3));
                // SAFETY: live with `small`.
                unsafe { (&arena).deallocate(s, small) };
            } else {
                // SAFETY: live with `layout`.
                unsafe { (&arena).deallocate(p, layout) };
            }
        }
    }
}

#[test]
fn growing_to_a_larger_alignment_moves_the_block() {
    let _g = serial();
    let arena = Arena::new();
    let old = Layout::from_size_align(100, 8).unwrap();
    let p = (&arena).allocate(old).unwrap().cast::<u8>();
    // SAFETY: 100 writable bytes.
    unsafe {
        p.as_ptr()
            .copy_from_nonoverlapping([7u8; 100].as_ptr(), 100)
    };
    let (mut cur, mut cur_layout) = (p, old);
    for (i, shift) in [6, 12, 16, 22].into_iter().enumerate() {
        let new = Layout::from_size_align(200 + 100 * i, 1 << shift).unwrap();
        // SAFETY: `cur` is live with `cur_layout`, which is no larger than `new`.
        let q = unsafe { (&arena).grow(cur, cur_layout, new) }
            .unwrap()
            .cast::<u8>();
        check_aligned(q.as_ptr(), 1 << shift);
        // SAFETY: the first 100 bytes were carried along.
        assert_eq!(
            unsafe { std::slice::from_raw_parts(q.as_ptr(), 100) },
            [7u8; 100]
        );
        (cur, cur_layout) = (q, new);
    }
    // Back down to the plain alignment.
    // SAFETY: `cur` is live with `cur_layout`; `old` is smaller, its alignment smaller.
    let back = unsafe { (&arena).shrink(cur, cur_layout, old) }
        .unwrap()
        .cast::<u8>();
    // SAFETY: 100 bytes kept.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(back.as_ptr(), 100) },
        [7u8; 100]
    );
    // SAFETY: live with `old`.
    unsafe { (&arena).deallocate(back, old) };
}

#[test]
fn zeroed_allocation_and_growth() {
    let _g = serial();
    let arena = Arena::new();
    for size in [8usize, 100, 1000, 20_000, 300_000, 2 << 20] {
        let layout = Layout::from_size_align(size, 16).unwrap();
        // Dirty a block, free it, and ask for zeroed memory of the same size: the reused
        // block must be cleared.
        for _ in 0..4 {
            let p = (&arena).allocate(layout).unwrap().cast::<u8>();
            // SAFETY: `size` writable bytes.
            unsafe { p.as_ptr().write_bytes(0xff, size) };
            // SAFETY: live with `layout`.
            unsafe { (&arena).deallocate(p, layout) };
            let z = (&arena).allocate_zeroed(layout).unwrap().cast::<u8>();
            // SAFETY: `size` readable bytes.
            let bytes = unsafe { std::slice::from_raw_parts(z.as_ptr(), size) };
            assert!(bytes.iter().all(|&x| x == 0), "size {size}: not zeroed");
            // SAFETY: live with `layout`.
            unsafe { (&arena).deallocate(z, layout) };
        }
        // grow_zeroed keeps the old bytes and zeroes the rest, even over dirty memory.
        let p = (&arena).allocate(layout).unwrap().cast::<u8>();
        // SAFETY: `size` writable bytes.
        unsafe { p.as_ptr().write_bytes(0xaa, size) };
        let junk = (&arena).allocate(Layout::array::<u8>(size * 3).unwrap());
        let junk = junk.unwrap().cast::<u8>();
        // SAFETY: `3 * size` writable bytes; freed right after.
        unsafe {
            junk.as_ptr().write_bytes(0xee, size * 3);
            (&arena).deallocate(junk, Layout::array::<u8>(size * 3).unwrap());
        }
        let bigger = Layout::from_size_align(size * 3, 16).unwrap();
        // SAFETY: `p` is live with `layout`.
        let g = unsafe { (&arena).grow_zeroed(p, layout, bigger) }
            .unwrap()
            .cast::<u8>();
        // SAFETY: `3 * size` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(g.as_ptr(), size * 3) };
        assert!(bytes[..size].iter().all(|&x| x == 0xaa));
        assert!(
            bytes[size..].iter().all(|&x| x == 0),
            "size {size}: tail not zeroed"
        );
    }
}

#[test]
fn impossible_requests_fail_with_alloc_error() {
    let _g = serial();
    let arena = Arena::new();
    // Alignment past MAX_ALIGN (1 GiB).
    let layout = Layout::from_size_align(64, 1 << 31).unwrap();
    assert_eq!((&arena).allocate(layout), Err(AllocError));
    // More than the address space.
    let layout = Layout::from_size_align(1 << 62, 16).unwrap();
    assert_eq!((&arena).allocate(layout), Err(AllocError));
    assert!(arena.alloc(layout).is_none());
    let mut v: Vec<u8, &Arena> = Vec::new_in(&arena);
    assert!(v.try_reserve(1 << 62).is_err());
    // A failed grow leaves the block as it was.
    let small = Layout::from_size_align(32, 16).unwrap();
    let p = (&arena).allocate(small).unwrap().cast::<u8>();
    // SAFETY: 32 writable bytes.
    unsafe { p.as_ptr().write_bytes(9, 32) };
    // SAFETY: `p` is live with `small`.
    assert_eq!(unsafe { (&arena).grow(p, small, layout) }, Err(AllocError));
    // SAFETY: still live, unchanged.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(p.as_ptr(), 32) },
        [9u8; 32]
    );
    // The arena still works.
    v.extend_from_slice(b"still fine");
    assert_eq!(&v[..], b"still fine");
}

#[test]
fn zero_sized_requests_get_a_usable_pointer() {
    let _g = serial();
    let arena = Arena::new();
    let layout = Layout::from_size_align(0, 1).unwrap();
    let a = (&arena).allocate(layout).unwrap();
    let b = (&arena).allocate(layout).unwrap();
    assert_eq!(a.len(), 0);
    assert_ne!(a.cast::<u8>(), b.cast::<u8>());
    // SAFETY: both live with `layout`.
    unsafe {
        (&arena).deallocate(a.cast(), layout);
        (&arena).deallocate(b.cast(), layout);
    }
}

#[test]
fn the_arena_moves_between_threads() {
    let _g = serial();
    let arena = Arena::new();
    let first: NonNull<u8> = {
        let mut v: Vec<u32, &Arena> = Vec::new_in(&arena);
        v.extend(0..1000);
        let p = NonNull::new(v.as_mut_ptr().cast::<u8>()).unwrap();
        std::mem::forget(v);
        p
    };
    let addr = first.as_ptr() as usize;
    let arena = std::thread::spawn(move || {
        // The block allocated on the other thread is still there, and this thread can
        // allocate and free in the same heap.
        // SAFETY: the forgotten Vec's buffer: 1000 live u32.
        let old = unsafe { std::slice::from_raw_parts(addr as *const u32, 1000) };
        assert!(old.iter().enumerate().all(|(i, &x)| x == i as u32));
        let mut v: Vec<u64, &Arena> = Vec::new_in(&arena);
        v.extend(0..10_000u64);
        assert_eq!(v.iter().sum::<u64>(), 9_999 * 10_000 / 2);
        drop(v);
        arena
    })
    .join()
    .unwrap();
    drop(arena);
}

#[test]
fn raw_alloc_and_realloc() {
    let _g = serial();
    let arena = Arena::new();
    let layout = Layout::from_size_align(48, 16).unwrap();
    let p = arena.alloc(layout).unwrap();
    check_aligned(p.as_ptr(), 16);
    // SAFETY: 48 writable bytes.
    unsafe { p.as_ptr().write_bytes(1, 48) };
    let bigger = Layout::from_size_align(100_000, 16).unwrap();
    // SAFETY: `p` is live with `layout`.
    let q = unsafe { arena.realloc(p, layout, bigger) }.unwrap();
    // SAFETY: 48 bytes were copied.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(q.as_ptr(), 48) },
        [1u8; 48]
    );
    let z = arena.alloc_zeroed(bigger).unwrap();
    // SAFETY: 100_000 readable bytes.
    assert!(unsafe { std::slice::from_raw_parts(z.as_ptr(), 100_000) }
        .iter()
        .all(|&x| x == 0));
    // SAFETY: both live.
    unsafe {
        arena.dealloc(q);
        arena.dealloc(z);
    }
}

/// The standard library's `Vec` and `Box` in an arena, through `core::alloc::Allocator`.
#[cfg(feature = "nightly")]
#[test]
fn nightly_std_collections_in_the_arena() {
    let _g = serial();
    #[repr(align(256))]
    struct Wide(u64);

    let before = selected::stats().allocated;
    let arena = Arena::new();
    let mut v: std::vec::Vec<u64, &Arena> = std::vec::Vec::new_in(&arena);
    v.extend(0..200_000u64);
    assert_eq!(v.iter().sum::<u64>(), 199_999 * 200_000 / 2);
    let b = std::boxed::Box::new_in(Wide(42), &arena);
    check_aligned(&*b, 256);
    assert_eq!(b.0, 42);
    let mut w: std::vec::Vec<Wide, &Arena> = std::vec::Vec::new_in(&arena);
    for i in 0..5000 {
        w.push(Wide(i));
        check_aligned(w.as_ptr(), 256);
    }
    assert!(selected::stats().allocated >= before + (1 << 20));
    std::mem::forget(v);
    std::mem::forget(b);
    std::mem::forget(w);
    drop(arena);
    assert!(selected::stats().allocated <= before + (256 << 10));
}
