//! Size classes: 16-byte steps up to 128 bytes, then four classes per doubling up to
//! [`LARGE_MAX`]. Worst-case internal waste is 20% (a size just past a class boundary, e.g.
//! 129 -> 160); averaged over sizes it is about 8%. Every class size is a multiple of 16, so
//! every block is 16-byte aligned.

/// Largest block served from 64 KiB pages (at least 8 blocks per page).
pub const SMALL_MAX: usize = 8 * 1024;
/// Largest block served from 512 KiB pages (at least 4 blocks per page).
pub const MEDIUM_MAX: usize = 128 * 1024;
/// Largest size-class block: blocks above [`MEDIUM_MAX`] up to this get a run of 64 KiB slots
/// of their own inside a segment (packed, so a 200 KiB block costs 256 KiB, not a 4 MiB
/// mapping); bigger requests get a span of their own from the page source.
pub const LARGE_MAX: usize = 1024 * 1024;
/// Number of size classes, counting the unused class 0.
pub const NUM_CLASSES: usize = 61;
/// Requests up to this size find their page with one table load (`Heap::direct`).
pub const DIRECT_MAX: usize = 1024;
/// Entries of the direct table: one per 16 bytes, 0..=DIRECT_MAX.
pub const DIRECT_SLOTS: usize = DIRECT_MAX / 16 + 1;
/// Smallest class whose blocks live in medium (512 KiB) pages.
pub const FIRST_MEDIUM_CLASS: usize = class_of(SMALL_MAX) + 1;
/// Smallest class whose blocks each get a run of slots.
pub const FIRST_LARGE_CLASS: usize = class_of(MEDIUM_MAX) + 1;

/// The kind of page a class lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// 64 KiB pages of many blocks.
    Small = 0,
    /// 512 KiB pages of at least four blocks.
    Medium = 1,
    /// One block per page, the page a run of 64 KiB slots.
    Large = 2,
}

/// The size class of a request of `size` bytes (`1 <= size <= LARGE_MAX`; 0 is treated as 1).
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= 128 {
        if size == 0 {
            1
        } else {
            (size + 15) >> 4
        }
    } else {
        let s = size - 1;
        let w = (usize::BITS - 1 - s.leading_zeros()) as usize;
        let sub = (s >> (w - 2)) & 3;
        8 + (w - 7) * 4 + sub + 1
    }
}

/// Block size of class `class` (`1 <= class < NUM_CLASSES`).
#[inline]
pub const fn class_size(class: usize) -> usize {
    if class <= 8 {
        class * 16
    } else {
        let w = 7 + (class - 9) / 4;
        let sub = (class - 9) % 4;
        (1 << w) + ((sub + 1) << (w - 2))
    }
}

/// The kind of page blocks of `class` live in.
#[inline]
pub const fn page_kind(class: usize) -> PageKind {
    if class < FIRST_MEDIUM_CLASS {
        PageKind::Small
    } else if class < FIRST_LARGE_CLASS {
        PageKind::Medium
    } else {
        PageKind::Large
    }
}

/// The smallest class that holds `size` bytes and whose block size is a multiple of `align`
/// (so every block of a page that starts `align`-aligned is aligned). `None` when no class up to
/// [`LARGE_MAX`] fits. At most four steps: the next power-of-two class always qualifies.
/// Large classes start each block on a 64 KiB slot, so any alignment up to that fits them.
#[inline]
pub const fn aligned_class(size: usize, align: usize) -> Option<usize> {
    let want = if size > align { size } else { align };
    if want > LARGE_MAX || align > 1 << 16 {
        return None;
    }
    let mut class = class_of(want);
    while class < NUM_CLASSES {
        if class >= FIRST_LARGE_CLASS || class_size(class).is_multiple_of(align) {
            return Some(class);
        }
        class += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_and_are_monotonic() {
        let mut prev = 0;
        for class in 1..NUM_CLASSES {
            let size = class_size(class);
            assert!(size > prev, "class {class} size {size} not above {prev}");
            assert_eq!(size % 16, 0);
            assert_eq!(class_of(size), class, "class_of(class_size({class}))");
            assert_eq!(class_of(prev + 1), class, "first size of class {class}");
            prev = size;
        }
        assert_eq!(prev, LARGE_MAX);
        assert_eq!(class_size(NUM_CLASSES - 1), LARGE_MAX);
        assert_eq!(class_size(FIRST_LARGE_CLASS - 1), MEDIUM_MAX);
    }

    #[test]
    fn every_size_fits_with_bounded_waste() {
        // Every size natively; a prime stride under Miri, which is ~1000x slower.
        let step = if cfg!(miri) { 97 } else { 1 };
        for size in (1..=LARGE_MAX).step_by(step) {
            let block = class_size(class_of(size));
            assert!(block >= size);
            // Worst case: 16-byte rounding below 128, one quarter-step (20%) above.
            if size > 128 {
                assert!((block - size) * 5 <= block, "size {size} -> {block}");
            } else {
                assert!(block - size < 16);
            }
        }
    }

    #[test]
    fn page_kinds_split_at_the_limits() {
        assert_eq!(class_size(FIRST_MEDIUM_CLASS - 1), SMALL_MAX);
        assert_eq!(page_kind(class_of(SMALL_MAX)), PageKind::Small);
        assert_eq!(page_kind(class_of(SMALL_MAX + 1)), PageKind::Medium);
        assert_eq!(page_kind(class_of(MEDIUM_MAX)), PageKind::Medium);
        assert_eq!(page_kind(class_of(MEDIUM_MAX + 1)), PageKind::Large);
    }

    #[test]
    fn aligned_class_is_a_multiple() {
        for shift in 4..=16 {
            let align = 1usize << shift;
            for size in [1, 17, 100, 1000, 5000, 40_000, 100_000] {
                if let Some(c) = aligned_class(size, align) {
                    assert!(class_size(c) >= size);
                    if c < FIRST_LARGE_CLASS {
                        assert_eq!(class_size(c) % align, 0);
                    }
                    assert!(class_size(c) <= 2 * size.max(align));
                } else {
                    assert!(size.max(align) > LARGE_MAX / 2);
                }
            }
        }
    }
}
