//! Reference-model test: random malloc/free/realloc/aligned/calloc sequences checked against
//! a shadow model (no overlap, contents survive, alignment, usable size), on two page sources
//! that need no OS: the crate's StaticSource (also what Miri runs) and std-backed spans.

mod common;

use alloc_core::{Allocator, PageSource, StaticSource};
use common::{check, Rng, Shadow, StdSource};

#[cfg(miri)]
const OPS: usize = 600;
#[cfg(not(miri))]
const OPS: usize = 40_000;

fn pick_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=59 => rng.below(256) as usize,
        60..=89 => rng.below(16 << 10) as usize,
        90..=97 => rng.below(200 << 10) as usize,
        _ => (rng.below(if cfg!(miri) { 1 << 20 } else { 6 << 20 })) as usize,
    }
}

fn run_model<S: PageSource>(alloc: &Allocator<S>, seed: u64, ops: usize) {
    let heap = alloc.new_heap();
    assert!(!heap.is_null());
    let mut rng = Rng(seed);
    let mut shadow = Shadow::default();
    let mut order: Vec<usize> = Vec::new();
    for step in 0..ops {
        let op = rng.below(100);
        let seed_byte = step as u8;
        // SAFETY: every pointer passed back came from this allocator and is live in the model.
        unsafe {
            if op < 45 || order.is_empty() {
                let size = pick_size(&mut rng);
                let p = alloc.malloc(heap, size);
                shadow.insert(p, size, 16, alloc.usable_size(p), seed_byte);
                order.push(p as usize);
            } else if op < 55 {
                let size = pick_size(&mut rng);
                let p = alloc.zalloc(heap, size);
                check(p, 0, 0);
                for i in 0..size {
                    assert_eq!(p.add(i).read(), 0, "zalloc({size}) byte {i} not zero");
                }
                shadow.insert(p, size, 16, alloc.usable_size(p), seed_byte);
                order.push(p as usize);
            } else if op < 62 {
                let size = pick_size(&mut rng) / 4;
                let align = 1usize << rng.below(if cfg!(miri) { 17 } else { 24 });
                let p = alloc.malloc_aligned(heap, size, align, false);
                shadow.insert(p, size, align, alloc.usable_size(p), seed_byte);
                order.push(p as usize);
            } else if op < 75 {
                let i = rng.below(order.len() as u64) as usize;
                let p = order.swap_remove(i) as *mut u8;
                let live = shadow.remove(p);
                let size = pick_size(&mut rng);
                let q = alloc.realloc(heap, p, size, live.align);
                assert!(!q.is_null());
                check(q, size.min(live.size), live.seed);
                shadow.insert(q, size, live.align, alloc.usable_size(q), seed_byte);
                order.push(q as usize);
            } else {
                let i = rng.below(order.len() as u64) as usize;
                let p = order.swap_remove(i) as *mut u8;
                shadow.remove(p);
                alloc.free(heap, p);
            }
        }
    }
    for p in order {
        shadow.remove(p as *mut u8);
        // SAFETY: live block of this allocator.
        unsafe { alloc.free(heap, p as *mut u8) };
    }
    let stats = alloc.stats();
    // SAFETY: the heap is ours and unused from now on.
    unsafe { alloc.retire_heap(heap) };
    assert_eq!(stats.large_count, 0);
}

#[test]
fn model_on_static_source() {
    static ARENA: StaticSource<{ 96 << 20 }> = StaticSource::new();
    let alloc = Allocator::new(&ARENA);
    run_model(&alloc, 0x1234_5678, OPS);
}

#[test]
fn model_on_std_source_many_seeds() {
    let seeds: &[u64] = if cfg!(miri) { &[7] } else { &[1, 2, 3, 0xdead_beef] };
    for &seed in seeds {
        let source = StdSource::new();
        let alloc = Allocator::new(&source);
        run_model(&alloc, seed, OPS);
        // Everything freed and trimmed: the cache gives all spans back.
        let heap = alloc.new_heap();
        // SAFETY: fresh heap, ours.
        unsafe {
            alloc.trim(heap);
            alloc.retire_heap(heap);
        }
        let stats = alloc.stats();
        assert_eq!(stats.allocated, 0, "seed {seed}: {stats:?}");
    }
}
