//! Criterion micro-benchmarks: every allocator called through `GlobalAlloc` in one run.
//!
//! Each criterion group is one case; its bench ids are the allocators, so criterion's output
//! and `target/criterion/<case>/<allocator>/` put them side by side (`cargo xtask bench`
//! turns the medians into ratios to mimalloc).
//!
//! `ALLOC_BENCH_QUICK=1` shortens warm-up and measurement (about 1 minute in all on
//! 2 cores instead of about 4). `ALLOC_BENCH_EXCLUDE=a,b` leaves allocators out.
//! criterion's own command-line options still apply, e.g.
//! `cargo bench -p alloc-bench --bench micro -- churn`.

use std::alloc::System;
use std::time::Duration;

use alloc_bench::{
    churn_parallel, pair, realloc_growth, realloc_growth_steps, zeroed, Churn, ProdConsShared,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use mimalloc::MiMalloc;
use pagebreak::{BrkPageBreak, MmapPageBreak};
use snmalloc_rs::SnMalloc;
use tikv_jemallocator::Jemalloc;

static PB_MMAP: MmapPageBreak = MmapPageBreak;
static PB_BRK: BrkPageBreak = BrkPageBreak;
static GLIBC: System = System;
static MIMALLOC: MiMalloc = MiMalloc;
static JEMALLOC: Jemalloc = Jemalloc;
static SNMALLOC: SnMalloc = SnMalloc;

/// Runs `$body` once per allocator with `$name: &str` and `$a: &'static impl GlobalAlloc`.
/// A macro rather than a loop over `dyn GlobalAlloc`, so each copy is monomorphised and
/// the allocator's fast path can inline into the kernel as it would in a real program.
macro_rules! each_alloc {
    (|$name:ident, $a:ident| $body:block) => {{
        each_alloc!(@one "pagebreak-mmap", PB_MMAP, $name, $a, $body);
        each_alloc!(@one "pagebreak-brk", PB_BRK, $name, $a, $body);
        each_alloc!(@one "glibc", GLIBC, $name, $a, $body);
        each_alloc!(@one "mimalloc-3", MIMALLOC, $name, $a, $body);
        each_alloc!(@one "jemalloc", JEMALLOC, $name, $a, $body);
        each_alloc!(@one "snmalloc", SNMALLOC, $name, $a, $body);
    }};
    (@one $label:literal, $static:ident, $name:ident, $a:ident, $body:block) => {
        if !excluded($label) {
            let ($name, $a) = ($label, &$static);
            $body
        }
    };
}

/// Allocators named in `ALLOC_BENCH_EXCLUDE` (comma-separated) are skipped: xtask sets
/// it to rerun the suite without one that crashed or hung.
fn excluded(name: &str) -> bool {
    std::env::var("ALLOC_BENCH_EXCLUDE").is_ok_and(|v| v.split(',').any(|x| x.trim() == name))
}

const CHURN_LIVE: usize = 10_000;
const CHURN_OPS: u64 = 1000;
const REALLOC_BUFS: usize = 200;
const REALLOC_MAX: usize = 32 * 1024;

fn quick() -> bool {
    std::env::var_os("ALLOC_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty())
}

fn group<'c>(c: &'c mut Criterion, name: &str, elements: u64) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements));
    g
}

fn pairs(c: &mut Criterion) {
    for (label, size) in [
        ("16B", 16),
        ("64B", 64),
        ("256B", 256),
        ("1KiB", 1024),
        ("8KiB", 8 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let mut g = group(c, &format!("malloc_free/{label}"), 1);
        each_alloc!(|name, a| {
            g.bench_function(name, |b| b.iter(|| pair(a, size)));
        });
        g.finish();
    }
}

fn churn(c: &mut Criterion) {
    let mut g = group(c, "churn/8-1024B_10k_live", CHURN_OPS);
    each_alloc!(|name, a| {
        g.bench_function(name, |b| {
            let mut w = Churn::new(a, CHURN_LIVE, 1);
            b.iter(|| w.step(CHURN_OPS));
        });
    });
    g.finish();
}

fn realloc(c: &mut Criterion) {
    let steps = realloc_growth_steps(REALLOC_BUFS, REALLOC_MAX);
    let mut g = group(c, "realloc/grow_200_to_32KiB", steps);
    each_alloc!(|name, a| {
        g.bench_function(name, |b| {
            b.iter(|| realloc_growth(a, REALLOC_BUFS, REALLOC_MAX))
        });
    });
    g.finish();
}

fn zeroed_big(c: &mut Criterion) {
    for (label, size) in [("1MiB", 1 << 20), ("16MiB", 16 << 20)] {
        let mut g = group(c, &format!("alloc_zeroed/{label}"), 1);
        each_alloc!(|name, a| {
            g.bench_function(name, |b| b.iter(|| zeroed(a, size)));
        });
        g.finish();
    }
}

fn producer_consumer(c: &mut Criterion) {
    let mut g = group(c, "producer_consumer/16-256B", 1);
    each_alloc!(|name, a| {
        let shared = ProdConsShared::default();
        std::thread::scope(|s| {
            let mut pc = shared.start(s, a);
            g.bench_function(name, |b| b.iter_custom(|n| pc.run(n)));
            shared.stop();
        });
    });
    g.finish();
}

fn threads(c: &mut Criterion) {
    // Same per-thread work at each count: throughput (elements/s) shows the scaling.
    for t in [1, 2, 4] {
        let mut g = group(c, &format!("churn_threads/{t}"), CHURN_OPS * t as u64);
        each_alloc!(|name, a| {
            g.bench_function(name, |b| {
                b.iter_custom(|n| churn_parallel(a, t, CHURN_LIVE, n * CHURN_OPS))
            });
        });
        g.finish();
    }
}

fn config() -> Criterion {
    let c = Criterion::default().without_plots();
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        c.sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    }
}

criterion_group! {
    name = micro;
    config = config();
    targets = pairs, churn, realloc, zeroed_big, producer_consumer, threads
}
criterion_main!(micro);
