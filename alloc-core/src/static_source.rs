//! A [`PageSource`] over a fixed, statically allocated byte array: no OS at all. For
//! embedders (a kernel, firmware, a sandbox) and for running the core under Miri.

use core::cell::UnsafeCell;

use crate::source::{PageSource, SourceError, Span, PAGE_SIZE};
use crate::util::{align_up, SpinLock};
use crate::SEGMENT_SIZE;

/// Released ranges remembered for reuse; a release that finds the table full is dropped
/// (its address range is lost), which only fragmented, long-running use can hit.
const FREE_RANGES: usize = 32;

#[repr(C, align(4194304))]
struct Arena<const N: usize>(UnsafeCell<[u8; N]>);

const _: () = assert!(core::mem::align_of::<Arena<0>>() == SEGMENT_SIZE);

struct State {
    /// Bytes of the arena handed out from the bottom (the bump pointer).
    top: usize,
    /// Everything at or above this offset was never handed out, so it still reads as zero
    /// (`top` can fall back below it when released memory folds into the top).
    fresh: usize,
    /// Released ranges below `top`, as (offset, length).
    free: [(usize, usize); FREE_RANGES],
}

/// `N` bytes of memory in a `static`, handed out in 4 MiB-aligned spans.
///
/// ```
/// use alloc_core::{Allocator, StaticSource};
/// static ARENA: StaticSource<{ 8 << 20 }> = StaticSource::new();
/// static ALLOC: Allocator<&StaticSource<{ 8 << 20 }>> = Allocator::new(&ARENA);
/// let heap = ALLOC.new_heap();
/// let p = unsafe { ALLOC.malloc(heap, 64) };
/// assert!(!p.is_null());
/// ```
pub struct StaticSource<const N: usize> {
    arena: Arena<N>,
    state: SpinLock<State>,
}

// SAFETY: the arena is only reached through spans handed out under `state`'s lock, each to one
// owner at a time.
unsafe impl<const N: usize> Sync for StaticSource<N> {}

impl<const N: usize> StaticSource<N> {
    /// An arena of `N` bytes, all free.
    pub const fn new() -> Self {
        StaticSource {
            arena: Arena(UnsafeCell::new([0; N])),
            state: SpinLock::new(State {
                top: 0,
                fresh: 0,
                free: [(0, 0); FREE_RANGES],
            }),
        }
    }

    fn base(&self) -> *mut u8 {
        self.arena.0.get().cast()
    }

    /// Bytes handed out from the bottom of the arena so far (released ranges included).
    pub fn high_water(&self) -> usize {
        self.state.lock(self).top
    }
}

impl<const N: usize> Default for StaticSource<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn add_free(&mut self, mut offset: usize, mut len: usize) {
        if len == 0 {
            return;
        }
        // Merge with released neighbours on either side.
        for i in 0..FREE_RANGES {
            let (o, l) = self.free[i];
            if l != 0 && (o + l == offset || offset + len == o) {
                self.free[i] = (0, 0);
                len += l;
                offset = offset.min(o);
            }
        }
        if offset + len == self.top {
            self.top = offset;
            // Ranges now touching the top fold into it too.
            while let Some(i) = self
                .free
                .iter()
                .position(|&(o, l)| l != 0 && o + l == self.top)
            {
                self.top = self.free[i].0;
                self.free[i] = (0, 0);
            }
            return;
        }
        if let Some(slot) = self.free.iter().position(|&(_, l)| l == 0) {
            self.free[slot] = (offset, len);
        }
    }
}

// SAFETY: spans are disjoint ranges of the arena (bump allocation plus reuse of released
// ranges, all under one lock), aligned as asked, and valid for the arena's lifetime ('static
// in practice; the allocator using a source must not outlive it).
unsafe impl<const N: usize> PageSource for StaticSource<N> {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        let mut state = self.state.lock(self);
        // Reuse a released range first (first fit, honouring alignment).
        for i in 0..FREE_RANGES {
            let (offset, len) = state.free[i];
            if len == 0 {
                continue;
            }
            let base = self.base() as usize;
            let Some(start) = align_up(base + offset, align).map(|a| a - base) else {
                continue;
            };
            if start + size > offset + len {
                continue;
            }
            state.free[i] = (0, 0);
            state.add_free(offset, start - offset);
            state.add_free(start + size, offset + len - start - size);
            return Ok(Span {
                ptr: self.base().wrapping_add(start),
                size,
                zeroed: false,
            });
        }
        let base = self.base() as usize;
        let start = align_up(base + state.top, align).ok_or(SourceError::InvalidRequest)? - base;
        let end = start.checked_add(size).ok_or(SourceError::InvalidRequest)?;
        if end > N {
            return Err(SourceError::OutOfMemory);
        }
        let pad = start - state.top;
        let old_top = state.top;
        state.top = end;
        if pad >= PAGE_SIZE {
            state.add_free(old_top, pad);
        }
        // The static starts zeroed; only memory never handed out before still is.
        let zeroed = start >= state.fresh;
        state.fresh = state.fresh.max(end);
        Ok(Span {
            ptr: self.base().wrapping_add(start),
            size,
            zeroed,
        })
    }

    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        let offset = ptr as usize - self.base() as usize;
        self.state.lock(self).add_free(offset, size);
    }

    unsafe fn purge(&self, _ptr: *mut u8, _size: usize) -> bool {
        // A static array has no physical pages to give back.
        false
    }

    fn before_fork(&self) {
        self.state.raw_lock(self);
    }

    unsafe fn after_fork(&self) {
        // SAFETY: before_fork took the lock.
        unsafe { self.state.raw_unlock() };
    }
}
