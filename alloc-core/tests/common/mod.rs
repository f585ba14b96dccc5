//! Shared test support: an OS-free page source on the test process's own allocator, and a
//! shadow model that checks every live block.

#![allow(dead_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use alloc_core::{PageSource, SourceError, Span};

/// Spans from the test harness's allocator (std), remembered so `release` can give them back.
pub struct StdSource {
    /// Live spans by start: the layout std gave, and how much of it is still handed out
    /// (the contract lets the allocator release a suffix first).
    live: Mutex<Option<BTreeMap<usize, (Layout, usize)>>>,
    /// The time `now_ms` reports once a test has set it (0: the process's monotonic clock).
    clock: AtomicU64,
}

impl StdSource {
    pub const fn new() -> Self {
        StdSource {
            live: Mutex::new(None),
            clock: AtomicU64::new(0),
        }
    }
    /// Make `now_ms` report `ms` (non-zero) from now on: a clock the test moves by hand.
    pub fn set_clock(&self, ms: u64) {
        assert_ne!(ms, 0, "0 means no clock to the allocator");
        self.clock.store(ms, Ordering::Relaxed);
    }
    pub fn live_spans(&self) -> usize {
        self.live.lock().unwrap().as_ref().map_or(0, |m| m.len())
    }
}

// SAFETY: std's allocator returns disjoint, aligned, zeroed regions of the requested size.
unsafe impl PageSource for StdSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        let layout =
            Layout::from_size_align(size, align).map_err(|_| SourceError::InvalidRequest)?;
        // SAFETY: size is non-zero (contract).
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(SourceError::OutOfMemory);
        }
        self.live
            .lock()
            .unwrap()
            .get_or_insert_with(BTreeMap::new)
            .insert(ptr as usize, (layout, size));
        Ok(Span {
            ptr,
            size,
            zeroed: true,
        })
    }
    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        let mut guard = self.live.lock().unwrap();
        let live = guard.as_mut().unwrap();
        let (&start, &(layout, len)) = live
            .range(..=ptr as usize)
            .next_back()
            .expect("release of unknown span");
        let addr = ptr as usize;
        assert!(
            addr + size <= start + len,
            "release beyond the span at {start:#x}"
        );
        if addr == start {
            assert_eq!(size, len, "a prefix release is not used by the allocator");
            live.remove(&start);
            // SAFETY: allocated by `alloc` with this layout; nothing of it is in use.
            unsafe { dealloc(ptr, layout) };
        } else {
            assert_eq!(addr + size, start + len, "only suffixes are released early");
            live.insert(start, (layout, len - size));
        }
    }
    fn yield_now(&self) {
        std::thread::yield_now()
    }
    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        if cfg!(miri) {
            // Under Miri, zeroing MiBs at every purge would dominate the run: report the
            // contents as kept, which the contract allows.
            return false;
        }
        // Emulate MADV_DONTNEED: the range reads as zero afterwards.
        // SAFETY: the range is inside a live span and unused (contract).
        unsafe { ptr.write_bytes(0, size) };
        true
    }
    fn reserve_zeroed(&self, size: usize) -> Option<*mut u8> {
        // Kept for the life of the process, as the contract says (tests leak it).
        let layout = Layout::from_size_align(size, 4096).ok()?;
        // SAFETY: size is non-zero.
        let p = unsafe { alloc_zeroed(layout) };
        (!p.is_null()).then_some(p)
    }
    fn now_ms(&self) -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        let set = self.clock.load(Ordering::Relaxed);
        if set != 0 {
            return set;
        }
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
    }
}

/// A source reporting `page`-byte pages (aarch64 kernels run with 16 or 64 KiB) over
/// `StdSource`, checking that the allocator keeps to them: every size, alignment and address
/// it passes must be a multiple of `page`. A misaligned purge does nothing and says so
/// (Linux's `madvise` fails with EINVAL), so claiming zeroed memory after one shows up too.
pub struct PagedSource {
    inner: StdSource,
    page: usize,
    violations: Mutex<Vec<String>>,
}

impl PagedSource {
    pub const fn new(page: usize) -> Self {
        PagedSource {
            inner: StdSource::new(),
            page,
            violations: Mutex::new(Vec::new()),
        }
    }

    /// Every call that broke the page granularity, in order.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    fn aligned(&self, what: &str, values: &[(&str, usize)]) -> bool {
        let bad: Vec<String> = values
            .iter()
            .filter(|(_, v)| v % self.page != 0)
            .map(|(name, v)| format!("{name} {v:#x}"))
            .collect();
        if !bad.is_empty() {
            let mut list = self.violations.lock().unwrap();
            list.push(format!(
                "{what}: {} not a multiple of {:#x}",
                bad.join(", "),
                self.page
            ));
        }
        bad.is_empty()
    }
}

// SAFETY: forwards to StdSource (which keeps the contract) after checking the arguments.
unsafe impl PageSource for PagedSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        self.aligned("alloc", &[("size", size), ("align", align.max(1))]);
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc(size, align.max(self.page)) }
    }
    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        self.aligned("release", &[("ptr", ptr as usize), ("size", size)]);
        // SAFETY: forwarded contract.
        unsafe { self.inner.release(ptr, size) }
    }
    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        if !self.aligned("purge", &[("ptr", ptr as usize), ("size", size)]) {
            return false;
        }
        // SAFETY: forwarded contract.
        unsafe { self.inner.purge(ptr, size) }
    }
    fn page_size(&self) -> usize {
        self.page
    }
    /// Checks the range and reports success; nothing is protected (tests that look at
    /// protection use their own source).
    unsafe fn protect(&self, ptr: *mut u8, size: usize, _accessible: bool) -> bool {
        self.aligned("protect", &[("ptr", ptr as usize), ("size", size)])
    }
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
}

/// A live block in the shadow model.
pub struct Live {
    pub size: usize,
    pub align: usize,
    pub seed: u8,
}

/// The shadow model: every live block by address.
#[derive(Default)]
pub struct Shadow {
    pub blocks: BTreeMap<usize, Live>,
}

/// Offsets of a block that carry the pattern: every byte of the first and last 4 KiB, and
/// every 61st byte between (big blocks would make a byte-by-byte model test crawl).
fn pattern_offsets(size: usize) -> impl Iterator<Item = usize> {
    let head = size.min(4096);
    let tail_start = size.saturating_sub(4096).max(head);
    (0..head)
        .chain((head..tail_start).step_by(61))
        .chain(tail_start..size)
}

pub fn fill(p: *mut u8, size: usize, seed: u8) {
    for i in pattern_offsets(size) {
        // SAFETY: the block holds `size` bytes.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

pub fn check(p: *mut u8, size: usize, seed: u8) {
    check_prefix(p, size, size, seed)
}

/// Check the first `n` bytes of a block that was filled as `size` bytes.
pub fn check_prefix(p: *mut u8, n: usize, size: usize, seed: u8) {
    for i in pattern_offsets(size).take_while(|&i| i < n) {
        // SAFETY: the block holds `size` bytes.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            seed.wrapping_add(i as u8),
            "block {p:p} byte {i} of {size} damaged"
        );
    }
}

impl Shadow {
    /// Record a new block, asserting alignment and that it overlaps no live block.
    pub fn insert(&mut self, p: *mut u8, size: usize, align: usize, usable: usize, seed: u8) {
        let a = p as usize;
        assert!(!p.is_null());
        assert_eq!(a % align.max(16), 0, "block {p:p} not aligned to {align}");
        assert!(usable >= size, "usable {usable} < requested {size}");
        let len = size.max(1);
        if let Some((&prev, live)) = self.blocks.range(..=a).next_back() {
            assert!(
                prev + live.size.max(1) <= a,
                "block {p:p} overlaps {prev:#x}+{}",
                live.size
            );
        }
        if let Some((&next, _)) = self.blocks.range(a + 1..).next() {
            assert!(a + len <= next, "block {p:p}+{size} overlaps {next:#x}");
        }
        fill(p, size, seed);
        self.blocks.insert(a, Live { size, align, seed });
    }

    pub fn remove(&mut self, p: *mut u8) -> Live {
        let live = self.blocks.remove(&(p as usize)).expect("unknown block");
        check(p, live.size, live.seed);
        live
    }
}

/// xorshift64*: deterministic, no dependencies.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
