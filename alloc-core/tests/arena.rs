//! Arena heaps: everything they handed out goes away at once, and the memory is reused.

mod common;

use alloc_core::{Allocator, PageSource};
use common::{check, fill, StdSource};

fn arena_round<S: PageSource>(alloc: &Allocator<S>, round: u8) {
    let arena = alloc.new_arena_heap();
    assert!(!arena.is_null());
    // Under Miri no huge block: each is a 3 MiB allocation it must track byte by byte.
    let sizes: &[usize] = if cfg!(miri) {
        &[8, 100, 3000, 20_000, 300 << 10]
    } else {
        &[8, 100, 3000, 20_000, 300 << 10, 3 << 20]
    };
    // Miri interprets every byte written: fewer blocks there.
    let count = if cfg!(miri) { 24 } else { 600 };
    let mut blocks = Vec::new();
    // SAFETY: blocks are used only until the arena is destroyed.
    unsafe {
        for i in 0..count {
            let size = sizes[i % sizes.len()];
            let p = alloc.malloc(arena, size);
            assert!(!p.is_null());
            fill(p, size, round ^ i as u8);
            blocks.push((p, size, round ^ i as u8));
        }
        // Free a third one by one (the arena still allows it).
        for (p, size, seed) in blocks.drain(..count / 3) {
            check(p, size, seed);
            alloc.free(arena, p);
        }
        for &(p, size, seed) in &blocks {
            check(p, size, seed);
        }
        assert!(alloc.stats().allocated > 0);
        alloc.destroy_heap(arena);
    }
    let stats = alloc.stats();
    assert_eq!(stats.allocated, 0, "{stats:?}");
    assert_eq!(stats.huge_count, 0);
    assert_eq!(stats.segments, 0, "arena segments went back to the cache");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; arenas_never_adopt_abandoned_segments covers destroy there"
)]
fn destroy_frees_everything_and_memory_is_reused() {
    let source = StdSource::new();
    let alloc = Allocator::new(&source);
    arena_round(&alloc, 1);
    let first_peak = alloc.stats().peak_reserved;
    for round in 2..if cfg!(miri) { 3 } else { 6 } {
        arena_round(&alloc, round);
    }
    // Later rounds reuse the cached spans instead of asking the source for more.
    assert!(
        alloc.stats().peak_reserved <= first_peak + (8 << 20),
        "{:?}",
        alloc.stats()
    );
}

#[test]
fn segment_views_show_live_pages() {
    use alloc_core::view::SlotState;
    let source = StdSource::new();
    let alloc = Allocator::new(&source);
    let heap = alloc.new_heap();
    let n = if cfg!(miri) { 100 } else { 1000 };
    // SAFETY: blocks stay live until freed below.
    let blocks: Vec<*mut u8> = (0..n)
        .map(|i| unsafe { alloc.malloc(heap, 48 + (i % 3) * 5000) })
        .collect();
    let (mut segments, mut used) = (0, 0usize);
    alloc.visit_segments(&mut |view| {
        segments += 1;
        assert_eq!(view.slots[0], SlotState::Header);
        for slot in &view.slots[..view.slot_count] {
            if let SlotState::Page {
                used: u, reserved, ..
            } = *slot
            {
                assert!(u <= reserved);
                used += u as usize;
            }
        }
    });
    assert!(segments >= 2, "small and medium segments expected");
    assert_eq!(used, n);
    for p in blocks {
        // SAFETY: live block.
        unsafe { alloc.free(heap, p) };
    }
}

#[test]
fn static_source_reused_memory_is_zeroed_by_zalloc() {
    use alloc_core::StaticSource;
    static ARENA: StaticSource<{ 24 << 20 }> = StaticSource::new();
    let alloc = Allocator::new(&ARENA);
    let heap = alloc.new_heap();
    let size = if cfg!(miri) { 1 << 20 } else { 3 << 20 };
    // SAFETY: each block is used only while live.
    unsafe {
        let p = alloc.zalloc(heap, size);
        p.write_bytes(0xff, size);
        alloc.free(heap, p);
        alloc.trim(heap);
        let q = alloc.zalloc(heap, size);
        let step = if cfg!(miri) { 4093 } else { 1 };
        for i in (0..size).step_by(step) {
            assert_eq!(q.add(i).read(), 0, "byte {i} of reused memory not zero");
        }
        alloc.free(heap, q);
    }
}

#[test]
fn out_of_memory_reuses_blocks_of_used_up_pages() {
    use alloc_core::StaticSource;
    // A used-up page with one free block waits for a second before it serves again; when
    // the source has nothing left, that block must still be handed out.
    static ARENA: StaticSource<{ 12 << 20 }> = StaticSource::new();
    let alloc = Allocator::new(&ARENA);
    let heap = alloc.new_heap();
    // SAFETY: blocks are live until freed.
    unsafe {
        let mut blocks = Vec::new();
        loop {
            let p = alloc.malloc(heap, 1024);
            if p.is_null() {
                break;
            }
            blocks.push(p);
        }
        assert!(blocks.len() > 64, "{} blocks", blocks.len());
        // One block of the first (used-up) page: fewer than the two it waits for.
        let freed = blocks[5];
        alloc.free(heap, freed);
        assert_eq!(alloc.malloc(heap, 1024), freed);
        assert!(alloc.malloc(heap, 1024).is_null());
        for p in blocks {
            alloc.free(heap, p);
        }
    }
}

#[test]
fn arenas_never_adopt_abandoned_segments() {
    let source = StdSource::new();
    let alloc = Allocator::new(&source);
    let n = if cfg!(miri) { 50 } else { 2000 };
    // A thread heap leaves live blocks behind when its thread exits (retire = abandon).
    let thread_heap = alloc.new_heap();
    // SAFETY: blocks stay live until freed at the end; heaps are used by this thread only.
    unsafe {
        let kept: Vec<*mut u8> = (0..n).map(|_| alloc.malloc(thread_heap, 64)).collect();
        for (i, &p) in kept.iter().enumerate() {
            fill(p, 64, i as u8);
        }
        alloc.retire_heap(thread_heap);
        assert!(alloc.stats().abandoned_segments > 0);
        // An arena allocating the same class must not take those segments over...
        let arena = alloc.new_arena_heap();
        for _ in 0..n {
            assert!(!alloc.malloc(arena, 64).is_null());
        }
        alloc.destroy_heap(arena);
        // ...or destroying it would have freed the abandoned blocks' memory.
        let heap = alloc.new_heap();
        for (i, &p) in kept.iter().enumerate() {
            check(p, 64, i as u8);
            alloc.free(heap, p);
        }
    }
}
