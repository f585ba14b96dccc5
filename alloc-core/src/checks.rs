//! Heap misuse: what the core detects and how it hands the report to its embedder.
//!
//! Detection costs one compare on each free:
//! * **Double free.** Every free writes a *canary* into the block's second word: the block's
//!   address mixed with a per-page secret. Every malloc clears it. A block freed a second time
//!   still carries its canary (user code cannot forge it without the secret), whichever thread
//!   freed it first and whichever list it now sits on. Blocks are at least 16 bytes, so the
//!   second word is always inside the block.
//! * **Invalid free.** The pointer's 4 MiB chunk must be in the [segment map](crate::segment_map)
//!   (else it was never ours: a stack, a global, a wild address) and sit exactly on a block
//!   boundary of an in-use page (else it is an interior pointer), checked with a multiply by a
//!   precomputed reciprocal instead of a division.
//! * **Free-list damage.** Links are stored encoded (XOR with a secret drawn at start-up, then
//!   rotated); a decoded link that leaves its page means a use-after-free write hit the list.

use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The entry point through which misuse was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `free` (and `free_sized`, `free_aligned_sized`, `GlobalAlloc::dealloc`).
    Free,
    /// `realloc` and friends.
    Realloc,
    /// `malloc_usable_size`.
    UsableSize,
    /// `malloc` and friends, finding a damaged free list.
    Malloc,
}

impl Call {
    /// The C name of the call, as printed in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Call::Free => "free",
            Call::Realloc => "realloc",
            Call::UsableSize => "malloc_usable_size",
            Call::Malloc => "malloc",
        }
    }
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MisuseKind {
    /// The block was already free.
    DoubleFree,
    /// The pointer was never handed out by this allocator, or points inside a block.
    InvalidPointer,
    /// A free list holds a link outside its page: memory was written after being freed.
    CorruptFreeList,
}

/// One detected misuse, handed to the allocator's misuse handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Misuse {
    /// The call that found it.
    pub call: Call,
    /// What it is.
    pub kind: MisuseKind,
    /// The pointer involved.
    pub ptr: usize,
}

impl fmt::Display for Misuse {
    /// `free(): double free of 0x7f...` — one line, no allocation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            MisuseKind::DoubleFree if self.call == Call::Free => "double free of",
            MisuseKind::DoubleFree => "pointer already freed:",
            MisuseKind::InvalidPointer => "invalid pointer (not allocated by pagebreak)",
            MisuseKind::CorruptFreeList => "free list corrupted (use after free?) near",
        };
        write!(f, "{}(): {} {:#x}", self.call.name(), what, self.ptr)
    }
}

/// The default handler: panic with the report. Embedders that cannot unwind (the C library)
/// install one that writes the line to stderr and aborts.
pub fn panic_on_misuse(misuse: &Misuse) -> ! {
    panic!("pagebreak: {misuse}")
}

/// The process-wide handler (null: [`panic_on_misuse`]). One handler for every allocator in
/// the process: how to report is a property of the program, not of a heap.
static HANDLER: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Install the misuse handler: called with the report of a double free, an invalid pointer or
/// a damaged free list; it must not return.
pub fn set_misuse_handler(handler: fn(&Misuse) -> !) {
    HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Hand `misuse` to the installed handler.
#[cold]
#[inline(never)]
pub fn report(misuse: Misuse) -> ! {
    let raw = HANDLER.load(Ordering::Acquire);
    if raw.is_null() {
        panic_on_misuse(&misuse)
    }
    // SAFETY: the only non-null value ever stored is a `fn(&Misuse) -> !` cast to a pointer.
    let handler: fn(&Misuse) -> ! =
        unsafe { core::mem::transmute::<*mut (), fn(&Misuse) -> !>(raw) };
    handler(&misuse)
}
