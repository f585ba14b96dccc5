//! Waiting for another thread on a cold path: spin with exponential backoff (crossbeam's
//! `Backoff`: 1, 2, 4 ... 1024 spin hints, about 2,000 in all, a few microseconds), then hand
//! the CPU to the OS through the page source on every later look. With 128 threads on 2 cores, a lock holder or a remote free
//! mid-notification may be preempted for a whole time slice (4 ms): spinning through ours
//! would only delay it.

use crossbeam_utils::Backoff;

use crate::source::PageSource;

/// A waiter: call it once per look at the awaited condition.
#[inline]
pub(crate) fn waiter<S: PageSource + ?Sized>(source: &S) -> impl FnMut() + '_ {
    let backoff = Backoff::new();
    move || {
        if backoff.is_completed() {
            source.yield_now();
        } else {
            backoff.snooze();
        }
    }
}
