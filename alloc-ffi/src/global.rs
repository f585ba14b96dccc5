//! `GlobalAlloc` implementations: one per backend and [`PageBreak`] for the selected one.

use core::alloc::{GlobalAlloc, Layout};

/// Blocks are 16-byte aligned without asking.
const MIN_ALIGN: usize = 16;

macro_rules! global_alloc {
    ($ty:ident, $instance:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $ty;

        // SAFETY: the instance returns blocks of at least `layout.size()` bytes aligned to
        // `layout.align()`, disjoint while live, and accepts them back from any thread.
        unsafe impl GlobalAlloc for $ty {
            #[inline]
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                if layout.align() <= MIN_ALIGN {
                    crate::$instance::malloc(layout.size())
                } else {
                    crate::$instance::malloc_aligned(layout.size(), layout.align(), false)
                }
            }

            #[inline]
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                if layout.align() <= MIN_ALIGN {
                    crate::$instance::zalloc(layout.size())
                } else {
                    crate::$instance::malloc_aligned(layout.size(), layout.align(), true)
                }
            }

            #[inline]
            unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
                // SAFETY: `ptr` came from this allocator (GlobalAlloc contract).
                unsafe { crate::$instance::free(ptr) }
            }

            #[inline]
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                // SAFETY: `ptr` is live with `layout` (GlobalAlloc contract); the alignment is
                // kept across the move.
                unsafe { crate::$instance::realloc(ptr, new_size, layout.align().max(MIN_ALIGN)) }
            }
        }
    };
}

#[cfg(feature = "mmap")]
global_alloc!(
    MmapPageBreak,
    mmap,
    "pagebreak over anonymous `mmap` (feature `mmap`)."
);
#[cfg(feature = "brk")]
global_alloc!(
    BrkPageBreak,
    brk,
    "pagebreak over `brk`/`sbrk` (feature `brk`)."
);
global_alloc!(
    PageBreak,
    selected,
    "pagebreak over the selected backend (brk when enabled, else mmap): the one-line global allocator."
);
