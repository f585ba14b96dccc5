//! Allocation kernels for the criterion micro-benchmarks (`benches/micro.rs`).
//!
//! Every kernel is generic over [`GlobalAlloc`], so each allocator runs the very same code,
//! monomorphised: no dynamic call in the measured loop. The bench process itself keeps
//! glibc's malloc (alloc-ffi is built without `c-api`), so `System` really is glibc.
//!
//! The kernels never assert on time; they only check that the allocator returned memory.

use std::alloc::{handle_alloc_error, GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Deterministic xorshift64* so every allocator sees the same request sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point; any other seed works.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (multiply-shift: no division in the hot loop).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// Alignment of the small-block kernels: what a C `malloc` caller gets.
pub const ALIGN: usize = 16;

#[inline]
fn layout(size: usize) -> Layout {
    // ALIGN is a power of two and sizes stay far below isize::MAX.
    Layout::from_size_align(size, ALIGN).unwrap()
}

#[inline]
unsafe fn alloc_or_die<A: GlobalAlloc>(a: &A, l: Layout) -> *mut u8 {
    let p = a.alloc(l);
    if p.is_null() {
        handle_alloc_error(l);
    }
    p
}

/// One `alloc` + `dealloc` of `size` bytes, touching the first byte.
#[inline]
pub fn pair<A: GlobalAlloc>(a: &A, size: usize) {
    let l = layout(size);
    unsafe {
        let p = alloc_or_die(a, l);
        // black_box: without it LLVM may delete a malloc/free pair it can see through.
        black_box(p).write(1);
        a.dealloc(p, l);
    }
}

/// Sizes of the churn working set.
pub const CHURN_MIN: usize = 8;
pub const CHURN_MAX: usize = 1024;

/// A working set of live blocks of random sizes; each step frees one at random and
/// allocates a replacement. This is the steady state of most programs.
pub struct Churn<'a, A: GlobalAlloc> {
    a: &'a A,
    slots: Vec<(*mut u8, usize)>,
    rng: Rng,
}

impl<'a, A: GlobalAlloc> Churn<'a, A> {
    pub fn new(a: &'a A, live: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let slots = (0..live)
            .map(|_| {
                let n = rng.range(CHURN_MIN, CHURN_MAX);
                (unsafe { Self::fresh(a, n) }, n)
            })
            .collect();
        Churn { a, slots, rng }
    }

    #[inline]
    unsafe fn fresh(a: &A, n: usize) -> *mut u8 {
        let p = alloc_or_die(a, layout(n));
        p.write(n as u8);
        p.add(n - 1).write(n as u8);
        p
    }

    /// `ops` replacements.
    #[inline]
    pub fn step(&mut self, ops: u64) {
        for _ in 0..ops {
            let i = self.rng.below(self.slots.len());
            let n = self.rng.range(CHURN_MIN, CHURN_MAX);
            let (old, old_n) = self.slots[i];
            unsafe {
                self.a.dealloc(old, layout(old_n));
                self.slots[i] = (Self::fresh(self.a, n), n);
            }
        }
    }

    /// Whether every live block still holds the bytes written into it (for tests).
    pub fn intact(&self) -> bool {
        self.slots
            .iter()
            .all(|&(p, n)| unsafe { *p == n as u8 && *p.add(n - 1) == n as u8 })
    }
}

impl<A: GlobalAlloc> Drop for Churn<'_, A> {
    fn drop(&mut self) {
        for &(p, n) in &self.slots {
            unsafe { self.a.dealloc(p, layout(n)) };
        }
    }
}

/// Runs the churn on `threads` threads at once, each with its own working set of `live`
/// blocks and `ops` replacements, and returns the time from the moment all are ready until
/// the last one is done. Setup and teardown (including thread start and exit) are not timed.
pub fn churn_parallel<A: GlobalAlloc + Sync>(
    a: &A,
    threads: usize,
    live: usize,
    ops: u64,
) -> Duration {
    let start = Barrier::new(threads + 1);
    let end = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (start, end) = (&start, &end);
            s.spawn(move || {
                let mut c = Churn::new(a, live, 1 + t as u64);
                start.wait();
                c.step(ops);
                end.wait();
            });
        }
        start.wait();
        let t0 = Instant::now();
        end.wait();
        t0.elapsed()
    })
}

/// Number of `realloc` calls one [`realloc_growth`] makes.
pub fn realloc_growth_steps(bufs: usize, max: usize) -> u64 {
    let mut n = 16;
    let mut steps = 0;
    while n < max {
        n = grow(n, max);
        steps += 1;
    }
    steps * bufs as u64
}

#[inline]
fn grow(n: usize, max: usize) -> usize {
    (n + n / 4 + 16).min(max)
}

/// Grows `bufs` buffers from 16 bytes to `max` by 25% steps, round-robin (so a buffer's
/// neighbour is usually live and growing in place is not free), then frees them.
/// Returns a checksum of the preserved bytes so the copies cannot be optimised away.
pub fn realloc_growth<A: GlobalAlloc>(a: &A, bufs: usize, max: usize) -> u64 {
    let mut v: Vec<(*mut u8, usize)> = (0..bufs)
        .map(|i| unsafe {
            let p = alloc_or_die(a, layout(16));
            p.write(i as u8);
            (p, 16)
        })
        .collect();
    let mut sum = 0u64;
    loop {
        let mut grew = false;
        for (p, n) in v.iter_mut() {
            if *n >= max {
                continue;
            }
            let m = grow(*n, max);
            unsafe {
                let q = a.realloc(*p, layout(*n), m);
                if q.is_null() {
                    handle_alloc_error(layout(m));
                }
                q.add(m - 1).write(m as u8);
                sum = sum.wrapping_add(*q as u64);
                *p = q;
            }
            *n = m;
            grew = true;
        }
        if !grew {
            break;
        }
    }
    for (p, n) in v {
        unsafe { a.dealloc(p, layout(n)) };
    }
    sum
}

/// `alloc_zeroed` of `size` bytes, then what a caller does next: read and write every page.
/// Allocators that know fresh pages are zero skip the memset but pay the page faults;
/// the ones that recycle memory pay the memset. Returns false if a byte was not zero.
pub fn zeroed<A: GlobalAlloc>(a: &A, size: usize) -> bool {
    let l = Layout::from_size_align(size, 4096).unwrap();
    let mut ok = true;
    unsafe {
        let p = a.alloc_zeroed(l);
        if p.is_null() {
            handle_alloc_error(l);
        }
        for off in (0..size).step_by(4096) {
            let q = p.add(off);
            ok &= q.read() == 0;
            q.write(1);
        }
        a.dealloc(p, l);
    }
    ok
}

/// A bounded single-producer single-consumer ring of block addresses, so the
/// producer/consumer bench measures the allocator and not a channel's own allocations.
pub struct Ring {
    slots: Box<[AtomicUsize]>,
    head: AtomicUsize,
    tail: AtomicUsize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        assert!(cap.is_power_of_two());
        Ring {
            slots: (0..cap).map(|_| AtomicUsize::new(0)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Producer side. When the ring is full it waits until the consumer has emptied half
    /// of it: without that, a consumer slower than the producer makes the two hand over
    /// one slot at a time and the bench measures `sched_yield`, not the allocator.
    pub fn push(&self, v: usize) {
        let h = self.head.load(Ordering::Relaxed);
        let cap = self.slots.len();
        if h.wrapping_sub(self.tail.load(Ordering::Acquire)) == cap {
            let mut spins = 0;
            while h.wrapping_sub(self.tail.load(Ordering::Acquire)) > cap / 2 {
                backoff(&mut spins);
            }
        }
        self.slots[h & (self.slots.len() - 1)].store(v, Ordering::Relaxed);
        self.head.store(h.wrapping_add(1), Ordering::Release);
    }

    /// Consumer side.
    pub fn pop(&self) -> Option<usize> {
        let t = self.tail.load(Ordering::Relaxed);
        if t == self.head.load(Ordering::Acquire) {
            return None;
        }
        let v = self.slots[t & (self.slots.len() - 1)].load(Ordering::Relaxed);
        self.tail.store(t.wrapping_add(1), Ordering::Release);
        Some(v)
    }
}

/// Spin briefly (the other side is usually running on the other core), then yield
/// (on a busy 2-core machine it may not be, and spinning would only delay it).
#[inline]
fn backoff(spins: &mut u32) {
    if *spins < 100 {
        *spins += 1;
        for _ in 0..1 << (*spins).min(6) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// Sizes of the producer/consumer blocks.
pub const PC_MIN: usize = 16;
pub const PC_MAX: usize = 256;

/// Producer/consumer: the calling thread allocates, a second thread frees.
/// Create once per allocator, call [`ProdCons::run`] per criterion measurement.
pub struct ProdCons<'s, A: GlobalAlloc + Sync> {
    ring: &'s Ring,
    freed: &'s AtomicUsize,
    a: &'s A,
    pushed: usize,
    rng: Rng,
}

/// Shared state of a [`ProdCons`]; lives on the bench's stack for a thread scope.
pub struct ProdConsShared {
    ring: Ring,
    freed: AtomicUsize,
    stop: AtomicBool,
}

impl Default for ProdConsShared {
    fn default() -> Self {
        ProdConsShared {
            ring: Ring::new(1024),
            freed: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }
}

impl ProdConsShared {
    /// Starts the consumer in `scope` and returns the producer end.
    pub fn start<'s, 'e, A: GlobalAlloc + Sync>(
        &'s self,
        scope: &'s std::thread::Scope<'s, 'e>,
        a: &'s A,
    ) -> ProdCons<'s, A> {
        scope.spawn(move || {
            let mut spins = 0;
            loop {
                match self.ring.pop() {
                    Some(p) => unsafe {
                        spins = 0;
                        let p = p as *mut u8;
                        // The producer stored the size in the block: the consumer reads it,
                        // so the block's cache line really travels between the threads.
                        let n = (p as *const usize).read();
                        a.dealloc(p, layout(n));
                        self.freed.fetch_add(1, Ordering::Release);
                    },
                    None if self.stop.load(Ordering::Acquire) => break,
                    None => backoff(&mut spins),
                }
            }
        });
        ProdCons {
            ring: &self.ring,
            freed: &self.freed,
            a,
            pushed: 0,
            rng: Rng::new(7),
        }
    }

    /// Tells the consumer to exit once the ring is empty.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl<A: GlobalAlloc + Sync> ProdCons<'_, A> {
    /// Hands `n` blocks to the consumer and waits until all are freed; returns the time.
    pub fn run(&mut self, n: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n {
            let size = self.rng.range(PC_MIN, PC_MAX);
            unsafe {
                let p = alloc_or_die(self.a, layout(size));
                (p as *mut usize).write(size);
                self.ring.push(p as usize);
            }
            self.pushed += 1;
        }
        let mut spins = 0;
        while self.freed.load(Ordering::Acquire) != self.pushed {
            backoff(&mut spins);
        }
        t0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..10_000 {
            let x = a.range(8, 1024);
            assert_eq!(x, b.range(8, 1024));
            assert!((8..=1024).contains(&x));
        }
    }

    #[test]
    fn churn_keeps_blocks_intact() {
        let mut c = Churn::new(&System, 1000, 1);
        c.step(20_000);
        assert!(c.intact());
    }

    #[test]
    fn churn_parallel_runs_on_several_threads() {
        churn_parallel(&System, 3, 100, 1000);
    }

    #[test]
    fn realloc_growth_counts_its_steps() {
        assert_eq!(realloc_growth_steps(1, 16), 0);
        assert_eq!(realloc_growth_steps(2, 36), 2); // 16 -> 36
        realloc_growth(&System, 50, 4096);
    }

    #[test]
    fn zeroed_memory_reads_zero() {
        assert!(zeroed(&System, 1 << 20));
        assert!(zeroed(&System, 1 << 20));
    }

    #[test]
    fn prodcons_frees_everything() {
        let shared = ProdConsShared::default();
        std::thread::scope(|s| {
            let mut pc = shared.start(s, &System);
            pc.run(10_000);
            pc.run(5);
            shared.stop();
        });
        assert_eq!(shared.freed.load(Ordering::Relaxed), 10_005);
    }
}
