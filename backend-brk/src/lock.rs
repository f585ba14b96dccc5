//! A const-initialisable spin lock: the critical sections are a few table operations and at
//! most a couple of `brk` calls, so spinning (then yielding) beats a futex's bookkeeping.

use core::sync::atomic::{AtomicBool, Ordering};

/// Spins before each `sched_yield`, so a preempted holder gets the CPU back.
const SPINS: u32 = 100;

pub(crate) struct SpinLock(AtomicBool);

impl SpinLock {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Take the lock; pair with [`unlock`](Self::unlock) (or use [`guard`](Self::guard)).
    pub(crate) fn lock(&self) {
        loop {
            if !self.0.swap(true, Ordering::Acquire) {
                return;
            }
            // Wait on a plain load so the cache line stays shared while it is held.
            let mut spins = 0;
            while self.0.load(Ordering::Relaxed) {
                if spins < SPINS {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    spins = 0;
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }

    /// Release the lock taken by [`lock`](Self::lock).
    pub(crate) fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Take the lock until the guard is dropped.
    pub(crate) fn guard(&self) -> SpinGuard<'_> {
        self.lock();
        SpinGuard(self)
    }
}

pub(crate) struct SpinGuard<'a>(&'a SpinLock);

impl Drop for SpinGuard<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}
