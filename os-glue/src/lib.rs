//! What the OS-backed page sources share: a cheap monotonic clock (for purge delays),
//! entropy (for the free-list secret) and the kernel's page size, from the C library (vDSO
//! and auxiliary vector: no real system calls), a yield for spin waits, and page protection
//! (`mprotect`, for guarded blocks). `no_std`, allocates nothing.
#![cfg_attr(not(test), no_std)]

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// `clock_gettime(clock)` in nanoseconds, 0 if the clock is unavailable.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Monotonic milliseconds. The coarse clock (tick resolution) is enough to delay purging and
/// is the cheapest one the vDSO offers.
pub fn now_ms() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE) / 1_000_000
}

/// The kernel's page size: 4 KiB on x86-64; 4, 16 or 64 KiB on aarch64, chosen when the
/// kernel was built. Read once from the auxiliary vector (`AT_PAGESZ`, what `sysconf` reads
/// too), then cached.
pub fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: getauxval and sysconf only read process state; no preconditions.
    let from_auxv = unsafe { libc::getauxval(libc::AT_PAGESZ) } as usize;
    let page = if from_auxv.is_power_of_two() {
        from_auxv
    } else {
        // SAFETY: as above.
        match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 && (n as usize).is_power_of_two() => n as usize,
            _ => 4096,
        }
    };
    PAGE_SIZE.store(page, Ordering::Relaxed);
    page
}

/// Give the CPU to another runnable thread (`sched_yield`): what a spin wait does once its
/// backoff is spent, so a preempted lock holder can run.
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// `mprotect`: make `[ptr, ptr + size)` inaccessible (`PROT_NONE`) or readable and writable
/// again. Returns whether it worked (it fails with ENOMEM when the split would pass
/// `vm.max_map_count`).
///
/// # Safety
///
/// The range is page-aligned, mapped, and owned by the caller; nothing uses it while it is
/// inaccessible.
pub unsafe fn protect(ptr: *mut u8, size: usize, accessible: bool) -> bool {
    let prot = if accessible {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_NONE
    };
    // SAFETY: per the contract the range is the caller's own mapping.
    unsafe { libc::mprotect(ptr.cast(), size, prot) == 0 }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A random 64-bit value: the kernel's 16 `AT_RANDOM` bytes (set at exec), mixed with the fine
/// clock, a stack address (ASLR) and a call counter so that successive calls differ.
pub fn entropy() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: getauxval only reads the auxiliary vector; it has no preconditions.
    let at = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
    let seed = if at.is_null() {
        0
    } else {
        // SAFETY: AT_RANDOM, when present, points at 16 readable bytes that live for the whole
        // process; they need not be 8-aligned, hence the unaligned reads.
        unsafe { at.cast::<u64>().read_unaligned() ^ at.add(8).cast::<u64>().read_unaligned() }
    };
    let probe = 0u8;
    let stack = core::ptr::addr_of!(probe) as u64;
    let clock = clock_ns(libc::CLOCK_MONOTONIC);
    mix64(seed ^ mix64(clock ^ stack.rotate_left(32) ^ calls.wrapping_mul(GOLDEN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_running() {
        let a = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = now_ms();
        assert!(a > 0 && b >= a + 10, "{a} -> {b}");
    }

    #[test]
    fn page_size_is_the_kernels() {
        // SAFETY: plain libc call.
        let sysconf = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert_eq!(page_size(), sysconf);
        assert_eq!(page_size(), sysconf, "cached value");
        assert!([4096, 16384, 65536].contains(&page_size()));
    }

    #[test]
    fn entropy_differs_between_calls() {
        let values: std::collections::HashSet<u64> = (0..64).map(|_| entropy()).collect();
        assert_eq!(values.len(), 64);
    }
}
