//! Small helpers: a spin lock for cold paths, bit mixing, alignment arithmetic.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::source::PageSource;
use crate::wait::waiter;

/// Round `x` up to a multiple of `align` (a power of two). `None` on overflow.
#[inline]
pub const fn align_up(x: usize, align: usize) -> Option<usize> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// splitmix64's finaliser: spreads every input bit over the whole word.
#[inline]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hint that `addr` will be read soon (a prefetch into L1; no fault for any address, so a
/// stale or null one is harmless). A no-op where there is no stable prefetch instruction, and
/// under Miri.
#[inline(always)]
pub fn prefetch(addr: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch reads nothing the program can observe and never faults.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            core::ptr::without_provenance(addr),
        )
    };
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: as above: `prfm` is a hint that never faults and touches no register but its
    // address operand.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, preserves_flags, readonly))
    };
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    let _ = addr;
}

/// A test-and-test-and-set lock for the allocator's cold paths (segment hand-off, the span
/// cache, the heap pool). Never taken on a malloc/free fast path. `const`-constructible so it
/// can live in a `static`, and it allocates nothing. A waiter spins with backoff, then
/// yields through the page source (see *Waiting* in [`source`](crate::source)): with more
/// threads than cores, the holder may be preempted, and spinning only delays it.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`, so sharing the lock shares `T` only
// between threads one at a time, which needs `T: Send` and no more.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Wait until the lock is ours, yielding through `source` once the backoff is spent.
    pub fn lock<S: PageSource + ?Sized>(&self, source: &S) -> SpinGuard<'_, T> {
        self.raw_lock(source);
        SpinGuard { lock: self }
    }

    /// Take the lock without a guard (for `fork` handlers, which lock in one callback and
    /// unlock in another).
    pub fn raw_lock<S: PageSource + ?Sized>(&self, source: &S) {
        let mut wait = waiter(source);
        loop {
            if !self.locked.swap(true, Ordering::Acquire) {
                return;
            }
            // Wait on plain loads so the line stays shared while the lock is held.
            while self.locked.load(Ordering::Relaxed) {
                wait();
            }
        }
    }

    /// Release a lock taken with [`raw_lock`](Self::raw_lock).
    ///
    /// # Safety
    ///
    /// The caller holds the lock through `raw_lock` and no guard exists.
    pub unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Make the lock free again in a child process after `fork()`, whatever its state was.
    ///
    /// # Safety
    ///
    /// Only the calling thread exists (the child right after `fork`), so no one else can be
    /// inside the critical section.
    pub unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Access to a [`SpinLock`]'s value while it is held.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other reference exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 16), Some(0));
        assert_eq!(align_up(1, 16), Some(16));
        assert_eq!(align_up(16, 16), Some(16));
        assert_eq!(align_up(usize::MAX, 16), None);
    }

    #[test]
    fn mix64_spreads_bits() {
        assert_ne!(mix64(1), mix64(2));
        assert_ne!(mix64(0x1000), 0x1000);
    }

    #[test]
    fn spin_lock_serialises() {
        let lock = SpinLock::new(0u64);
        // Static: the source's buffer is aligned to 4 MiB, too much for a test thread's stack.
        static SOURCE: crate::StaticSource<4096> = crate::StaticSource::new();
        let source = &SOURCE;
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        *lock.lock(source) += 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(source), 4000);
    }
}
