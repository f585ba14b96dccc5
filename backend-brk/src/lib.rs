//! A pagebreak [`PageSource`] over the program break (`sbrk`).
//!
//! Spans are carved from memory between the program break as we last observed it and the
//! break as we then set it: one region growing up, under one lock. Other code (glibc's own
//! `malloc`, a runtime, the test harness) may move the break too; we never touch memory we did
//! not take ourselves.
//!
//! # Regions and the top
//!
//! `top` is the break value we last set. To grow, we read the break with `sbrk(0)`: if it is
//! still `top`, the region simply continues; if not, someone else moved it and a new region
//! starts at the (page-rounded) new break. The request is aligned up from there and the break
//! raised to its end with one `sbrk`. The alignment padding (whole pages) goes into the free
//! table below, so it is not lost.
//!
//! Releasing a range that ends at `top` while the break is still `top` lowers the break
//! (together with a free range right below it), so the kernel gets the memory and the address
//! space back. Any other release is purged (`MADV_DONTNEED`) and recorded in the free table.
//!
//! # The free table
//!
//! A fixed table of [`FREE_SLOTS`] ranges, sorted by address with neighbours merged, serves
//! requests first-fit (honouring the alignment, the head and tail going back in) before the
//! break is raised. Ranges are purged when they go in, so they read as zero and spans served
//! from them have `zeroed: true`; if the purge fails (`mlock`ed memory) the range is marked
//! dirty and its spans report `zeroed: false`. When the table is full, a released range that
//! merges with no neighbour is purged and forgotten: its address space stays below the break,
//! unused, until the process ends. That needs more than 64 separate holes, and costs no
//! physical memory.
//!
//! # When the break cannot grow
//!
//! `sbrk` fails when `RLIMIT_DATA` is reached, when a mapping lies in the way, or when the
//! kernel is out of memory. The source then returns [`SourceError::OutOfMemory`] with its state
//! unchanged. It never falls back to `mmap` itself: the C layer decides whether to retry with
//! another source.
//!
//! # Limits
//!
//! `sbrk` is process-wide and not thread-safe in glibc (it caches the break in `__curbrk`). All
//! [`BrkSource`]s in the process serialise their `sbrk` calls on one global lock, but code that
//! calls `sbrk` or `brk` from another thread at the same moment races with us exactly as it
//! would with glibc's `malloc`. Code that lowers the break below memory it did not take
//! (ours) is unsupported.
//!
//! `before_fork` takes the source's lock and `after_fork` releases it (in parent and child), so
//! a child never inherits a half-updated table. The global `sbrk` lock is only ever held inside
//! a source's lock, so it is free at that point too.

#![no_std]

mod lock;
mod table;

pub use table::FREE_SLOTS;

use alloc_core::{PageSource, SourceError, Span, MAX_PAGE_SIZE, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};
use lock::SpinLock;
use table::FreeTable;

/// Serialises every `sbrk` made by any [`BrkSource`], so two sources never race on glibc's
/// cached break. Taken only while a source's own lock is held (order: source, then break).
static BREAK_LOCK: SpinLock = SpinLock::new();

/// `sbrk`'s failure value, `(void *)-1`.
const SBRK_FAILED: usize = usize::MAX;

/// The kernel's page size (4 KiB on x86-64; 4, 16 or 64 KiB on aarch64), within what the core
/// supports. The break moves in whole pages of it, and only whole pages purge.
fn page_size() -> usize {
    os_glue::page_size().clamp(PAGE_SIZE, MAX_PAGE_SIZE)
}

fn page_up(x: usize) -> Option<usize> {
    align_up(x, page_size())
}

fn align_up(x: usize, align: usize) -> Option<usize> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// `sbrk(incr)`: the previous break, or `None` on failure.
///
/// # Safety
///
/// `BREAK_LOCK` is held. A negative `incr` only gives back memory the caller owns and no
/// longer uses, ending at the current break.
unsafe fn sbrk(incr: isize) -> Option<usize> {
    // SAFETY: the caller guarantees that shrinking frees only its own memory; growing or
    // reading the break affects nobody else's memory.
    let old = unsafe { libc::sbrk(incr as libc::intptr_t) } as usize;
    (old != SBRK_FAILED).then_some(old)
}

/// Everything behind the source's lock.
struct State {
    /// The break value we last set; 0 before the first growth.
    top: usize,
    free: FreeTable,
}

impl State {
    /// Raise the break for an aligned span of `size` bytes.
    fn grow(&mut self, size: usize, align: usize) -> Result<Span, SourceError> {
        let _break = BREAK_LOCK.guard();
        // SAFETY: we hold BREAK_LOCK; sbrk(0) only reads the break.
        let cur = unsafe { sbrk(0) }.ok_or(SourceError::OutOfMemory)?;
        // `cur != top` (first use, or someone else moved the break) starts a new region at the
        // first page above the break: that page is unmapped, so it reads as zero.
        let start = page_up(cur)
            .and_then(|base| align_up(base, align))
            .ok_or(SourceError::InvalidRequest)?;
        let end = start.checked_add(size).ok_or(SourceError::InvalidRequest)?;
        let incr = isize::try_from(end - cur).map_err(|_| SourceError::OutOfMemory)?;
        // SAFETY: we hold BREAK_LOCK and grow, which takes nobody's memory.
        let prev = unsafe { sbrk(incr) }.ok_or(SourceError::OutOfMemory)?;
        // What we own is exactly [prev, new_break). Normally prev == cur; if code on another
        // thread moved the break in between (it does not take our lock), place the span
        // inside what we actually got.
        let new_break = prev + incr as usize;
        self.top = new_break;
        let base = page_up(prev).unwrap_or(new_break).min(new_break);
        let limit = new_break & !(page_size() - 1);
        let fits =
            align_up(base, align).filter(|s| s.checked_add(size).is_some_and(|e| e <= limit));
        let Some(start) = fits else {
            // Lost the race: keep the pages for later requests and report failure.
            self.free.insert(base, limit.max(base), true);
            return Err(SourceError::OutOfMemory);
        };
        // Pages between the observed break and the new one were unmapped: they read as zero.
        // Padding below the span and (after a race) slack above it go into the table; if it
        // is full they stay unused (lost address space, no physical memory).
        self.free.insert(base, start, true);
        self.free.insert(start + size, limit, true);
        Ok(Span {
            ptr: start as *mut u8,
            size,
            zeroed: true,
        })
    }

    /// Give `[start, end)` (free, ours, not in the table) back to the kernel by lowering the
    /// break, if it ends at `top` and the break is still there. A free range directly below
    /// goes with it. Returns whether the break was lowered.
    fn lower_break(&mut self, start: usize, end: usize) -> bool {
        if end != self.top {
            return false;
        }
        let _break = BREAK_LOCK.guard();
        // SAFETY: we hold BREAK_LOCK; sbrk(0) only reads the break.
        if unsafe { sbrk(0) } != Some(self.top) {
            return false;
        }
        let below = self.free.pop_ending_at(start);
        let low = below.map_or(start, |r| r.start);
        let Ok(decr) = isize::try_from(self.top - low) else {
            return false;
        };
        // SAFETY: we hold BREAK_LOCK, the break is still our `top`, and `[low, top)` is ours
        // and free: the span being released plus (maybe) a free-table range adjoining it.
        if unsafe { sbrk(-decr) }.is_some() {
            self.top = low;
            return true;
        }
        if let Some(r) = below {
            // It came out of the table a moment ago, so its slot is free.
            self.free.insert(r.start, r.end, r.zeroed);
        }
        false
    }
}

/// A [`PageSource`] over the program break. Const-constructible; meant to live in a `static`.
pub struct BrkSource {
    lock: SpinLock,
    state: UnsafeCell<State>,
    /// Bytes in live spans (statistics only).
    mapped: AtomicUsize,
}

// SAFETY: `state` is only reached through `StateGuard`, which holds `lock`; the other fields are
// atomics.
unsafe impl Sync for BrkSource {}

/// Exclusive access to a source's state while its lock is held.
struct StateGuard<'a>(&'a BrkSource);

impl Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: the guard holds the source's lock, so no other reference to the state exists.
        unsafe { &*self.0.state.get() }
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.0.state.get() }
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.0.lock.unlock();
    }
}

impl BrkSource {
    /// A source that has taken nothing from the break yet.
    pub const fn new() -> Self {
        Self {
            lock: SpinLock::new(),
            state: UnsafeCell::new(State {
                top: 0,
                free: FreeTable::new(),
            }),
            mapped: AtomicUsize::new(0),
        }
    }

    /// Bytes currently handed out and not yet released.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Bytes below the break kept in the free table for reuse (takes the lock).
    pub fn free_bytes(&self) -> usize {
        let st = self.state();
        st.free.as_slice().iter().map(|r| r.end - r.start).sum()
    }

    fn state(&self) -> StateGuard<'_> {
        self.lock.lock();
        StateGuard(self)
    }
}

impl Default for BrkSource {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for BrkSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BrkSource")
            .field("mapped_bytes", &self.mapped_bytes())
            .finish_non_exhaustive()
    }
}

/// `madvise(MADV_DONTNEED)`: whether `[ptr, ptr + size)` now reads as zero.
///
/// # Safety
///
/// The range is page-aligned, ours, and nothing in it is in use.
unsafe fn purge(ptr: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the unused range; break memory is private anonymous, so dropped
    // pages read as zero afterwards. It fails (EINVAL) on mlock()ed pages, which keep their
    // contents.
    unsafe { libc::madvise(ptr.cast(), size, libc::MADV_DONTNEED) == 0 }
}

// SAFETY: spans come either from the free table (ranges we took from the break and that no
// live span covers) or from between the break we observed and the break we set, never from
// memory another `sbrk` caller took. They are page-aligned, `size` long and aligned as asked,
// and stay below the break until released (we lower the break only past released memory).
unsafe impl PageSource for BrkSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        let page = page_size();
        if size == 0 || size & (page - 1) != 0 || !align.is_power_of_two() || align < page {
            return Err(SourceError::InvalidRequest);
        }
        let mut st = self.state();
        let span = match st.free.take(size, align) {
            Some((start, zeroed)) => Span {
                ptr: start as *mut u8,
                size,
                zeroed,
            },
            None => st.grow(size, align)?,
        };
        self.mapped.fetch_add(size, Ordering::Relaxed);
        Ok(span)
    }

    fn reserve_zeroed(&self, size: usize) -> Option<*mut u8> {
        // Fresh break memory: it reads as zero and is committed page by page on first write.
        // It stays below every later span for good (the map lives as long as the process).
        let span = self.state().grow(size, PAGE_SIZE).ok()?;
        span.zeroed.then_some(span.ptr)
    }

    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        let start = ptr as usize;
        let end = start + size;
        self.mapped.fetch_sub(size, Ordering::Relaxed);
        if self.state().lower_break(start, end) {
            return;
        }
        // Purge outside the lock: it is a system call proportional to the size.
        // SAFETY: the caller gives the range up; it is page-aligned and ours.
        let zeroed = unsafe { purge(ptr, size) };
        let mut st = self.state();
        if !st.free.insert(start, end, zeroed) {
            // Table full and no neighbour to merge with: the range is forgotten (see the
            // crate docs). It is purged, so only address space is lost.
            return;
        }
        // While the lock was dropped, the span above may have gone and the break come down
        // to `end`: then the (merged) top range can go too.
        let top = st.top;
        if let Some(r) = st.free.pop_ending_at(top) {
            if !st.lower_break(r.start, r.end) {
                st.free.insert(r.start, r.end, r.zeroed);
            }
        }
    }

    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: forwarded: the caller passes a page-aligned unused range inside a live span.
        unsafe { purge(ptr, size) }
    }

    fn page_size(&self) -> usize {
        page_size()
    }

    unsafe fn protect(&self, ptr: *mut u8, size: usize, accessible: bool) -> bool {
        // SAFETY: forwarded: a page-aligned range of a live span of ours.
        unsafe { os_glue::protect(ptr, size, accessible) }
    }

    fn now_ms(&self) -> u64 {
        os_glue::now_ms()
    }

    fn entropy(&self) -> u64 {
        os_glue::entropy()
    }

    fn yield_now(&self) {
        os_glue::yield_now()
    }

    fn before_fork(&self) {
        self.lock.lock();
    }

    unsafe fn after_fork(&self) {
        self.lock.unlock();
    }
}
