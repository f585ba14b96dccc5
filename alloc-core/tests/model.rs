//! Reference-model test: random malloc/free/realloc/aligned/calloc sequences checked against
//! a shadow model (no overlap, contents survive, alignment, usable size), on two page sources
//! that need no OS: the crate's StaticSource (also what Miri runs) and std-backed spans.

mod common;

use alloc_core::{Allocator, PageSource, StaticSource};
use common::{check_prefix, PagedSource, Rng, Shadow, StdSource};

#[cfg(miri)]
const OPS: usize = 150;
#[cfg(not(miri))]
const OPS: usize = 40_000;

/// Most requests small, some medium, a few large (up to `max_large`).
fn pick_size(rng: &mut Rng, max_large: u64) -> usize {
    // Miri interprets every byte the model writes: keep its blocks an eighth the size.
    let scale = if cfg!(miri) { 8 } else { 1 };
    let size = match rng.below(100) {
        0..=59 => rng.below(256) as usize,
        60..=89 => rng.below(16 << 10) as usize,
        90..=97 => rng.below(200 << 10) as usize,
        _ => rng.below(max_large) as usize,
    };
    size / scale
}

/// Shape of a model run.
#[derive(Clone, Copy)]
struct Profile {
    ops: usize,
    /// Largest request of the "large" kind.
    max_large: u64,
    /// Alignments go up to 2^(this - 1).
    max_align_shift: u64,
    /// Live blocks above which the model only frees, so the heap stays bounded.
    max_live: usize,
}

fn run_model<S: PageSource>(alloc: &Allocator<S>, seed: u64, profile: &Profile) {
    let Profile {
        ops,
        max_large,
        max_align_shift,
        max_live,
    } = *profile;
    let heap = alloc.new_heap();
    assert!(!heap.is_null());
    let mut rng = Rng(seed);
    let mut shadow = Shadow::default();
    let mut order: Vec<*mut u8> = Vec::new();
    for step in 0..ops {
        let op = rng.below(100);
        let seed_byte = step as u8;
        // SAFETY: every pointer passed back came from this allocator and is live in the model.
        unsafe {
            if order.len() > max_live && op < 62 {
                let p = order.swap_remove(0);
                shadow.remove(p);
                alloc.free(heap, p);
            } else if op < 45 || order.is_empty() {
                let size = pick_size(&mut rng, max_large);
                let p = alloc.malloc(heap, size);
                shadow.insert(p, size, 16, alloc.usable_size(p), seed_byte);
                order.push(p);
            } else if op < 55 {
                let size = pick_size(&mut rng, max_large);
                let p = alloc.zalloc(heap, size);
                let step = if cfg!(miri) { 61 } else { 1 };
                for i in (0..size).step_by(step) {
                    assert_eq!(p.add(i).read(), 0, "zalloc({size}) byte {i} not zero");
                }
                shadow.insert(p, size, 16, alloc.usable_size(p), seed_byte);
                order.push(p);
            } else if op < 62 {
                let size = pick_size(&mut rng, max_large) / 4;
                let align = 1usize << rng.below(max_align_shift);
                let p = alloc.malloc_aligned(heap, size, align, false);
                shadow.insert(p, size, align, alloc.usable_size(p), seed_byte);
                order.push(p);
            } else if op < 75 {
                let i = rng.below(order.len() as u64) as usize;
                let p = order.swap_remove(i);
                let live = shadow.remove(p);
                let size = pick_size(&mut rng, max_large);
                let q = alloc.realloc(heap, p, size, live.align);
                assert!(
                    !q.is_null(),
                    "realloc({size}) failed at step {step}: {:?}",
                    {
                        let mut s = alloc.stats();
                        s.class_live = [0; alloc_core::size_class::NUM_CLASSES];
                        s
                    }
                );
                check_prefix(q, size.min(live.size), live.size, live.seed);
                shadow.insert(q, size, live.align, alloc.usable_size(q), seed_byte);
                order.push(q);
            } else {
                let i = rng.below(order.len() as u64) as usize;
                let p = order.swap_remove(i);
                shadow.remove(p);
                alloc.free(heap, p);
            }
        }
    }
    for p in order {
        shadow.remove(p);
        // SAFETY: live block of this allocator.
        unsafe { alloc.free(heap, p) };
    }
    let stats = alloc.stats();
    // SAFETY: the heap is ours and unused from now on.
    unsafe { alloc.retire_heap(heap) };
    assert_eq!(stats.huge_count, 0);
}

#[test]
fn model_on_static_source() {
    const ARENA_BYTES: usize = if cfg!(miri) { 32 << 20 } else { 256 << 20 };
    static ARENA: StaticSource<ARENA_BYTES> = StaticSource::new();
    let alloc = Allocator::new(&ARENA);
    // Every large block takes a whole segment of the arena: keep few alive.
    let profile = Profile {
        ops: OPS,
        max_large: 512 << 10,
        max_align_shift: 18,
        max_live: 300,
    };
    run_model(&alloc, 0x1234_5678, &profile);
}

#[test]
fn model_on_std_source_many_seeds() {
    let seeds: &[u64] = if cfg!(miri) {
        &[7]
    } else {
        &[1, 2, 3, 0xdead_beef]
    };
    for &seed in seeds {
        let source = StdSource::new();
        let alloc = Allocator::new(&source);
        let profile = Profile {
            ops: OPS,
            max_large: 6 << 20,
            max_align_shift: 24,
            max_live: 1500,
        };
        run_model(&alloc, seed, &profile);
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

/// 16 KiB and 64 KiB pages (aarch64 kernels): the same model, on a source that reports them
/// and records any size, alignment or address that is not a whole number of its pages.
#[test]
fn model_on_large_pages() {
    let seeds: &[u64] = if cfg!(miri) { &[11] } else { &[5] };
    let pages: &[usize] = if cfg!(miri) {
        &[16 << 10]
    } else {
        &[16 << 10, 64 << 10]
    };
    for &page in pages {
        for &seed in seeds {
            let source = PagedSource::new(page);
            let alloc = Allocator::new(&source);
            let profile = Profile {
                ops: OPS,
                max_large: 6 << 20,
                max_align_shift: 24,
                max_live: 1500,
            };
            run_model(&alloc, seed, &profile);
            let heap = alloc.new_heap();
            // SAFETY: fresh heap, ours.
            unsafe {
                alloc.trim(heap);
                alloc.retire_heap(heap);
            }
            assert_eq!(alloc.stats().allocated, 0, "page {page}, seed {seed}");
            let bad = source.violations();
            assert!(
                bad.is_empty(),
                "page {page}, seed {seed}: {} calls off the page grid, first: {}",
                bad.len(),
                bad[0]
            );
        }
    }
}
