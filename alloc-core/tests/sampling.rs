//! Sampled allocations through the core: profiled blocks live in sample segments (or are
//! large blocks), are recorded and forgotten exactly once, keep their contents and sizes, and
//! misuse of them is reported as for any block. Guarded samples reach the guard hook.

mod common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use alloc_core::{Allocator, Heap, SampleHooks};
use common::StdSource;

/// A recorded sample: address, size, alignment.
type Sample = (usize, usize, usize);
/// Live records by token.
static LIVE: Mutex<Option<HashMap<usize, Sample>>> = Mutex::new(None);
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);
static RECORDED: AtomicUsize = AtomicUsize::new(0);
static FORGOTTEN: AtomicUsize = AtomicUsize::new(0);
static GUARD_CALLS: AtomicUsize = AtomicUsize::new(0);

fn record(ptr: *mut u8, size: usize, align: usize) -> usize {
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    RECORDED.fetch_add(1, Ordering::Relaxed);
    LIVE.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(token, (ptr as usize, size, align));
    token
}

fn forget(token: usize) {
    FORGOTTEN.fetch_add(1, Ordering::Relaxed);
    let gone = LIVE.lock().unwrap().as_mut().unwrap().remove(&token);
    assert!(
        gone.is_some(),
        "token {token} forgotten twice or never recorded"
    );
}

fn guarded(_size: usize, _align: usize, _zero: bool) -> *mut u8 {
    GUARD_CALLS.fetch_add(1, Ordering::Relaxed);
    std::ptr::null_mut()
}

static HOOKS: SampleHooks = SampleHooks {
    record,
    forget,
    guarded: Some(guarded),
};

/// Tests share the counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn live_addresses() -> Vec<usize> {
    LIVE.lock()
        .unwrap()
        .as_ref()
        .map_or(Vec::new(), |m| m.values().map(|v| v.0).collect())
}

fn allocator(
    interval: u64,
    guard_every: u64,
) -> (&'static Allocator<&'static StdSource>, *mut Heap) {
    let source: &'static StdSource = Box::leak(Box::new(StdSource::new()));
    let alloc: &'static Allocator<&'static StdSource> = Box::leak(Box::new(Allocator::new(source)));
    alloc.set_profile_interval(interval);
    alloc.set_guard_every(guard_every);
    alloc.set_sample_hooks(&HOOKS);
    let heap = alloc.new_heap();
    assert!(!heap.is_null());
    (alloc, heap)
}

const ROUNDS: usize = if cfg!(miri) { 40 } else { 60_000 };

#[test]
fn profiled_blocks_are_recorded_once_and_keep_contents() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (alloc, heap) = allocator(4096, 0);
    let before = RECORDED.load(Ordering::Relaxed);
    let forgotten_before = FORGOTTEN.load(Ordering::Relaxed);
    let mut blocks = Vec::new();
    // Expected samples: each allocation holds at least one sample point with probability
    // 1 - exp(-block_size / interval).
    let mut expected = 0f64;
    let mut rng = 1u64;
    for i in 0..ROUNDS {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = 1 + (rng >> 40) as usize % 2000;
        // SAFETY: a live heap of this thread; blocks are written within their size.
        unsafe {
            let p = alloc.malloc(heap, size);
            assert!(!p.is_null());
            assert!(alloc.usable_size(p) >= size);
            p.write_bytes(i as u8, size);
            blocks.push((p, size, i as u8));
        }
        let block = alloc_core::size_class::class_size(alloc_core::size_class::class_of(size));
        expected += 1.0 - (-(block as f64) / 4096.0).exp();
    }
    let recorded = RECORDED.load(Ordering::Relaxed) - before;
    let live = live_addresses();
    for (p, size, _) in &blocks {
        if live.contains(&(*p as usize)) {
            // A profiled block sits at the start of a 64 KiB slot.
            assert_eq!(*p as usize % 65536, 0);
            assert!(*size <= 2000);
        }
    }
    assert!(
        (recorded as f64 - expected).abs() < 0.05 * expected + 10.0,
        "{recorded} samples, expected about {expected}"
    );
    for (p, size, fill) in blocks {
        // SAFETY: live blocks written above.
        unsafe {
            assert!(
                (0..size).all(|j| *p.add(j) == fill),
                "contents of {p:?} changed"
            );
            alloc.free(heap, p);
        }
    }
    assert_eq!(
        FORGOTTEN.load(Ordering::Relaxed) - forgotten_before,
        recorded
    );
}

#[test]
fn every_allocation_sampled_at_interval_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (alloc, heap) = allocator(1, 0);
    let before = RECORDED.load(Ordering::Relaxed);
    let n = if cfg!(miri) { 20 } else { 500 };
    let mut blocks = Vec::new();
    // SAFETY: a live heap of this thread.
    unsafe {
        for i in 0..n {
            let p = alloc.malloc(heap, 16 + i % 100);
            assert_eq!(p as usize % 65536, 0, "allocation {i} not sampled");
            blocks.push(p);
        }
        // calloc of a recycled slot is zeroed; an aligned request keeps its alignment.
        for p in blocks.drain(..) {
            p.write_bytes(0xee, 16);
            alloc.free(heap, p);
        }
        let z = alloc.zalloc(heap, 100);
        assert!((0..100).all(|j| *z.add(j) == 0));
        let a = alloc.malloc_aligned(heap, 200, 128, false);
        assert_eq!(a as usize % 128, 0);
        // realloc moves a sampled block and keeps its contents.
        z.write_bytes(7, 100);
        let r = alloc.realloc(heap, z, 5000, 16);
        assert!((0..100).all(|j| *r.add(j) == 7));
        alloc.free(heap, r);
        alloc.free(heap, a);
        // A large block is sampled directly, its record forgotten when freed.
        let big = alloc.malloc(heap, 3 << 20);
        assert!(live_addresses().contains(&(big as usize)));
        alloc.free(heap, big);
        assert!(!live_addresses().contains(&(big as usize)));
    }
    assert!(RECORDED.load(Ordering::Relaxed) - before >= n + 4);
}

fn expect_report(want: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("misuse was not detected");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains(want), "report {msg:?} lacks {want:?}");
}

#[test]
fn misuse_of_sampled_blocks_is_reported() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (alloc, heap) = allocator(1, 0);
    // SAFETY: the second free and the interior free are the misuse under test.
    unsafe {
        let p = alloc.malloc(heap, 40);
        assert_eq!(p as usize % 65536, 0);
        expect_report("invalid pointer", || alloc.free(heap, p.add(16)));
        alloc.free(heap, p);
        let want = format!("free(): double free of {:#x}", p as usize);
        expect_report(&want, || alloc.free(heap, p));
        expect_report("pointer already freed", || {
            alloc.usable_size(p);
        });
    }
}

#[test]
fn guard_samples_reach_the_guard_hook() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (alloc, heap) = allocator(0, 10);
    let before = GUARD_CALLS.load(Ordering::Relaxed);
    let n = if cfg!(miri) { 2000 } else { 100_000 };
    let mut blocks = Vec::with_capacity(n);
    // SAFETY: a live heap of this thread; the hook declines, so blocks are ordinary.
    unsafe {
        for _ in 0..n {
            let p = alloc.malloc(heap, 48);
            assert!(!p.is_null());
            blocks.push(p);
        }
        for p in blocks {
            alloc.free(heap, p);
        }
    }
    let calls = GUARD_CALLS.load(Ordering::Relaxed) - before;
    // One in 10 within 5% natively (100,000 allocations: a standard deviation of 0.6%) and
    // 20% under Miri (2,000: 3.9%). A declined sample used to be counted twice (rate 1 in 9)
    // and a re-held batch dropped uncounted (22% fewer under Miri's short run).
    let tolerance = if cfg!(miri) { 20 } else { 5 };
    let lo = n / 10 * (100 - tolerance) / 100;
    let hi = n / 10 * (100 + tolerance) / 100 + 2;
    assert!(
        (lo..hi).contains(&calls),
        "{calls} guard calls for {n} allocations"
    );
}

#[test]
fn arenas_are_not_sampled() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (alloc, _) = allocator(1, 0);
    let before = RECORDED.load(Ordering::Relaxed);
    let arena = alloc.new_arena_heap();
    // SAFETY: the arena heap is ours; its blocks die with it.
    unsafe {
        for i in 0..50 {
            let p = alloc.malloc(arena, 16 + i);
            assert!(!p.is_null());
        }
        alloc.destroy_heap(arena);
    }
    assert_eq!(RECORDED.load(Ordering::Relaxed), before);
}
