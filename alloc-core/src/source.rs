//! The one seam between block management and the operating system.
//!
//! # Contract
//!
//! A [`PageSource`] hands out *spans*: ranges of readable, writable memory.
//!
//! * **Page size.** [`page_size`](PageSource::page_size) is the source's page: a power of two
//!   from [`PAGE_SIZE`] (4 KiB, the default) to [`MAX_PAGE_SIZE`] (64 KiB, the core's smallest
//!   page slot), fixed for the source's lifetime. An OS source reports the kernel's (aarch64
//!   kernels use 4, 16 or 64 KiB). Every size, alignment and address below that says "page"
//!   means a multiple of *this* size; the core reads it only on cold paths.
//! * **Size and alignment.** `alloc(size, align)` is called with `size` a non-zero multiple of
//!   the page size and `align` a power of two no smaller than the page size. The core asks
//!   for spans aligned to [`SEGMENT_SIZE`](crate::SEGMENT_SIZE) (4 MiB) or more, because it finds
//!   a block's metadata by masking the block's address. The returned span starts at a multiple
//!   of `align` and is exactly `size` bytes long. Spans for pages of small, medium and large
//!   blocks must lie below 2^48 (the core packs a count into the upper bits of their
//!   remote-free words); one above is given back and the allocation fails as out of memory.
//! * **Zeroed memory.** [`Span::zeroed`] says whether every byte of the fresh span reads as
//!   zero. The core relies on it to skip the `memset` of `calloc`; a source that cannot
//!   promise it says `false`.
//! * **Giving memory back.** `release(ptr, size)` returns a whole span, or a page-aligned
//!   prefix/suffix of one (the core never releases a range it did not get from `alloc`, and
//!   never the middle of a span). `purge(ptr, size)` keeps the address range but lets the
//!   source drop the physical pages behind it (`madvise(MADV_DONTNEED)` on Linux); the range
//!   stays valid and usable. It returns `true` if the purged range now reads as zero.
//!   `protect(ptr, size, accessible)` (optional) makes a page range fault on access, or
//!   accessible again: the guarded pool needs it and stays off without it.
//! * **Errors.** Failures are a small `Copy` value, [`SourceError`]; the core turns them into a
//!   null pointer (and the C layer into `ENOMEM`). A source never panics and never aborts.
//! * **Concurrency.** Methods take `&self` and may be called from any thread, concurrently;
//!   a source that needs a lock (the program break is process-wide) takes its own. A source
//!   must not allocate through the global allocator: it *is* the allocator's floor.
//! * **Waiting.** The core never blocks, but a few cold paths wait for another thread (a
//!   spin lock's holder, a remote free finishing its notification). They spin with
//!   exponential backoff, then call [`PageSource::yield_now`] until the other thread is done,
//!   so a holder preempted on an oversubscribed machine gets the CPU back. Sources backed by
//!   an OS yield there (`sched_yield`); the default only spins.
//! * **Statics.** Sources offer `const fn` constructors so an allocator can live in a
//!   `static` with no run-time initialisation.

/// The smallest page a source may report, and the default of
/// [`PageSource::page_size`]: the x86-64 base page (and the usual aarch64 one).
pub const PAGE_SIZE: usize = 4096;

/// The largest page a source may report: the core's smallest page slot (64 KiB), so slots
/// stay whole pages that purge on their own. Covers aarch64's 16 KiB and 64 KiB kernels.
pub const MAX_PAGE_SIZE: usize = 64 << 10;

/// Memory handed out by a [`PageSource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Start of the span, aligned as requested.
    pub ptr: *mut u8,
    /// Length in bytes; equal to the requested size.
    pub size: usize,
    /// Every byte of the span reads as zero.
    pub zeroed: bool,
}

/// Why a [`PageSource`] could not hand out memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceError {
    /// The operating system (or the source's fixed buffer) has no more memory for this
    /// request: `ENOMEM`, a resource limit (`RLIMIT_AS`, `RLIMIT_DATA`), or an exhausted arena.
    OutOfMemory,
    /// The request cannot be expressed (size or alignment overflow).
    InvalidRequest,
}

/// A supplier of page-granular spans. See the [module documentation](self) for the contract.
///
/// # Safety
///
/// Implementations must uphold the contract above: spans they return are valid for reads and
/// writes for `size` bytes, aligned as asked, disjoint from every other live span, and stay
/// valid until released. The allocator's memory safety rests on it.
pub unsafe trait PageSource: Sync {
    /// Obtain a span of `size` bytes aligned to `align`.
    ///
    /// # Safety
    ///
    /// `size` is a non-zero multiple of [`page_size`](Self::page_size); `align` is a power of
    /// two, at least the page size.
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError>;

    /// Give back `size` bytes at `ptr` for good.
    ///
    /// # Safety
    ///
    /// `[ptr, ptr + size)` is a whole span returned by [`alloc`](Self::alloc), or a page-aligned
    /// prefix or suffix of one, not yet released; nothing uses it afterwards.
    unsafe fn release(&self, ptr: *mut u8, size: usize);

    /// Drop the physical memory behind `size` bytes at `ptr`, keeping the range valid.
    /// Returns `true` if the range reads as zero afterwards.
    ///
    /// # Safety
    ///
    /// `ptr` and `size` are page-aligned and inside a live span; nothing in the range is in use.
    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool;

    /// The granularity of spans and purges (see the module's contract): a power of two from
    /// [`PAGE_SIZE`] to [`MAX_PAGE_SIZE`], the same on every call.
    fn page_size(&self) -> usize {
        PAGE_SIZE
    }

    /// Move a whole span to a larger (or smaller) one of `new_size` bytes aligned to `align`,
    /// keeping its contents, without copying if the source can (Linux: `mremap` moves the
    /// page tables). On success the old span is gone and the new one is returned (its
    /// `zeroed` is false: the old contents came along; bytes past `old_size` read as zero
    /// only if the source says so elsewhere). `None`: nothing changed, the caller copies.
    ///
    /// # Safety
    ///
    /// `[ptr, ptr + old_size)` is a whole live span of this source; sizes are page multiples;
    /// `align` as for [`alloc`](Self::alloc). Nothing may use the old range afterwards.
    unsafe fn remap(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<Span> {
        let _ = (ptr, old_size, new_size, align);
        None
    }

    /// Address space for the allocator's segment map: `size` bytes (32 MiB) that read as zero
    /// and cost memory only where written (a `MAP_NORESERVE` anonymous mapping), kept for the
    /// life of the source and never released. With it, `free` finds a pointer's map entry with
    /// one load instead of two. `None` (the default): the map builds two levels from
    /// [`alloc`](Self::alloc)ed pages instead.
    fn reserve_zeroed(&self, size: usize) -> Option<*mut u8> {
        let _ = size;
        None
    }

    /// Make `size` bytes at `ptr` inaccessible (`accessible == false`: any read or write
    /// faults) or readable and writable again; for guarded blocks
    /// ([`guarded`](crate::guarded)). Returns whether it was done. The default cannot (a source
    /// without an MMU, a static buffer): then the guarded pool stays off.
    ///
    /// # Safety
    ///
    /// `ptr` and `size` are page-aligned and inside a live span; nothing in the range is used
    /// while it is inaccessible.
    unsafe fn protect(&self, ptr: *mut u8, size: usize, accessible: bool) -> bool {
        let _ = (ptr, size, accessible);
        false
    }

    /// Milliseconds from some fixed point, used to delay purging. A source with no clock
    /// returns 0, and then memory is purged as soon as it is free.
    fn now_ms(&self) -> u64 {
        0
    }

    /// A random value for the free-list secret. Sources backed by an OS return real entropy;
    /// the default mixes the address of a stack variable (ASLR) into a constant.
    fn entropy(&self) -> u64 {
        let probe = 0u8;
        let addr = core::ptr::addr_of!(probe) as u64;
        crate::util::mix64(addr ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Give the CPU to another thread (see *Waiting* in the module documentation). The
    /// default, for sources without an OS, is a spin-loop hint.
    fn yield_now(&self) {
        core::hint::spin_loop();
    }

    /// Take the source's own lock (if any) before `fork()`; paired with
    /// [`after_fork`](Self::after_fork) in both parent and child.
    fn before_fork(&self) {}

    /// Release the lock taken by [`before_fork`](Self::before_fork).
    ///
    /// # Safety
    ///
    /// Called exactly once after each `before_fork`, in the parent and in the child.
    unsafe fn after_fork(&self) {}
}

// SAFETY: a shared reference to a source is a source: the trait takes `&self` throughout.
unsafe impl<S: PageSource + ?Sized> PageSource for &S {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        // SAFETY: the caller upholds `alloc`'s contract; we forward it unchanged.
        unsafe { (**self).alloc(size, align) }
    }
    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        // SAFETY: forwarded unchanged.
        unsafe { (**self).release(ptr, size) }
    }
    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: forwarded unchanged.
        unsafe { (**self).purge(ptr, size) }
    }
    fn page_size(&self) -> usize {
        (**self).page_size()
    }
    unsafe fn remap(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<Span> {
        // SAFETY: forwarded unchanged.
        unsafe { (**self).remap(ptr, old_size, new_size, align) }
    }
    fn reserve_zeroed(&self, size: usize) -> Option<*mut u8> {
        (**self).reserve_zeroed(size)
    }
    unsafe fn protect(&self, ptr: *mut u8, size: usize, accessible: bool) -> bool {
        // SAFETY: forwarded unchanged.
        unsafe { (**self).protect(ptr, size, accessible) }
    }
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn entropy(&self) -> u64 {
        (**self).entropy()
    }
    fn yield_now(&self) {
        (**self).yield_now()
    }
    fn before_fork(&self) {
        (**self).before_fork()
    }
    unsafe fn after_fork(&self) {
        // SAFETY: forwarded unchanged.
        unsafe { (**self).after_fork() }
    }
}
