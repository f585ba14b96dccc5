//! Heaps parked at thread exit: the next new heap is the parked one with its blocks (frees of
//! them are local again), parking is bounded, arenas never start from a parked heap, and
//! `trim` retires parked heaps so their memory goes back. Heaps stand for threads here: a
//! heap used by one thread at a time is all the allocator asks.

mod common;

use std::collections::HashSet;

use alloc_core::parking::{MAX_PARKED, PARK_LIMIT_MS};
use alloc_core::{Allocator, Heap};
use common::{check, fill, StdSource};

fn allocator() -> &'static Allocator<&'static StdSource> {
    let source: &'static StdSource = Box::leak(Box::new(StdSource::new()));
    Box::leak(Box::new(Allocator::new(source)))
}

/// `n` blocks of 8..1000 bytes from `heap`, filled with a pattern.
fn blocks(alloc: &Allocator<&StdSource>, heap: *mut Heap, n: usize) -> Vec<(*mut u8, usize)> {
    (0..n)
        .map(|i| {
            let size = 8 + (i * 37) % 992;
            // SAFETY: `heap` is a live heap used by this thread only.
            let p = unsafe { alloc.malloc(heap, size) };
            assert!(!p.is_null());
            fill(p, size, i as u8);
            (p, size)
        })
        .collect()
}

const BLOCKS: usize = if cfg!(miri) { 200 } else { 20_000 };

#[test]
fn a_new_heap_takes_the_parked_one_and_frees_its_blocks_locally() {
    let alloc = allocator();
    let old = alloc.new_heap();
    let live = blocks(alloc, old, BLOCKS);
    // SAFETY: `old` is ours and not used after parking.
    unsafe { alloc.park_heap(old) };
    assert_eq!(alloc.stats().heaps, 0);
    assert_eq!(alloc.stats().abandoned_segments, 0, "parked, not abandoned");

    let new = alloc.new_heap();
    assert_eq!(new, old, "the parked heap is handed out again");
    assert_eq!(alloc.stats().heaps, 1);
    let remote_before = alloc.stats().remote_frees;
    for (i, &(p, size)) in live.iter().enumerate() {
        check(p, size, i as u8);
        // SAFETY: a live block of this allocator; `new` is ours.
        unsafe { alloc.free(new, p) };
    }
    assert_eq!(
        alloc.stats().remote_frees,
        remote_before,
        "the blocks are the new thread's own"
    );
    // SAFETY: ours.
    unsafe {
        alloc.trim(new);
        alloc.retire_heap(new);
    }
    assert_eq!(alloc.stats().allocated, 0);
}

#[test]
fn blocks_freed_while_parked_come_back() {
    let alloc = allocator();
    let old = alloc.new_heap();
    let other = alloc.new_heap();
    // One size: its pages fill up and wait in the full queue, so frees into them while the
    // heap is parked go through the delayed list as well as `thread_free`.
    let live: Vec<*mut u8> = (0..BLOCKS)
        // SAFETY: `old` is ours.
        .map(|_| unsafe { alloc.malloc(old, 48) })
        .collect();
    assert!(live.iter().all(|p| !p.is_null()));
    // SAFETY: `old` is not used after parking.
    unsafe { alloc.park_heap(old) };
    for &p in &live {
        // SAFETY: live blocks; `other` is ours (these are remote frees).
        unsafe { alloc.free(other, p) };
    }
    // SAFETY: ours.
    unsafe { alloc.retire_heap(other) };
    let new = alloc.new_heap();
    assert_eq!(
        new, old,
        "a retired heap is not parked; the parked one is taken"
    );
    // The freed blocks serve again before any new page: no new segment is needed.
    let segments = alloc.stats().segments;
    let again: Vec<*mut u8> = (0..BLOCKS)
        // SAFETY: `new` is ours.
        .map(|_| unsafe { alloc.malloc(new, 48) })
        .collect();
    assert_eq!(alloc.stats().segments, segments);
    let freed: HashSet<*mut u8> = live.iter().copied().collect();
    let distinct: HashSet<*mut u8> = again.iter().copied().collect();
    assert_eq!(distinct.len(), again.len(), "a block handed out twice");
    // All but the never-used rest of the last page (at most 65536 / 48 blocks) are old ones.
    let reused = again.iter().filter(|p| freed.contains(p)).count();
    assert!(
        reused + 65536 / 48 >= BLOCKS,
        "only {reused} of {BLOCKS} freed blocks served again"
    );
    for p in again {
        // SAFETY: live blocks; `new` is ours.
        unsafe { alloc.free(new, p) };
    }
    // SAFETY: ours.
    unsafe { alloc.retire_heap(new) };
}

#[test]
fn parking_is_bounded_and_trim_retires_parked_heaps() {
    let alloc = allocator();
    let heaps: Vec<*mut Heap> = (0..MAX_PARKED + 2).map(|_| alloc.new_heap()).collect();
    let mut live = Vec::new();
    for &h in &heaps {
        live.push((h, blocks(alloc, h, 100)));
    }
    for &h in &heaps {
        // SAFETY: each heap is ours and not used after parking.
        unsafe { alloc.park_heap(h) };
    }
    let stats = alloc.stats();
    assert_eq!(stats.heaps, 0);
    assert_eq!(stats.parked_heaps, MAX_PARKED);
    assert!(
        stats.abandoned_segments >= 2,
        "heaps past MAX_PARKED are retired: {stats:?}"
    );
    // An arena starts empty, never from a parked heap.
    let arena = alloc.new_arena_heap();
    assert_eq!(alloc.stats().parked_heaps, MAX_PARKED);
    // SAFETY: the arena is unused.
    unsafe { alloc.destroy_heap(arena) };

    let heap = alloc.new_heap();
    assert!(heaps.contains(&heap));
    for (_, blocks) in &live {
        for &(p, _) in blocks {
            // SAFETY: live blocks; `heap` is ours.
            unsafe { alloc.free(heap, p) };
        }
    }
    // trim retires the other parked heaps, adopts their segments and gives back what is empty.
    // SAFETY: ours.
    unsafe { alloc.trim(heap) };
    let stats = alloc.stats();
    assert_eq!(stats.abandoned_segments, 0, "{stats:?}");
    assert_eq!(stats.allocated, 0, "{stats:?}");
    assert_eq!(stats.segments, 0, "every segment was empty: {stats:?}");
    assert_eq!(stats.parked_heaps, 0, "{stats:?}");
}

#[test]
#[cfg_attr(miri, ignore)] // sleeps past PARK_LIMIT_MS
fn a_heap_parked_too_long_is_retired_by_the_next_purge_check() {
    let alloc = allocator();
    let old = alloc.new_heap();
    let other = alloc.new_heap();
    let live = blocks(alloc, old, 1000);
    // SAFETY: not used after parking.
    unsafe { alloc.park_heap(old) };
    assert_eq!(alloc.stats().parked_heaps, 1);
    std::thread::sleep(std::time::Duration::from_millis(PARK_LIMIT_MS + 50));
    // Slow paths: fresh pages of many sizes (each first malloc of a size misses the fast
    // path), enough of them to reach a purge check.
    let mut mine = Vec::new();
    for round in 0..64 {
        mine.extend(blocks(alloc, other, 200).into_iter().skip(round % 3));
        if alloc.stats().parked_heaps == 0 {
            break;
        }
    }
    // The parked heap was retired: its segments were abandoned (and maybe adopted since).
    assert_eq!(
        alloc.stats().parked_heaps,
        0,
        "still parked after {PARK_LIMIT_MS} ms"
    );
    for (i, &(p, size)) in live.iter().enumerate() {
        check(p, size, i as u8);
    }
}
