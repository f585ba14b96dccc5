//! First-class heaps: [`Arena`].

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use alloc_core::Heap;
use allocator_api2::alloc::{AllocError, Allocator};

use crate::selected;

/// Blocks are 16-byte aligned without asking.
const MIN_ALIGN: usize = 16;

/// A heap of its own: allocate from it, free blocks one by one if you like, and free all of
/// them at once by dropping it.
///
/// An arena is a pagebreak heap that no thread is bound to. Allocation goes through `&Arena`,
/// which implements allocator-api2's [`Allocator`](allocator_api2::alloc::Allocator) (stable
/// Rust) and, with feature `nightly`, `core::alloc::Allocator`: `Vec::new_in(&arena)`,
/// `Box::new_in(value, &arena)`. The borrow ties every container to the arena, so none can
/// outlive it; a container that is leaked (`mem::forget`, `Box::leak`) is freed with the arena
/// all the same.
///
/// ```
/// use allocator_api2::boxed::Box;
/// use allocator_api2::vec::Vec;
/// use pagebreak::Arena;
///
/// let arena = Arena::new();
/// let mut boxes = Vec::new_in(&arena);
/// for i in 0..1000 {
///     boxes.push(Box::new_in(i * 2, &arena));
/// }
/// assert_eq!(*boxes[500], 1000);
/// drop(boxes); // optional: blocks may be freed one by one...
/// drop(arena); // ...and whatever is left goes here, all at once.
/// ```
///
/// The arena draws from the [`selected`](crate::selected) instance, the one the C API and
/// [`PageBreak`](crate::PageBreak) use: its blocks count in
/// [`selected::stats()`](crate::selected::stats), and its memory goes back to that instance's
/// span cache when the arena is dropped.
///
/// # Threads
///
/// `Arena` is [`Send`] but not [`Sync`]. The heap inside has no lock: its fast paths pop and
/// push plain free lists that only the heap's owner may touch (that is what makes them about
/// a dozen instructions). Not being `Sync` means `&Arena`, and so every `Vec<T, &Arena>`, stays
/// on one thread, and the heap has one user at a time. Being `Send`, the arena may move to
/// another thread once nothing borrows it, and carry on there.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<pagebreak::Arena>(); // error: `Cell<()>` is not `Sync`
/// ```
///
/// # Over-aligned types
///
/// Any power-of-two alignment up to [`MAX_ALIGN`](alloc_core::MAX_ALIGN) (1 GiB) is served,
/// and kept when a block grows or shrinks:
///
/// ```
/// use allocator_api2::vec::Vec;
/// use pagebreak::Arena;
///
/// #[repr(align(64))]
/// struct CacheLine([u8; 64]);
///
/// let arena = Arena::new();
/// let mut lines: Vec<CacheLine, &Arena> = Vec::with_capacity_in(100, &arena);
/// lines.push(CacheLine([7; 64]));
/// assert_eq!(lines.as_ptr() as usize % 64, 0);
/// ```
pub struct Arena {
    heap: NonNull<Heap>,
    /// `Cell` makes the arena `!Sync` (and the raw pointer above would make it `!Send`,
    /// which `unsafe impl Send` below undoes).
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the heap is reached only through the arena; moving the arena moves the heap's one
// user to another thread, with the happens-before edge the move itself provides. A pagebreak
// heap has no affinity to the thread that created it.
unsafe impl Send for Arena {}

impl Arena {
    /// A new, empty arena.
    ///
    /// # Panics
    ///
    /// When the page source cannot provide memory for the heap itself (see
    /// [`try_new`](Self::try_new) to handle that).
    pub fn new() -> Arena {
        match Arena::try_new() {
            Ok(arena) => arena,
            Err(AllocError) => panic!("pagebreak: out of memory creating an arena"),
        }
    }

    /// A new, empty arena, or [`AllocError`] when out of memory.
    pub fn try_new() -> Result<Arena, AllocError> {
        selected::init();
        let heap = NonNull::new(selected::ALLOC.new_arena_heap()).ok_or(AllocError)?;
        Ok(Arena {
            heap,
            _not_sync: PhantomData,
        })
    }

    fn heap(&self) -> *mut Heap {
        self.heap.as_ptr()
    }

    /// A block for `layout` (any power-of-two alignment up to
    /// [`MAX_ALIGN`](alloc_core::MAX_ALIGN)); `None` when out of memory. The block may be
    /// freed with [`dealloc`](Self::dealloc), or left for the arena's drop, after which the
    /// pointer dangles.
    pub fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc_impl(layout, false)
    }

    /// As [`alloc`](Self::alloc), with every byte of the block zero. Memory fresh from the
    /// page source is known to be zero and is not cleared again.
    pub fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc_impl(layout, true)
    }

    #[inline]
    fn alloc_impl(&self, layout: Layout, zero: bool) -> Option<NonNull<u8>> {
        let heap = self.heap();
        // SAFETY: the heap is live until drop and used by this thread alone (`Arena: !Sync`).
        let p = unsafe {
            if layout.align() <= MIN_ALIGN {
                if zero {
                    selected::ALLOC.zalloc(heap, layout.size())
                } else {
                    selected::ALLOC.malloc(heap, layout.size())
                }
            } else {
                selected::ALLOC.malloc_aligned(heap, layout.size(), layout.align(), zero)
            }
        };
        NonNull::new(p)
    }

    /// Free one block now instead of at the arena's drop.
    ///
    /// # Safety
    ///
    /// `p` came from this arena ([`alloc`](Self::alloc) or the `Allocator` methods), is live,
    /// and is not used afterwards. A double free is detected, reported and aborts.
    pub unsafe fn dealloc(&self, p: NonNull<u8>) {
        // SAFETY: the heap is live and ours on this thread; the caller vouches for `p`.
        unsafe { selected::ALLOC.free(self.heap(), p.as_ptr()) }
    }

    /// Resize the block at `p`, allocated with `old`, to `new.size()` bytes aligned to
    /// `new.align()`, in place when pagebreak can. Bytes up to the smaller size are kept.
    /// `None` when out of memory, and then `p` is untouched.
    ///
    /// # Safety
    ///
    /// `p` is a live block of this arena allocated with layout `old`.
    pub unsafe fn realloc(&self, p: NonNull<u8>, old: Layout, new: Layout) -> Option<NonNull<u8>> {
        if new.align() <= old.align() {
            // The block already has (at least) the new alignment, and the core's realloc keeps
            // the one it is told when it moves the block.
            // SAFETY: `p` is live in this arena, which this thread alone uses, and aligned to
            // `new.align()` because it is to `old.align()`.
            let q = unsafe {
                selected::ALLOC.realloc(
                    self.heap(),
                    p.as_ptr(),
                    new.size(),
                    new.align().max(MIN_ALIGN),
                )
            };
            return NonNull::new(q);
        }
        // More alignment than the block has: move it.
        let q = self.alloc(new)?;
        // SAFETY: both blocks are live and distinct; each holds at least the bytes copied.
        unsafe {
            ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), old.size().min(new.size()));
            self.dealloc(p);
        }
        Some(q)
    }
}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena").field("heap", &self.heap).finish()
    }
}

impl Drop for Arena {
    /// Free every block the arena handed out, at once, and return the heap to the pool.
    fn drop(&mut self) {
        // SAFETY: the heap came from `new_arena_heap`; `&mut self` proves nothing borrows the
        // arena, so no container of it is alive, and no thread uses the heap. Raw pointers
        // from `alloc` dangle from here on, as documented.
        unsafe { selected::ALLOC.destroy_heap(self.heap()) }
    }
}

/// A slice pointer for a block of `len` bytes.
fn block(p: NonNull<u8>, len: usize) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(p, len)
}

/// `grow_zeroed`'s tail: zero `[old, new)` of the block at `p`.
///
/// # Safety
///
/// `p` is valid for writes of `new` bytes and `old <= new`.
unsafe fn zero_tail(p: NonNull<u8>, old: usize, new: usize) {
    // SAFETY: per the contract the range lies inside the block.
    unsafe { p.as_ptr().add(old).write_bytes(0, new - old) }
}

/// `Allocator for &Arena`, written once for both traits of that shape (allocator-api2's
/// on stable, `core::alloc`'s on nightly): it expands against the `Allocator`,
/// `AllocError` and `Layout` in scope where it is used.
macro_rules! impl_allocator_for_arena {
    () => {
        // SAFETY: blocks are at least `layout.size()` bytes, aligned to `layout.align()`, disjoint
        // while live, and stay valid until deallocated or until the arena drops, which the `&Arena`
        // borrow held by every user of this impl cannot outlive. `&Arena` copies share one heap and
        // are all on the arena's thread (`Arena: !Sync`).
        unsafe impl Allocator for &Arena {
            #[inline]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                self.alloc(layout)
                    .map(|p| block(p, layout.size()))
                    .ok_or(AllocError)
            }

            #[inline]
            fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                self.alloc_zeroed(layout)
                    .map(|p| block(p, layout.size()))
                    .ok_or(AllocError)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
                // SAFETY: `ptr` is a live block of this arena (the trait's contract).
                unsafe { self.dealloc(ptr) }
            }

            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old_layout: Layout,
                new_layout: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: `ptr` is live with `old_layout` (the trait's contract).
                unsafe { self.realloc(ptr, old_layout, new_layout) }
                    .map(|p| block(p, new_layout.size()))
                    .ok_or(AllocError)
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old_layout: Layout,
                new_layout: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: `ptr` is live with `old_layout`; the grown block holds `new_layout.size()`
                // bytes, at least `old_layout.size()` (the trait's contract).
                unsafe {
                    let p = self
                        .realloc(ptr, old_layout, new_layout)
                        .ok_or(AllocError)?;
                    zero_tail(p, old_layout.size(), new_layout.size());
                    Ok(block(p, new_layout.size()))
                }
            }

            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old_layout: Layout,
                new_layout: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: `ptr` is live with `old_layout` (the trait's contract).
                unsafe { self.realloc(ptr, old_layout, new_layout) }
                    .map(|p| block(p, new_layout.size()))
                    .ok_or(AllocError)
            }
        }
    };
}

impl_allocator_for_arena!();

/// The same implementation for the standard library's unstable `Allocator` trait, so
/// `std::vec::Vec::new_in(&arena)` works on nightly.
#[cfg(feature = "nightly")]
mod nightly {
    use core::alloc::{AllocError, Allocator, Layout};
    use core::ptr::NonNull;

    use super::{block, zero_tail, Arena};

    impl_allocator_for_arena!();
}
