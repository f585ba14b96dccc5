//! `tracing` events (feature `tracing`), emitted at the edge of a slow-path call, where the
//! heap is consistent and no lock is held: a subscriber that allocates is served normally.
//! Events compare the allocator's source counters before and after the call, so memory
//! mapped or unmapped anywhere inside it (a new segment, a span released from the cache, a
//! purge) is reported once. A thread-local guard keeps a subscriber's own allocations from
//! emitting events of their own.

use core::cell::Cell;

use alloc_core::SourceCounters;

thread_local! {
    static IN_EVENT: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` unless this thread is already emitting an event.
fn guarded(f: impl FnOnce()) {
    if IN_EVENT.with(|g| g.replace(true)) {
        return;
    }
    f();
    IN_EVENT.with(|g| g.set(false));
}

/// Report what changed between two snapshots of the source counters, and an out-of-memory.
pub(crate) fn after_call(
    backend: &'static str,
    before: SourceCounters,
    after: SourceCounters,
    size: usize,
    failed: bool,
) {
    if before == after && !failed {
        return;
    }
    guarded(|| {
        if after.reserved > before.reserved {
            tracing::debug!(target: "pagebreak", backend, bytes = after.reserved - before.reserved, reserved = after.reserved, segments = after.segments, "mapped");
        } else if after.reserved < before.reserved {
            tracing::debug!(target: "pagebreak", backend, bytes = before.reserved - after.reserved, reserved = after.reserved, segments = after.segments, "unmapped");
        }
        if after.purges > before.purges {
            tracing::debug!(target: "pagebreak", backend, purges = after.purges - before.purges, bytes = after.purged_bytes - before.purged_bytes, "purged");
        }
        if failed {
            tracing::warn!(target: "pagebreak", backend, size, reserved = after.reserved, "out of memory");
        }
    });
}

/// Report a misuse (just before the process aborts).
pub(crate) fn misuse(report: &str) {
    guarded(|| tracing::error!(target: "pagebreak", report, "heap misuse"));
}
