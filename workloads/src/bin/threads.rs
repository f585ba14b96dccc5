//! Thread-count sweep for whatever malloc the process has (`cargo xtask threads` runs it
//! with pagebreak and with mimalloc preloaded). For each thread count the same total work,
//! split evenly: each operation mallocs a block (16 B - 1 KiB, 1 in 200 of 16-256 KiB),
//! writes it, and puts it either in the thread's own ring of 1,000 blocks or in a shared
//! table of 4,096 slots; the block it displaces is freed (from the shared table: usually
//! another thread's block, a remote free). One malloc in 16 is timed on its own into a
//! histogram (hdrhistogram, nanoseconds), so the tail under contention shows.
//!
//! usage: threads [--ops TOTAL] [--counts 1,2,8,32,128]
//! prints one line per count: `threads=N ops_per_s=X p50_ns=.. p99_ns=.. p999_ns=.. max_ns=..`

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use hdrhistogram::Histogram;
use workloads::Rng;

const SHARED_SLOTS: usize = 4096;
const RING: usize = 1000;

static SHARED: [AtomicPtr<u8>; SHARED_SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SHARED_SLOTS];

fn size(rng: &mut Rng) -> usize {
    if rng.below(200) == 0 {
        rng.log_uniform(16 << 10, 256 << 10)
    } else {
        rng.log_uniform(16, 1024)
    }
}

fn worker(seed: u64, ops: u64, start: &Barrier) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut rng = Rng::new(seed);
    let mut ring = vec![std::ptr::null_mut::<u8>(); RING];
    start.wait();
    for i in 0..ops {
        let n = size(&mut rng);
        let p = if i % 16 == 0 {
            let t = Instant::now();
            // SAFETY: plain malloc.
            let p = unsafe { libc::malloc(n) };
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            p
        } else {
            // SAFETY: plain malloc.
            unsafe { libc::malloc(n) }
        }
        .cast::<u8>();
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds at least n >= 16 bytes.
        unsafe {
            p.write(i as u8);
            p.add(n - 1).write(i as u8);
        }
        let old = if rng.below(2) == 0 {
            SHARED[rng.below(SHARED_SLOTS as u64) as usize].swap(p, Ordering::AcqRel)
        } else {
            std::mem::replace(&mut ring[rng.below(RING as u64) as usize], p)
        };
        // SAFETY: every displaced pointer came from malloc above and is freed once.
        unsafe { libc::free(old.cast()) };
    }
    for p in ring {
        // SAFETY: as above.
        unsafe { libc::free(p.cast()) };
    }
    hist
}

fn main() {
    let mut total: u64 = 8_000_000;
    let mut counts = vec![1usize, 2, 8, 32, 128];
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--ops", Some(v)) => total = v.parse().expect("--ops N"),
            ("--counts", Some(v)) => {
                counts = v
                    .split(',')
                    .map(|c| c.parse().expect("--counts 1,2,8"))
                    .collect()
            }
            _ => {
                eprintln!("usage: threads [--ops TOTAL] [--counts 1,2,8,32,128]");
                std::process::exit(2);
            }
        }
    }
    for &threads in &counts {
        let per = total / threads as u64;
        let start = Arc::new(Barrier::new(threads + 1));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = start.clone();
                std::thread::spawn(move || worker(t as u64 + 1, per, &start))
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        for h in handles {
            hist.add(h.join().unwrap()).unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        for slot in &SHARED {
            // SAFETY: as in worker.
            unsafe { libc::free(slot.swap(std::ptr::null_mut(), Ordering::AcqRel).cast()) };
        }
        println!(
            "threads={threads} ops_per_s={:.0} p50_ns={} p99_ns={} p999_ns={} max_ns={} samples={}",
            (per * threads as u64) as f64 / secs,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max(),
            hist.len()
        );
    }
}
