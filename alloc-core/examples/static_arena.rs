//! pagebreak's core with no operating system behind it: every byte comes from a static array
//! (`StaticSource`), as it would in a kernel, firmware or a sandbox. The allocator itself
//! makes no OS call and allocates nothing of its own; `std` is used here only to print.
//!
//! Run with `cargo run -p pagebreak-core --example static_arena`.

use alloc_core::view::SlotState;
use alloc_core::{Allocator, StaticSource, Stats};

/// 32 MiB of zeroed memory in `.bss`, handed out in 4 MiB-aligned spans.
const ARENA_BYTES: usize = 32 << 20;
static SOURCE: StaticSource<ARENA_BYTES> = StaticSource::new();
/// `Allocator::new` is `const`: the whole allocator is a static, with no set-up at run time.
static ALLOC: Allocator<&StaticSource<ARENA_BYTES>> = Allocator::new(&SOURCE);

fn show(when: &str, s: &Stats) {
    println!(
        "{when:<28} allocated {:>9} B   reserved {:>9} B   segments {:>2}   huge blocks {}",
        s.allocated, s.reserved, s.segments, s.huge_count
    );
}

fn main() {
    // A static array has no clock: purge as soon as memory is free (it purges nothing anyway).
    ALLOC.set_purge_delay_ms(0);
    show("start", &ALLOC.stats());

    // A heap is one thread's: its fast paths take no lock.
    let heap = ALLOC.new_heap();
    assert!(!heap.is_null(), "no memory for a heap");

    // 10,000 blocks of assorted sizes, each filled with a pattern.
    let mut blocks = Vec::with_capacity(10_000);
    for i in 0..10_000usize {
        let size = 16 + (i * 37) % 2000;
        // SAFETY: `heap` is this thread's live heap of ALLOC.
        let p = unsafe { ALLOC.malloc(heap, size) };
        assert!(!p.is_null(), "static arena exhausted");
        // SAFETY: `p` holds at least `size` bytes.
        unsafe { p.write_bytes(i as u8, size) };
        blocks.push((p, size, i as u8));
    }
    // One huge block (over 1 MiB: a span of its own), aligned to 64 KiB.
    // SAFETY: as above.
    let huge = unsafe { ALLOC.malloc_aligned(heap, 3 << 20, 64 << 10, true) };
    assert!(!huge.is_null() && huge as usize & ((64 << 10) - 1) == 0);
    show("10,000 blocks + 3 MiB", &ALLOC.stats());
    println!(
        "  source high-water mark: {} KiB",
        SOURCE.high_water() >> 10
    );

    // What the segments look like: pages per size class and how full they are.
    ALLOC.visit_segments(&mut |seg| {
        let pages = seg
            .slots
            .iter()
            .take(seg.slot_count)
            .filter_map(|s| match *s {
                SlotState::Page {
                    block_size, used, ..
                } => Some((block_size, used)),
                _ => None,
            })
            .collect::<Vec<_>>();
        println!(
            "  segment {:#x}: {} pages, {} blocks in use",
            seg.addr,
            pages.len(),
            pages.iter().map(|&(_, used)| used as usize).sum::<usize>()
        );
    });

    // Check every block kept its contents, then free every other one.
    for (k, &(p, size, fill)) in blocks.iter().enumerate() {
        // SAFETY: a live block of `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        assert!(bytes.iter().all(|&b| b == fill), "block {k} damaged");
        if k % 2 == 0 {
            // SAFETY: a live block of ALLOC, freed once.
            unsafe { ALLOC.free(heap, p) };
        }
    }
    // SAFETY: live, freed once.
    unsafe { ALLOC.free(heap, huge) };
    // Frees on the fast path count nothing: small-block counts catch up at each page's next
    // slow-path event, so `allocated` lags here (huge blocks are counted exactly).
    show("half freed, huge freed", &ALLOC.stats());

    // An arena heap: thousands of blocks, then all of them gone at once.
    let arena = ALLOC.new_arena_heap();
    assert!(!arena.is_null());
    for i in 0..50_000usize {
        // SAFETY: `arena` is a live heap used by this thread only.
        let p = unsafe { ALLOC.malloc(arena, 64 + i % 200) };
        assert!(!p.is_null());
    }
    show("+ arena of 50,000 blocks", &ALLOC.stats());
    // SAFETY: no block of the arena is used after this.
    unsafe { ALLOC.destroy_heap(arena) };
    show("arena destroyed", &ALLOC.stats());

    for &(p, _, _) in blocks.iter().skip(1).step_by(2) {
        // SAFETY: the other half, still live, freed once.
        unsafe { ALLOC.free(heap, p) };
    }
    // SAFETY: this thread's heap, not used after.
    unsafe {
        ALLOC.trim(heap);
        ALLOC.retire_heap(heap);
    }
    let end = ALLOC.stats();
    show("all freed, trimmed", &end);
    assert_eq!(end.huge_count, 0);
    println!(
        "peak reserved {} KiB of the {} KiB array",
        end.peak_reserved >> 10,
        ARENA_BYTES >> 10
    );
}
