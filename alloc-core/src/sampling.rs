//! Sampled allocations: the one mechanism behind heap profiles (about one allocation per
//! `interval` bytes, a byte-weighted Poisson process) and guarded blocks (about one allocation
//! in `N`).
//!
//! # Nothing on the fast path
//!
//! The decision is taken when the slow path hands a batch of blocks to the fast path (a page
//! extension, a `local_free` swap, a collection of remote frees): the batch's length is
//! known, so its bytes and blocks are counted against the heap's two countdowns at once. If a
//! sample point falls inside the batch, the free list is cut just before it (k links walked,
//! only then) and the rest of the batch is *held* on the page; the fast path then runs dry at
//! exactly the sampled allocation, which reaches the slow path by itself. There the held
//! blocks go back to the fast path (counted in turn) and the allocation is served from a
//! home of its own. With sampling off, the refill pays one predictable branch and the malloc
//! and free fast paths are unchanged.
//!
//! # A home `free` already sends to its cold path
//!
//! Profiled blocks up to [`HOME_MAX`] live in *sample segments*: 4 MiB segments whose chunk
//! entry in the segment map is [`SAMPLED`], so `free` sends them
//! down the path it takes for every non-page entry, and freeing an unsampled block pays
//! nothing. One 64 KiB slot per block, at the slot's start (aligned to 64 KiB). Bigger ones
//! are large blocks whose header names the sample. Guarded blocks go to the embedder's pool
//! ([`SampleHooks::guarded`]).
//!
//! # Bytes counted
//!
//! A batch counts whole blocks (the fast path never sees the requested size): a small request
//! is sampled with probability `1 - exp(-block_size / interval)`. Large blocks, which always
//! take the slow path, count their requested size.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::allocator::{Allocator, LARGE_HEADER};
use crate::checks::{Call, MisuseKind};
use crate::heap::Heap;
use crate::page::Page;
use crate::segment::{SegmentHeader, KIND_SAMPLED};
use crate::segment_map::SAMPLED;
use crate::size_class::{class_of, class_size};
use crate::source::PageSource;
use crate::util::SpinLock;
use crate::{SEGMENT_MASK, SEGMENT_SIZE};

/// A sample for the heap profile.
pub const SAMPLE_PROFILE: u8 = 1;
/// A sample for a guarded block.
pub const SAMPLE_GUARD: u8 = 2;

/// What the embedder does with sampled allocations. All three run on allocation paths: they
/// must not allocate through this allocator, and must not block on a lock a signal handler or
/// `fork` could leave held.
pub struct SampleHooks {
    /// A profiled block of `size` bytes (alignment `align`) was handed out at `ptr`: record
    /// it. Returns a non-zero token kept with the block and handed to `forget` when it is
    /// freed (0: not recorded).
    pub record: fn(ptr: *mut u8, size: usize, align: usize) -> usize,
    /// A profiled block with `token` was freed.
    pub forget: fn(token: usize),
    /// Place a guarded block of `size` bytes aligned to `align` (zeroed if `zero`), or return
    /// null to let the allocation go on as usual.
    pub guarded: Option<fn(size: usize, align: usize, zero: bool) -> *mut u8>,
}

/// Slot size of a sample segment: a profiled block up to this size lives in a slot of its
/// own; bigger ones are large blocks.
pub const HOME_MAX: usize = 1 << HOME_SLOT_SHIFT;
const HOME_SLOT_SHIFT: u32 = 16;
const HOME_SLOTS: usize = SEGMENT_SIZE >> HOME_SLOT_SHIFT;

// ------------------------------------------------------------------------------ countdowns

/// A heap's two countdowns and its random stream. Only the owning thread touches it.
pub(crate) struct Sampler {
    /// Some countdown runs (`false`: every method returns at once).
    pub(crate) active: bool,
    /// Bytes until the next profile sample point (1: the next byte); `u64::MAX` when off.
    bytes_left: u64,
    /// Allocations until the next guarded one (1: the next); `u64::MAX` when off.
    blocks_left: u64,
    interval: u64,
    guard_every: u64,
    rng: u64,
    /// (size, alignment) of the aligned request being served, (0, 0) otherwise: what a
    /// sample records instead of the class size it was rounded to.
    pub(crate) aligned_request: (usize, usize),
}

impl Sampler {
    /// No sampling.
    pub(crate) const OFF: Sampler = Sampler {
        active: false,
        bytes_left: u64::MAX,
        blocks_left: u64::MAX,
        interval: 0,
        guard_every: 0,
        rng: 0,
        aligned_request: (0, 0),
    };

    /// A sampler with mean `interval` bytes between profile samples and about one guarded
    /// allocation in `guard_every` (0: that kind off), its random stream seeded by `seed`.
    pub(crate) fn new(interval: u64, guard_every: u64, seed: u64) -> Sampler {
        let mut s = Sampler {
            active: interval != 0 || guard_every != 0,
            bytes_left: u64::MAX,
            blocks_left: u64::MAX,
            interval,
            guard_every,
            rng: seed,
            aligned_request: (0, 0),
        };
        s.bytes_left = s.draw_bytes();
        // A heap starts in the middle of the process, not just after a sample: its first
        // distance is the renewal process's residual, whose density falls linearly from 1/N to
        // 0 over 1..2N-1 — the smaller of two draws. A full draw would give a thread that
        // makes M < N allocations a chance of M/2N instead of M/N (larson's short threads got
        // 1,090 guarded blocks at 1/20000 instead of about 2,400).
        s.blocks_left = s.draw_blocks().min(s.draw_blocks());
        s
    }

    /// splitmix64.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::util::mix64(self.rng)
    }

    /// The distance to the next profile sample point: exponential with mean `interval`
    /// (inverse transform of a uniform draw in (0, 1]), at least 1.
    fn draw_bytes(&mut self) -> u64 {
        if self.interval == 0 {
            return u64::MAX;
        }
        let u = ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let d = -libm::log(u) * self.interval as f64;
        // An `as` cast saturates: u = 2^-53 gives about 37 intervals, far from overflow.
        (d as u64).max(1)
    }

    /// Allocations to the next guarded one: uniform in 1..2N-1 (mean N), so periodic
    /// allocation patterns cannot keep one call site out of the pool.
    fn draw_blocks(&mut self) -> u64 {
        match self.guard_every {
            0 => u64::MAX,
            1 => 1,
            n => 1 + self.next_u64() % (2 * n - 1),
        }
    }

    /// Count `n` allocations of `size` bytes each against the countdowns. Returns the index
    /// of the first one that is sampled and what for (`SAMPLE_*` bits); the countdowns then
    /// restart from it, and the allocations after it are not counted (the caller counts them
    /// again later).
    pub(crate) fn take(&mut self, n: usize, size: usize) -> Option<(usize, u8)> {
        let (n, size) = (n as u64, size.max(1) as u64);
        let bytes = n.saturating_mul(size);
        if bytes < self.bytes_left && n < self.blocks_left {
            self.bytes_left -= bytes;
            self.blocks_left -= n;
            return None;
        }
        // Allocation i covers bytes (i*size, (i+1)*size] of the batch.
        let by_bytes = if self.bytes_left <= bytes {
            (self.bytes_left - 1) / size
        } else {
            u64::MAX
        };
        let by_blocks = if self.blocks_left <= n {
            self.blocks_left - 1
        } else {
            u64::MAX
        };
        let k = by_bytes.min(by_blocks);
        let mut kind = 0;
        if by_bytes == k {
            kind |= SAMPLE_PROFILE;
            self.bytes_left = self.draw_bytes();
        } else {
            self.bytes_left -= (k + 1) * size;
        }
        if by_blocks == k {
            kind |= SAMPLE_GUARD;
            self.blocks_left = self.draw_blocks();
        } else {
            self.blocks_left -= k + 1;
        }
        Some((k as usize, kind))
    }
}

// ------------------------------------------------------------------------------ shared state

/// The allocator's sampling settings and the sample segments.
pub(crate) struct Sampling {
    interval: AtomicU64,
    guard_every: AtomicU64,
    hooks: AtomicPtr<SampleHooks>,
    home: SpinLock<Home>,
}

impl Sampling {
    pub(crate) const fn new() -> Sampling {
        Sampling {
            interval: AtomicU64::new(0),
            guard_every: AtomicU64::new(0),
            hooks: AtomicPtr::new(ptr::null_mut()),
            home: SpinLock::new(Home {
                segments: ptr::null_mut(),
            }),
        }
    }

    /// A sampler for a new heap.
    pub(crate) fn sampler(&self, seed: u64) -> Sampler {
        if self.hooks.load(Ordering::Acquire).is_null() {
            return Sampler::OFF;
        }
        Sampler::new(
            self.interval.load(Ordering::Relaxed),
            self.guard_every.load(Ordering::Relaxed),
            seed,
        )
    }

    fn hooks(&self) -> Option<&'static SampleHooks> {
        // SAFETY: only ever set from a `&'static SampleHooks`.
        unsafe { self.hooks.load(Ordering::Acquire).as_ref() }
    }

    pub(crate) fn before_fork<S: PageSource>(&self, source: &S) {
        self.home.raw_lock(source);
    }

    /// # Safety
    /// After [`before_fork`](Self::before_fork), once.
    pub(crate) unsafe fn after_fork_parent(&self) {
        // SAFETY: before_fork took the lock.
        unsafe { self.home.raw_unlock() };
    }

    /// # Safety
    /// After [`before_fork`](Self::before_fork), once, in the single-threaded child.
    pub(crate) unsafe fn after_fork_child(&self) {
        // SAFETY: only this thread exists.
        unsafe { self.home.force_unlock() };
    }
}

/// One 64 KiB slot of a sample segment.
#[derive(Clone, Copy)]
struct HomeSlot {
    /// The usable size of the block (0: slot free).
    usable: usize,
    token: usize,
}

/// A sample segment's header (slot 0). The map entry [`SAMPLED`] covers its chunk.
#[repr(C)]
struct HomeSegment {
    header: SegmentHeader,
    next: *mut HomeSegment,
    /// Bit i: slot i is free (slot 0 never).
    free: u64,
    slots: [HomeSlot; HOME_SLOTS],
}

const _: () = assert!(core::mem::size_of::<HomeSegment>() <= HOME_MAX);

/// The list of sample segments (never given back: bounded by the peak of live samples).
pub(crate) struct Home {
    segments: *mut HomeSegment,
}
// SAFETY: the list links segments the allocator owns; used under its lock.
unsafe impl Send for Home {}

/// The alignment a sampled block must keep: a class chosen for an aligned request has a
/// size that is a multiple of the alignment, and every block of it is that aligned.
fn sample_align(size: usize) -> usize {
    if size == 0 {
        16
    } else {
        (1usize << size.trailing_zeros()).clamp(16, HOME_MAX)
    }
}

// ------------------------------------------------------------------------------ allocator side

impl<S: PageSource> Allocator<S> {
    /// Sample about one allocation per `bytes` bytes for the heap profile (0: off). Takes
    /// effect for heaps created afterwards; set it before the first allocation.
    pub fn set_profile_interval(&self, bytes: u64) {
        self.sampling.interval.store(bytes, Ordering::Relaxed);
    }

    /// Sample about one allocation in `n` for a guarded block (0: off). As for
    /// [`set_profile_interval`](Self::set_profile_interval).
    pub fn set_guard_every(&self, n: u64) {
        self.sampling.guard_every.store(n, Ordering::Relaxed);
    }

    /// Install what sampled allocations call. Sampling stays off until this is set.
    pub fn set_sample_hooks(&self, hooks: &'static SampleHooks) {
        self.sampling.hooks.store(
            hooks as *const SampleHooks as *mut SampleHooks,
            Ordering::Release,
        );
    }

    /// Serve a sampled allocation: a guarded block or a profiled one. Null when neither took
    /// it (the caller then allocates as usual).
    ///
    /// # Safety
    ///
    /// `heap` is the calling thread's live heap of this allocator.
    // Inlined into `malloc_sampled`: every frame between the sample and the program costs the
    // stack walk about 1,500 instructions.
    #[inline]
    pub(crate) unsafe fn sampled_alloc(
        &self,
        heap: &mut Heap,
        size: usize,
        zero: bool,
        kind: u8,
    ) -> *mut u8 {
        let Some(hooks) = self.sampling.hooks() else {
            return ptr::null_mut();
        };
        let align = sample_align(size);
        // What the caller asked for (an aligned request was rounded up to a class).
        let (requested, requested_align) = match heap.sampler.aligned_request {
            (0, 0) => (size, 16),
            request => request,
        };
        if kind & SAMPLE_PROFILE != 0 {
            let usable = if size <= crate::size_class::LARGE_MAX {
                class_size(class_of(size.max(1)))
            } else {
                size
            };
            let p = if usable <= HOME_MAX {
                self.home_alloc(usable, zero)
            } else {
                let align = if align > LARGE_HEADER { align } else { 0 };
                // SAFETY: forwarded contract.
                unsafe { self.alloc_large(heap, size, align, zero) }
            };
            if p.is_null() {
                return p;
            }
            let token = (hooks.record)(p, requested, requested_align);
            // SAFETY: `p` is the block we just made, known to be in a home slot or a large
            // block with the header LARGE_HEADER or `align` bytes below it.
            unsafe { self.set_token(p, usable, align, token) };
            return p;
        }
        if kind & SAMPLE_GUARD != 0 {
            if let Some(guarded) = hooks.guarded {
                return guarded(requested, requested_align, zero);
            }
        }
        ptr::null_mut()
    }

    /// A large block (`alloc_large`) that is sampled like any other allocation: large
    /// blocks always take the slow path, so their bytes are counted one by one.
    ///
    /// # Safety
    ///
    /// `heap` is the calling thread's live heap of this allocator.
    pub(crate) unsafe fn alloc_large_sampled(
        &self,
        heap: &mut Heap,
        size: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc_large(heap, size, align, zero) };
        if p.is_null() || !heap.sampler.active {
            return p;
        }
        if let Some((_, kind)) = heap.sampler.take(1, size) {
            if kind & SAMPLE_PROFILE != 0 {
                if let Some(hooks) = self.sampling.hooks() {
                    let token = (hooks.record)(p, size, align.max(16));
                    // SAFETY: `p` is a fresh large block.
                    unsafe { self.set_token(p, size, align, token) };
                }
            }
        }
        p
    }

    /// Keep `token` with the sampled block `p` (`usable` bytes).
    unsafe fn set_token(&self, p: *mut u8, usable: usize, align: usize, token: usize) {
        if token == 0 {
            return;
        }
        // SAFETY: per the caller, `p` is a block we made; a home block sits at a slot start
        // of a live sample segment, a large block `max(align, LARGE_HEADER)` past its header.
        unsafe {
            if usable <= HOME_MAX {
                let seg = p.map_addr(|a| a & !SEGMENT_MASK).cast::<HomeSegment>();
                let slot = (p as usize & SEGMENT_MASK) >> HOME_SLOT_SHIFT;
                (*seg).slots[slot].token = token;
            } else {
                let hdr = p.sub(align.max(LARGE_HEADER)).cast::<SegmentHeader>();
                (*hdr).sample = token;
            }
        }
    }

    /// A freed large block was sampled: tell the embedder.
    pub(crate) fn forget_sample(&self, token: usize) {
        if let Some(hooks) = self.sampling.hooks() {
            (hooks.forget)(token);
        }
    }

    /// A slot in a sample segment for a block of `usable` bytes (at most [`HOME_MAX`]).
    fn home_alloc(&self, usable: usize, zero: bool) -> *mut u8 {
        let mut home = self.sampling.home.lock(self.source());
        loop {
            let mut seg = home.segments;
            // SAFETY: the list links live sample segments; we hold its lock.
            unsafe {
                while !seg.is_null() {
                    if (*seg).free != 0 {
                        let slot = (*seg).free.trailing_zeros() as usize;
                        (*seg).free &= !(1u64 << slot);
                        (*seg).slots[slot] = HomeSlot { usable, token: 0 };
                        drop(home);
                        let p = seg.cast::<u8>().add(slot << HOME_SLOT_SHIFT);
                        if zero {
                            ptr::write_bytes(p, 0, usable);
                        }
                        return p;
                    }
                    seg = (*seg).next;
                }
            }
            // No free slot: a new segment, asked for with no lock held.
            drop(home);
            let Some(span) = self.obtain_span(SEGMENT_SIZE, SEGMENT_SIZE) else {
                return ptr::null_mut();
            };
            if !self.map.set(self.source(), span.ptr as usize, SAMPLED) {
                self.release_span(span.ptr, span.size);
                return ptr::null_mut();
            }
            let seg = span.ptr.cast::<HomeSegment>();
            // SAFETY: a fresh segment-sized span nothing else uses.
            unsafe {
                ptr::write(
                    seg,
                    HomeSegment {
                        header: SegmentHeader::new(KIND_SAMPLED, HOME_SLOT_SHIFT as u8, span.size),
                        next: ptr::null_mut(),
                        free: !1,
                        slots: [HomeSlot {
                            usable: 0,
                            token: 0,
                        }; HOME_SLOTS],
                    },
                );
                home = self.sampling.home.lock(self.source());
                (*seg).next = home.segments;
                home.segments = seg;
            }
        }
    }

    /// The home slot of `p` (whose map entry is [`SAMPLED`]) and its usable size; reports a
    /// pointer that is not a live home block.
    fn home_slot(&self, p: *mut u8, call: Call) -> (*mut HomeSegment, usize, usize) {
        let seg: *mut HomeSegment = p.map_addr(|a| a & !SEGMENT_MASK).cast();
        let offset = p as usize & SEGMENT_MASK;
        let slot = offset >> HOME_SLOT_SHIFT;
        if slot == 0 || offset & (HOME_MAX - 1) != 0 {
            self.report(call, MisuseKind::InvalidPointer, p as usize);
        }
        let _home = self.sampling.home.lock(self.source());
        // SAFETY: the map says a sample segment starts at `seg`; its slot table is read under
        // the home lock.
        let usable = unsafe { (*seg).slots[slot].usable };
        if usable == 0 {
            drop(_home);
            self.report(call, MisuseKind::DoubleFree, p as usize);
        }
        (seg, slot, usable)
    }

    /// Free a block of a sample segment.
    pub(crate) fn home_free(&self, p: *mut u8, call: Call) {
        let (seg, slot, _) = self.home_slot(p, call);
        let token = {
            let _home = self.sampling.home.lock(self.source());
            // SAFETY: as in home_slot. A racing second free of the same block finds the
            // slot free under the lock and reports.
            unsafe {
                let s = &mut (*seg).slots[slot];
                if s.usable == 0 {
                    drop(_home);
                    self.report(call, MisuseKind::DoubleFree, p as usize);
                }
                let token = s.token;
                *s = HomeSlot {
                    usable: 0,
                    token: 0,
                };
                (*seg).free |= 1u64 << slot;
                token
            }
        };
        if token != 0 {
            self.forget_sample(token);
        }
    }

    /// The usable size of a live block of a sample segment.
    pub(crate) fn home_usable(&self, p: *mut u8, call: Call) -> usize {
        self.home_slot(p, call).2
    }
}

// ------------------------------------------------------------------------------ heap side

impl Heap {
    /// Count a batch of `n` blocks just put at the head of `page`'s free list, and cut the
    /// list before the first sampled one. With sampling off: one predictable branch.
    ///
    /// # Safety
    ///
    /// `page` is owned by this heap; its first `n` free blocks are the batch; nothing is
    /// held on it yet.
    #[inline(always)]
    pub(crate) unsafe fn sample_refill(&mut self, page: *mut Page, n: usize) {
        // SAFETY: forwarded contract.
        unsafe { self.sample_refill_behind(page, 0, n) }
    }

    /// As [`sample_refill`](Self::sample_refill) for a batch that follows `behind` blocks
    /// already on the free list (and already counted): the fast path hands those out first.
    ///
    /// # Safety
    ///
    /// `page` is owned by this heap; its free list holds `behind` blocks, then the `n` of
    /// the batch; nothing is held on it yet.
    #[inline(always)]
    pub(crate) unsafe fn sample_refill_behind(&mut self, page: *mut Page, behind: usize, n: usize) {
        if self.sampler.active && n != 0 {
            // SAFETY: forwarded contract.
            unsafe { self.sample_cut(page, behind, n) }
        }
    }

    #[inline(never)]
    unsafe fn sample_cut(&mut self, page: *mut Page, behind: usize, n: usize) {
        // SAFETY: the page is ours; its first behind + n free blocks are linked blocks of it.
        unsafe {
            debug_assert!((*page).held.is_null());
            let Some((k, kind)) = self.sampler.take(n, (*page).block_size) else {
                return;
            };
            let cut = behind + k;
            let head = (*page).free;
            let held = if cut == 0 {
                (*page).free = ptr::null_mut();
                head
            } else {
                // Walk to block cut-1, the last one the fast path hands out before the sample.
                let mut last = head;
                for _ in 1..cut {
                    last = (*page).block_at((*page).decode((*last).next));
                }
                let rest = (*page).decode((*last).next);
                (*last).next = (*page).encode(0);
                (*page).block_at(rest)
            };
            (*page).held = held;
            (*page).held_fresh = (n - k) as u16;
            (*page).held_kind = kind;
        }
    }

    /// The fast path ran dry at a sample point of `page`: give the held blocks back to the
    /// fast path (counting them) and serve this allocation as a sample. Always returns a
    /// block, unless out of memory.
    ///
    /// # Safety
    ///
    /// `page` is owned by this heap, its free list is empty and blocks are held on it.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn malloc_sampled<S: PageSource>(
        &mut self,
        alloc: &Allocator<S>,
        page: *mut Page,
        size: usize,
        zero: bool,
    ) -> *mut u8 {
        // SAFETY: per the contract.
        unsafe {
            let kind = (*page).held_kind;
            let fresh = (*page).held_fresh as usize;
            (*page).free = (*page).held;
            (*page).held = ptr::null_mut();
            (*page).held_fresh = 0;
            (*page).held_kind = 0;
            let p = alloc.sampled_alloc(self, size, zero, kind);
            if !p.is_null() {
                // The sample came from its home: the held blocks, the sample point's block
                // first, go to the fast path as the next batch.
                self.sample_refill(page, fresh);
                return p;
            }
            // Not taken (no hook for this kind, the pool full, not eligible): this allocation
            // takes the sample point's block itself, and the blocks after it are the next
            // batch. (Counting the taken block again made the distance between samples one
            // allocation short; dropping a re-held batch uncounted, as before, lost a whole
            // batch from the countdowns: 22% fewer guarded samples when the hook declined.)
            let block = Allocator::<S>::pop(page, (*page).free);
            self.sample_refill(page, fresh.saturating_sub(1));
            let zeroed = (*page).free_is_zero;
            if zero {
                if zeroed {
                    block.cast::<usize>().write(0);
                } else {
                    ptr::write_bytes(block, 0, size);
                }
            }
            block
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over many batches the profile samples come at the mean rate of one per `interval`
    /// bytes; with a fixed seed the outcome is fixed, so this cannot flake.
    #[test]
    #[cfg_attr(miri, ignore)] // statistical: 200,000 batches
    fn poisson_rate_matches_interval() {
        let interval = 512 * 1024;
        let mut s = Sampler::new(interval, 0, 42);
        let mut samples = 0u64;
        let mut bytes = 0u64;
        let mut rng = 7u64;
        for _ in 0..200_000 {
            rng = crate::util::mix64(rng);
            let size = 16 * (1 + (rng % 64) as usize);
            let mut n = 1 + (rng >> 32) as usize % 256;
            bytes += (n * size) as u64;
            while let Some((k, kind)) = s.take(n, size) {
                assert_eq!(kind, SAMPLE_PROFILE);
                samples += 1;
                bytes += size as u64;
                // The sampled allocation is served elsewhere; the blocks after it come back.
                n -= k;
            }
        }
        let expected = bytes as f64 / interval as f64;
        let ratio = samples as f64 / expected;
        // ~13,000 samples: one standard deviation is under 1%.
        assert!(samples > 10_000, "{samples}");
        assert!((0.97..1.03).contains(&ratio), "{samples} vs {expected}");
    }

    /// A block of size s is sampled with probability 1 - exp(-s/interval).
    #[test]
    #[cfg_attr(miri, ignore)] // statistical
    fn probability_grows_with_size() {
        let interval = 65536u64;
        for (size, trials) in [(4096usize, 100_000u64), (65536, 50_000), (262_144, 20_000)] {
            let mut s = Sampler::new(interval, 0, size as u64);
            let mut hits = 0u64;
            for _ in 0..trials {
                let mut n = 1;
                while let Some((k, _)) = s.take(n, size) {
                    hits += 1;
                    n -= k + 1;
                    if n == 0 {
                        break;
                    }
                }
            }
            let p = 1.0 - (-(size as f64) / interval as f64).exp();
            let got = hits as f64 / trials as f64;
            assert!((got - p).abs() < 0.02, "size {size}: {got} vs {p}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // statistical
    fn guard_countdown_is_one_in_n() {
        let mut s = Sampler::new(0, 100, 3);
        let mut hits = 0;
        let total = 1_000_000usize;
        let mut left = total;
        while left > 0 {
            let n = left.min(37);
            let mut batch = n;
            while let Some((k, kind)) = s.take(batch, 48) {
                assert_eq!(kind, SAMPLE_GUARD);
                hits += 1;
                batch -= k;
            }
            left -= n;
        }
        // 1,000,000 allocations plus the ~10,000 guarded ones, one in 100.
        assert!((9_600..10_600).contains(&hits), "{hits}");
    }

    /// Threads that live for fewer than N allocations are sampled at the full rate: a fresh
    /// heap's first guard distance is the residual of the renewal process, not a whole draw.
    #[test]
    #[cfg_attr(miri, ignore)] // statistical: 20,000 samplers
    fn short_lived_heaps_sample_at_the_full_rate() {
        let heaps = 20_000u64;
        let mut hits = 0;
        for seed in 0..heaps {
            let mut s = Sampler::new(0, 100, crate::util::mix64(seed + 1));
            // Ten allocations in one batch: a sample among them in 10 / 100 of the heaps.
            if s.take(10, 48).is_some() {
                hits += 1;
            }
        }
        // Expected 2,000 (a whole first draw would give about 10 / 199: 1,005).
        assert!((1_800..2_200).contains(&hits), "{hits} of {heaps}");
    }

    #[test]
    fn off_never_samples() {
        let mut s = Sampler::OFF;
        assert!(!s.active);
        for _ in 0..1000 {
            assert!(s.take(4096, 1 << 20).is_none());
        }
    }
}
