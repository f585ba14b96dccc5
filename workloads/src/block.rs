//! Blocks that carry their own check: the first 16 bytes hold the size and a seed, the rest
//! a pattern derived from both, so whoever frees a block (often another thread, long after)
//! can tell whether anything overwrote it.

/// Smallest block: the header.
pub const MIN_SIZE: usize = 16;
/// Up to this many bytes every word is written and checked; past it one word in 64 (every
/// 512 bytes) and the last word: checking a whole 4 MiB block would be the whole workload.
const FULL_CHECK: usize = 512;

fn pattern(seed: u64, word: usize) -> u64 {
    (seed ^ word as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Word indexes written and checked in a block of `size` bytes (the header's two excluded).
fn positions(size: usize) -> impl Iterator<Item = usize> {
    let words = size / 8;
    let step = if size <= FULL_CHECK { 1 } else { 64 };
    let last = (words > 2 && !(words - 1 - 2).is_multiple_of(step)).then_some(words - 1);
    (2..words).step_by(step).chain(last)
}

/// malloc `size` bytes (at least [`MIN_SIZE`]) and fill them; null if malloc failed.
pub fn make(size: usize, seed: u64) -> *mut u8 {
    let size = size.max(MIN_SIZE);
    // SAFETY: plain malloc.
    let p = unsafe { libc::malloc(size) }.cast::<u8>();
    if p.is_null() {
        return p;
    }
    // SAFETY: `p` holds `size` bytes, 16-byte aligned.
    unsafe {
        p.cast::<u64>().write(size as u64);
        p.cast::<u64>().add(1).write(seed);
        for i in positions(size) {
            p.cast::<u64>().add(i).write(pattern(seed, i));
        }
    }
    p
}

/// Check a block made by [`make`] and free it. Aborts the process with a report if its
/// contents changed (a corrupting allocator must not look like a passing run).
///
/// # Safety
///
/// `p` came from [`make`] and is freed only here, once.
pub unsafe fn check_and_free(p: *mut u8) {
    // SAFETY: per the contract the header and the pattern bytes are ours to read.
    unsafe {
        let size = p.cast::<u64>().read() as usize;
        let seed = p.cast::<u64>().add(1).read();
        if !(MIN_SIZE..1 << 30).contains(&size) {
            corrupt(p, 0, size as u64);
        }
        for i in positions(size) {
            if p.cast::<u64>().add(i).read() != pattern(seed, i) {
                corrupt(p, i * 8, size as u64);
            }
        }
        libc::free(p.cast());
    }
}

#[cold]
fn corrupt(p: *mut u8, offset: usize, size: u64) -> ! {
    eprintln!("CORRUPTED block {p:p} (size {size}) at offset {offset}");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_at_every_size_kind() {
        for (i, size) in [16usize, 17, 100, 8192, 8193, 70_000, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let p = make(size, i as u64 * 77);
            assert!(!p.is_null());
            // SAFETY: made above, freed once.
            unsafe { check_and_free(p) };
        }
    }

    #[test]
    fn checked_positions_cover_both_ends() {
        let big: Vec<usize> = positions(100_000).collect();
        assert_eq!(big[0], 2);
        assert_eq!(*big.last().unwrap(), 100_000 / 8 - 1);
        let small: Vec<usize> = positions(100).collect();
        assert_eq!(small, (2..12).collect::<Vec<_>>());
        assert_eq!(positions(16).count(), 0);
    }

    #[test]
    #[should_panic]
    fn an_overwritten_word_is_caught() {
        // The abort path would kill the test harness: check the comparison itself.
        let p = make(64, 5);
        // SAFETY: a 64-byte block made above.
        unsafe {
            p.cast::<u64>().add(3).write(0);
            let seed = p.cast::<u64>().add(1).read();
            let changed = positions(64).any(|i| p.cast::<u64>().add(i).read() != pattern(seed, i));
            libc::free(p.cast());
            assert!(!changed);
        }
    }
}
