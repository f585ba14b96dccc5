//! A page's `thread_free` word: a stack of blocks other threads freed into the page (pushed
//! with one CAS, taken whole by the owner with one atomic AND), and in its two low bits the
//! delayed-free state, which says whether a remote free must also notify the owner.
//!
//! The word packs three fields: bits 0-1 the state; bits 4-47 the head block's address
//! (blocks are 16-byte aligned, and page segments lie below 2^48: `Allocator::new_segment`
//! refuses others); bits 48-63 how many blocks the stack holds, counted by the freers, so the
//! owner can take the stack without walking it (each step of that walk was a cache miss on a
//! block another core had just written: 40% of the cycles of a producer/consumer loop with 8
//! threads on 2 cores).
//!
//! States and who moves between them:
//!
//! ```text
//!   NO ──owner: page to full queue──▶ USE ──remote free: claims the notification──▶ FREEING
//!   ▲                                  │                                               │
//!   └──owner: page back from full──────┘◀──────remote: pushed onto delayed list─────────┘
//!   any ──owner: thread exit (waits out FREEING)──▶ NEVER ──adopter──▶ NO
//! ```
//!
//! The owner never overwrites FREEING: a remote thread in that state is reading the owner's
//! heap pointer and pushing onto its delayed list, so the heap must stay live (and the page
//! must stay in its full queue) until the remote thread leaves FREEING.

use super::AtomicWord;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// A remote free pushes onto `thread_free` only.
pub const DELAY_NO: usize = 0;
/// The page sits in its heap's full queue: the next remote free goes to the heap's delayed
/// list instead (so the owner learns the page has room again).
pub const DELAY_USE: usize = 1;
/// A remote thread is pushing onto the heap's delayed list right now.
pub const DELAY_FREEING: usize = 2;
/// The page is abandoned (no owner): remote frees only push onto `thread_free`.
pub const DELAY_NEVER: usize = 3;
/// The state bits of the word (blocks are 16-byte aligned, so their addresses leave them 0).
pub const DELAY_MASK: usize = 3;
/// Where the block count starts; block addresses must lie below `1 << COUNT_SHIFT`.
pub const COUNT_SHIFT: u32 = 48;
/// The count saturates here: a stack this long must be walked to be counted.
pub const COUNT_MAX: usize = usize::MAX >> COUNT_SHIFT;
/// The head block's address bits.
pub const ADDR_MASK: usize = ((1 << COUNT_SHIFT) - 1) & !DELAY_MASK;

/// Remote thread: free `block` (an address with the low bits clear) into the page.
///
/// Either pushes it onto the stack, calling `link(old_head)` first so the block's link
/// word is written before the CAS publishes it (Release), and returns `false`; or, in state
/// DELAY_USE, moves the page to DELAY_FREEING and returns `true`: the caller must then hand
/// the block to the owner ([`delayed::push`](super::delayed::push)) and call [`end_notify`].
#[inline(always)]
pub fn push<A: AtomicWord>(thread_free: &A, block: usize, mut link: impl FnMut(usize)) -> bool {
    debug_assert_eq!(
        block & !ADDR_MASK,
        0,
        "block address {block:#x} does not fit the word"
    );
    let mut current = thread_free.load(Relaxed);
    loop {
        let state = current & DELAY_MASK;
        let (new, notify) = if state == DELAY_USE {
            ((current & !DELAY_MASK) | DELAY_FREEING, true)
        } else {
            link(current & ADDR_MASK);
            let count = ((current >> COUNT_SHIFT) + 1).min(COUNT_MAX);
            (block | state | (count << COUNT_SHIFT), false)
        };
        match thread_free.compare_exchange_weak(current, new, AcqRel, Relaxed) {
            Ok(_) => return notify,
            Err(seen) => current = seen,
        }
    }
}

/// Remote thread: leave DELAY_FREEING for `state` (only the thread that entered it calls
/// this). Other remote frees may push blocks meanwhile, hence the loop.
#[inline(always)]
pub fn end_notify<A: AtomicWord>(thread_free: &A, state: usize) {
    let mut current = thread_free.load(Relaxed);
    loop {
        let new = (current & !DELAY_MASK) | state;
        match thread_free.compare_exchange_weak(current, new, AcqRel, Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Owner: set the delayed-free state, waiting out a remote thread that is mid-notification
/// (`wait` is called once per look at FREEING: it spins, then yields to the OS).
#[inline(always)]
pub fn set_delay<A: AtomicWord>(thread_free: &A, state: usize, mut wait: impl FnMut()) {
    let mut current = thread_free.load(Relaxed);
    loop {
        if current & DELAY_MASK == DELAY_FREEING {
            wait();
            current = thread_free.load(Relaxed);
            continue;
        }
        let new = (current & !DELAY_MASK) | state;
        match thread_free.compare_exchange_weak(current, new, AcqRel, Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Owner: the page goes to the full queue. Returns `true` if blocks were freed remotely
/// before DELAY_USE was set: those sent no notification, so the page must come back at once.
#[inline(always)]
pub fn enter_full<A: AtomicWord>(thread_free: &A, wait: impl FnMut()) -> bool {
    set_delay(thread_free, DELAY_USE, wait);
    has_blocks(thread_free)
}

/// Owner: take every block on the stack, keeping the state. Returns the head's address (0 if
/// none) and how many blocks the stack holds ([`COUNT_MAX`]: at least that many, walk them to
/// know). Acquire pairs with [`push`]'s Release, so the links the freers wrote are visible.
#[inline(always)]
pub fn take<A: AtomicWord>(thread_free: &A) -> (usize, usize) {
    if !has_blocks(thread_free) {
        return (0, 0);
    }
    let word = thread_free.fetch_and(DELAY_MASK, Acquire);
    (word & ADDR_MASK, word >> COUNT_SHIFT)
}

/// Whether the stack holds blocks (a hint: more may arrive at any time).
#[inline(always)]
pub fn has_blocks<A: AtomicWord>(thread_free: &A) -> bool {
    thread_free.load(Relaxed) & ADDR_MASK != 0
}
