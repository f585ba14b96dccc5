//! A page: a run of memory holding blocks of one size class, with three free lists
//! (mimalloc's free-list sharding):
//! * `free`: blocks malloc pops from, owner only;
//! * `local_free`: blocks the owner frees; swapped into `free` when it runs dry, so the
//!   malloc fast path never meets a block freed a moment ago (better locality for the list);
//! * `thread_free`: an atomic stack other threads push onto with one CAS; the owner takes it
//!   whole with one atomic AND.
//!
//! Block links are encoded with the page's key (see [`checks`](crate::checks)).

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::protocol::thread_free;

/// A free block: its first word is the encoded link, its second the double-free canary.
#[repr(C)]
pub(crate) struct Block {
    pub(crate) next: usize,
    pub(crate) canary: usize,
}

use crate::protocol::thread_free::DELAY_NO;

const LINK_ROTATE: u32 = 23;
/// Blocks linked per page extension: touch at most 4 KiB of a fresh page at a time, so a
/// thread that allocates a few blocks does not fault in a whole 64 KiB page.
const EXTEND_BYTES: usize = 4096;

/// Page metadata, kept out of band in its segment's header. The first cache line holds
/// everything the malloc and free fast paths touch.
#[repr(C, align(64))]
pub struct Page {
    // --- first cache line: the fast paths ---
    pub(crate) free: *mut Block,
    pub(crate) key: usize,
    pub(crate) start: *mut u8,
    /// Inverse (mod 2^64) of the block size's odd part: see [`Page::raw_is_block_start`].
    pub(crate) block_inv: u64,
    pub(crate) local_free: *mut Block,
    pub(crate) heap: AtomicUsize,
    /// Blocks handed out and not freed locally (at most 4096 per page).
    pub(crate) used: u16,
    pub(crate) in_full: bool,
    pub(crate) class: u8,
    /// Bytes of the page that hold blocks.
    pub(crate) area: u32,
    /// Blocks the page holds (`area / block_size`).
    pub(crate) reserved: u16,
    /// Trailing zero bits of the block size.
    pub(crate) block_shift: u8,
    // --- slow paths ---
    pub(crate) capacity: u16,
    pub(crate) free_is_zero: bool,
    pub(crate) zero_init: bool,
    pub(crate) in_use: bool,
    /// Slots of the segment the page spans (large pages: several).
    pub(crate) slots: u8,
    /// `used` as last reported to the heap's per-class statistics.
    pub(crate) published: u16,
    /// Blocks at the head of `held` not yet counted by the sampler.
    pub(crate) held_fresh: u16,
    /// What the sample at the head of `held` is for (`SAMPLE_*` bits).
    pub(crate) held_kind: u8,
    pub(crate) block_size: usize,
    pub(crate) thread_free: AtomicUsize,
    pub(crate) next: *mut Page,
    pub(crate) prev: *mut Page,
    /// Free blocks held back behind a sample point (see [`sampling`](crate::sampling)); the
    /// fast path runs dry before them. Always null with sampling off.
    pub(crate) held: *mut Block,
}

const _: () = assert!(core::mem::size_of::<Page>() == 128);

/// Free blocks a used-up page needs before it serves again (see [`Page::may_leave_full`]).
pub(crate) const FULL_PAGE_ROOM: u16 = 2;

impl Page {
    /// Whether a used-up page (in its heap's full queue, or found with little free by the
    /// slow path) has room enough to serve again: [`FULL_PAGE_ROOM`] blocks free. With one,
    /// a block freed into a used-up page was the next one handed out, so a second free of it
    /// went unseen after 0 allocations; now it waits until the page gets a second free block
    /// or the heap runs out of other memory. An empty page always may (it is retired next).
    /// Waiting for more was measured: an eighth of the page (256 of 2048 small blocks) cost a
    /// churn loop 10% of its time, medians of 30 runs (freed blocks are reused later, when
    /// they are no longer in cache); two cost nothing measurable.
    ///
    /// # Safety
    ///
    /// `page` is a live page owned by the caller.
    #[inline]
    pub(crate) unsafe fn may_leave_full(page: *const Page) -> bool {
        // SAFETY: per the contract.
        unsafe {
            let free = (*page).capacity - (*page).used;
            (*page).used == 0 || free >= FULL_PAGE_ROOM.min((*page).reserved)
        }
    }

    /// An unused page: no blocks, and a start of 0 so every interior-pointer check fails.
    /// A template for initialising arrays of pages (each copy gets its own atomics).
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Page = Page {
        free: ptr::null_mut(),
        key: 0,
        start: ptr::null_mut(),
        used: 0,
        capacity: 0,
        block_inv: 0,
        block_shift: 0,
        block_size: 0,
        local_free: ptr::null_mut(),
        heap: AtomicUsize::new(0),
        in_full: false,
        area: 0,
        free_is_zero: false,
        zero_init: false,
        in_use: false,
        slots: 0,
        class: 0,
        reserved: 0,
        thread_free: AtomicUsize::new(0),
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        published: 0,
        held_fresh: 0,
        held_kind: 0,
        held: ptr::null_mut(),
    };

    /// Encode a link (block address, or 0 for the end of a list).
    #[inline(always)]
    pub(crate) fn encode(&self, addr: usize) -> usize {
        (addr ^ self.key).rotate_left(LINK_ROTATE)
    }

    /// Decode a link.
    #[inline(always)]
    pub(crate) fn decode(&self, word: usize) -> usize {
        word.rotate_right(LINK_ROTATE) ^ self.key
    }

    /// The canary of `addr`, read through a raw pointer: the block's address mixed with the
    /// page's key (unforgeable without the key; one XOR). Threads that do not own a page read
    /// its fixed fields (key, start, sizes) while the owner writes others (free, used), so
    /// those paths must not form a reference to the whole page: these `raw_` functions read
    /// field by field.
    ///
    /// # Safety
    ///
    /// `page` points to live page metadata.
    #[inline(always)]
    pub(crate) unsafe fn raw_canary(page: *const Page, addr: usize) -> usize {
        // SAFETY: per the contract; a plain field read, no reference to the page.
        addr ^ unsafe { (*page).key }
    }

    /// [`encode`](Self::encode) through a raw pointer (see [`raw_canary`](Self::raw_canary)).
    ///
    /// # Safety
    ///
    /// `page` points to live page metadata.
    #[inline(always)]
    pub(crate) unsafe fn raw_encode(page: *const Page, addr: usize) -> usize {
        // SAFETY: per the contract; a plain field read.
        (addr ^ unsafe { (*page).key }).rotate_left(LINK_ROTATE)
    }

    /// Whether `addr` is exactly the start of one of the page's blocks, with one multiply and
    /// one compare (read through a raw pointer, see [`raw_canary`](Self::raw_canary)).
    ///
    /// The block size is `odd << shift`. Multiplying the offset by the inverse of `odd` modulo
    /// 2^64 maps the multiples of `odd` onto 0, 1, 2, ... in order and every other value above
    /// 2^64 / odd; rotating right by `shift` then keeps multiples of the block size as their
    /// index and sends offsets with a nonzero low bit to the top. So the index is below
    /// `reserved` exactly for block starts (Granlund and Montgomery's divisibility test);
    /// offsets below the page start wrap to huge values and fail too.
    ///
    /// # Safety
    ///
    /// `page` points to live page metadata.
    #[inline(always)]
    pub(crate) unsafe fn raw_is_block_start(page: *const Page, addr: usize) -> bool {
        // SAFETY: per the contract; plain field reads.
        let (start, inv, shift, reserved) = unsafe {
            (
                (*page).start as usize,
                (*page).block_inv,
                (*page).block_shift,
                (*page).reserved,
            )
        };
        let offset = addr.wrapping_sub(start) as u64;
        offset.wrapping_mul(inv).rotate_right(shift as u32) < reserved as u64
    }

    /// Bytes of the page that hold blocks.
    #[inline(always)]
    pub(crate) fn area(&self) -> usize {
        self.area as usize
    }

    /// Whether a decoded link is a plausible list member (a block of this page, or the end).
    #[inline(always)]
    pub(crate) fn link_ok(&self, addr: usize) -> bool {
        addr == 0 || self.in_area(addr)
    }

    /// Whether `addr` lies in the bytes of the page that hold blocks (one subtract, one
    /// compare: an address below the start wraps past the area).
    #[inline(always)]
    pub(crate) fn in_area(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start as usize) < self.area()
    }

    /// Prepare an unused page slot at `start` (`area` bytes) for blocks of `class`.
    ///
    /// # Safety
    ///
    /// `start..start+area` is memory of the page's segment reserved for this page.
    pub(crate) unsafe fn init(
        page: *mut Page,
        start: *mut u8,
        area: usize,
        class: usize,
        secret: usize,
        zero: bool,
    ) {
        let size = crate::size_class::class_size(class);
        // SAFETY: the slot is unused (no block handed out, so no other thread reads it);
        // fields are written one by one through the raw pointer.
        unsafe {
            (*page).free = ptr::null_mut();
            (*page).local_free = ptr::null_mut();
            (*page).key = secret ^ (crate::util::mix64(start as u64) as usize);
            (*page).start = start;
            (*page).used = 0;
            (*page).capacity = 0;
            (*page).reserved = (area / size) as u16;
            (*page).area = ((*page).reserved as usize * size) as u32;
            (*page).block_size = size;
            (*page).block_shift = size.trailing_zeros() as u8;
            (*page).block_inv = odd_inverse((size >> size.trailing_zeros()) as u64);
            (*page).class = class as u8;
            (*page).in_full = false;
            (*page).free_is_zero = zero;
            (*page).zero_init = zero;
            (*page).in_use = true;
            (*page).thread_free.store(DELAY_NO, Ordering::Relaxed);
            (*page).next = ptr::null_mut();
            (*page).prev = ptr::null_mut();
            (*page).published = 0;
            (*page).held = ptr::null_mut();
            (*page).held_fresh = 0;
            (*page).held_kind = 0;
        }
    }

    /// Mark the slot unused again.
    ///
    /// # Safety
    ///
    /// `page` is a page slot whose blocks are all free (or dead with their arena).
    pub(crate) unsafe fn reset(page: *mut Page) {
        // SAFETY: the page holds no live block; fields are written through the raw pointer.
        unsafe {
            (*page).free = ptr::null_mut();
            (*page).local_free = ptr::null_mut();
            (*page).start = ptr::null_mut();
            (*page).block_size = 0;
            (*page).block_inv = 0;
            (*page).block_shift = 0;
            (*page).reserved = 0;
            (*page).area = 0;
            (*page).capacity = 0;
            (*page).used = 0;
            (*page).in_use = false;
            (*page).in_full = false;
            (*page).heap.store(0, Ordering::Relaxed);
            (*page).thread_free.store(DELAY_NO, Ordering::Relaxed);
            (*page).held = ptr::null_mut();
            (*page).held_fresh = 0;
        }
    }

    /// Rebuild a block pointer from a decoded address, with the page's provenance.
    #[inline(always)]
    pub(crate) fn block_at(&self, addr: usize) -> *mut Block {
        self.start.with_addr(addr).cast()
    }

    /// Link up to 4 KiB of never-used blocks into `free` (which must be empty). Returns how
    /// many.
    ///
    /// # Safety
    ///
    /// The page is in use, owned by the caller, and `free` is null.
    pub(crate) unsafe fn extend(page: *mut Page) -> usize {
        // SAFETY: the page is ours (contract); blocks first..first+count lie inside its area
        // (capacity + count <= reserved) and are not handed out, so we may write their links.
        unsafe {
            debug_assert!((*page).free.is_null());
            let size = (*page).block_size;
            let remaining = ((*page).reserved - (*page).capacity) as usize;
            let count = (EXTEND_BYTES / size)
                .clamp(1, remaining.max(1))
                .min(remaining);
            if count == 0 {
                return 0;
            }
            let first = (*page).capacity as usize;
            {
                let base = (*page).start.add(first * size);
                for i in 0..count {
                    let block = base.add(i * size).cast::<Block>();
                    let next = if i + 1 < count {
                        base.add((i + 1) * size) as usize
                    } else {
                        0
                    };
                    (*block).next = (*page).encode(next);
                }
                (*page).free = base.cast();
            }
            (*page).capacity += count as u16;
            (*page).free_is_zero = (*page).zero_init;
            count
        }
    }

    /// Take every block other threads freed into this page onto `free`, and move
    /// `local_free` to `free` if `free` is empty. Returns where on `free` the new blocks went
    /// (the sampler counts them), or the address of a damaged link (the caller reports it).
    /// While blocks are held behind a sample point nothing is taken: the held blocks go
    /// first.
    ///
    /// # Safety
    ///
    /// The page is in use and owned by the caller's heap.
    pub(crate) unsafe fn collect(page: *mut Page) -> Result<Batch, usize> {
        // SAFETY: the page is ours (contract): we read and write its owner fields through the
        // raw pointer, and the blocks on its lists are free blocks of it.
        unsafe {
            if !(*page).held.is_null() {
                return Ok(Batch::NONE);
            }
            let (taken, counted) = thread_free::take(&(*page).thread_free);
            let room = ((*page).capacity - (*page).used) as usize;
            if taken != 0
                && counted < thread_free::COUNT_MAX
                && ((*page).free.is_null() || room < counted)
            {
                // The freers counted the blocks: no walk of them. Each link is checked as
                // malloc pops it (as for `local_free`); a count beyond the live blocks is
                // damage. Blocks still on `free` (a used-up page waited in the full queue
                // with one or two) are the shorter list: the stack joins behind its tail.
                // Every block not in use is on `free` or `local_free`, so `room` bounds it.
                if counted > (*page).used as usize {
                    return Err(taken);
                }
                let behind = if (*page).free.is_null() {
                    (*page).free = (*page).block_at(taken);
                    0
                } else {
                    let (tail, behind) = Page::list_tail(page, (*page).free, room)?;
                    (*tail).next = (*page).encode(taken);
                    behind
                };
                (*page).used -= counted as u16;
                (*page).free_is_zero = false;
                return Ok(Batch {
                    behind,
                    len: counted,
                });
            }
            if taken != 0 {
                // Walk the taken stack to its tail to splice it in front of `free`, counting.
                // Its head was checked by the freer (raw_is_block_start).
                let head = (*page).block_at(taken);
                let (tail, count) = Page::list_tail(page, head, (*page).reserved as usize)?;
                (*tail).next = (*page).encode((*page).free as usize);
                (*page).free = head;
                (*page).used -= count as u16;
                (*page).free_is_zero = false;
                return Ok(Batch::at_head(count));
            }
            if (*page).free.is_null() && !(*page).local_free.is_null() {
                (*page).free = (*page).local_free;
                (*page).local_free = ptr::null_mut();
                (*page).free_is_zero = false;
                // Nothing else is free: every block not in use is on the list.
                return Ok(Batch::at_head(((*page).capacity - (*page).used) as usize));
            }
            Ok(Batch::NONE)
        }
    }

    /// The last block of the list starting at `head` and the list's length. A link outside
    /// the page, or a list longer than `max` blocks, is damage: the address of the last
    /// block reached.
    ///
    /// # Safety
    ///
    /// The page is owned by the caller's heap; `head` is a free block of it.
    unsafe fn list_tail(
        page: *const Page,
        head: *mut Block,
        max: usize,
    ) -> Result<(*mut Block, usize), usize> {
        // SAFETY: `tail` is a block of this page: the head per the contract, every later one
        // checked by link_ok before it is followed.
        unsafe {
            let mut count = 1;
            let mut tail = head;
            loop {
                let next = (*page).decode((*tail).next);
                if next == 0 {
                    return Ok((tail, count));
                }
                if !(*page).link_ok(next) || count >= max {
                    return Err(tail as usize);
                }
                tail = (*page).block_at(next);
                count += 1;
            }
        }
    }

    /// Whether other threads have freed blocks into this page that the owner has not taken.
    #[inline]
    pub(crate) fn has_thread_free(&self) -> bool {
        thread_free::has_blocks(&self.thread_free)
    }
}

/// Blocks that [`Page::collect`] put on a page's free list: `len` of them, after the first
/// `behind` blocks of the list (blocks that were already there and already counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) behind: usize,
    pub(crate) len: usize,
}

impl Batch {
    pub(crate) const NONE: Batch = Batch { behind: 0, len: 0 };

    pub(crate) const fn at_head(len: usize) -> Batch {
        Batch { behind: 0, len }
    }
}

/// The inverse of odd `x` modulo 2^64 (Newton's iteration: each step doubles the correct low
/// bits, from 3 for `x` itself).
pub(crate) const fn odd_inverse(x: u64) -> u64 {
    let mut inv = x;
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(x.wrapping_mul(inv)));
        i += 1;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::thread_free;
    use crate::size_class::class_of;

    #[test]
    fn encode_round_trips_and_hides_addresses() {
        let mut page = Page::EMPTY;
        page.key = 0x1234_5678_9abc_def0;
        for addr in [0usize, 16, 0x7f00_0000_1000] {
            assert_eq!(page.decode(page.encode(addr)), addr);
        }
        assert_ne!(page.encode(0), 0);
    }

    #[test]
    fn block_start_check_is_exact() {
        let mut buf = vec![0u8; 1 << 16];
        let start = buf.as_mut_ptr();
        for class in 1..crate::size_class::FIRST_MEDIUM_CLASS {
            let mut page = Page::EMPTY;
            // SAFETY: the buffer is 64 KiB, the size of a small page.
            unsafe { Page::init(&mut page, start, 1 << 16, class, 7, false) };
            let size = page.block_size;
            for offset in (0..(1usize << 16)).step_by(if cfg!(miri) { 16 * 13 } else { 16 }) {
                let expect = offset % size == 0 && offset / size < page.reserved as usize;
                assert_eq!(
                    unsafe { Page::raw_is_block_start(&page, start as usize + offset) },
                    expect,
                    "{size} {offset}"
                );
            }
            assert!(!unsafe { Page::raw_is_block_start(&page, start as usize + 8) });
            assert!(!unsafe {
                Page::raw_is_block_start(&page, (start as usize).wrapping_sub(size))
            });
        }
    }

    /// Run `test` on a page of 64-byte blocks (over a 64 KiB buffer) with every block handed
    /// out, given the block addresses in the order extend linked them.
    fn with_used_up_page(test: impl FnOnce(*mut Page, &[usize])) {
        let mut buf = vec![0u64; 1 << 13];
        let mut page = Page::EMPTY;
        let p = &raw mut page;
        let mut blocks = Vec::new();
        // SAFETY: the buffer is 64 KiB and outlives the page; the blocks linked by extend
        // are walked once.
        unsafe {
            Page::init(p, buf.as_mut_ptr().cast(), 1 << 16, class_of(64), 7, false);
            while (*p).capacity < (*p).reserved {
                Page::extend(p);
                let mut block = (*p).free;
                while !block.is_null() {
                    blocks.push(block as usize);
                    block = (*p).block_at((*p).decode((*block).next));
                }
                (*p).free = ptr::null_mut();
            }
            (*p).used = (*p).capacity;
        }
        test(p, &blocks);
    }

    /// Free `blocks` onto `page`'s free list (owner) or its thread-free stack (remote).
    ///
    /// # Safety
    ///
    /// The blocks are in-use blocks of `page`.
    unsafe fn give_back(page: *mut Page, blocks: &[usize], remote: bool) {
        for &addr in blocks {
            // SAFETY: per the contract.
            unsafe {
                let block = (*page).block_at(addr);
                if remote {
                    thread_free::push(&(*page).thread_free, addr, |head| {
                        (*block).next = (*page).encode(head)
                    });
                } else {
                    (*block).next = (*page).encode((*page).free as usize);
                    (*page).free = block;
                    (*page).used -= 1;
                }
            }
        }
    }

    /// The blocks on `page`'s free list, in order.
    fn free_list(page: &Page) -> Vec<usize> {
        let mut out = Vec::new();
        let mut block = page.free;
        while !block.is_null() {
            out.push(block as usize);
            // SAFETY: the list's blocks are blocks of the page's live buffer.
            block = page.block_at(page.decode(unsafe { (*block).next }));
        }
        out
    }

    fn sorted(mut v: Vec<usize>) -> Vec<usize> {
        v.sort_unstable();
        v
    }

    #[test]
    fn remote_frees_join_a_short_free_list_behind_its_tail() {
        with_used_up_page(|p, blocks| {
            // SAFETY: the page is live; the blocks given back are in use.
            unsafe {
                // A used-up page waiting in the full queue with one block on `free` (too few
                // to leave it); then 100 frees from other threads.
                give_back(p, &blocks[..1], false);
                give_back(p, &blocks[1..101], true);
                let batch = Page::collect(p).unwrap();
                assert_eq!(
                    batch,
                    Batch {
                        behind: 1,
                        len: 100
                    }
                );
                assert_eq!((*p).used as usize, blocks.len() - 101);
                let list = free_list(&*p);
                assert_eq!(
                    list[0], blocks[0],
                    "the block already on `free` stays first"
                );
                assert_eq!(sorted(list[1..].to_vec()), blocks[1..101]);
            }
        });
    }

    #[test]
    fn remote_frees_go_in_front_of_a_longer_free_list() {
        with_used_up_page(|p, blocks| {
            // SAFETY: as above.
            unsafe {
                give_back(p, &blocks[..10], false);
                give_back(p, &blocks[10..13], true);
                assert_eq!(Page::collect(p).unwrap(), Batch::at_head(3));
                assert_eq!((*p).used as usize, blocks.len() - 13);
                let list = free_list(&*p);
                assert_eq!(sorted(list[..3].to_vec()), blocks[10..13]);
                assert_eq!(sorted(list[3..].to_vec()), blocks[..10]);
            }
        });
    }

    #[test]
    fn a_free_list_longer_than_the_free_blocks_is_damage() {
        with_used_up_page(|p, blocks| {
            // SAFETY: as above.
            unsafe {
                give_back(p, &blocks[..2], false);
                // The page believes one block is free: the list's second block is one too many
                // (a block freed twice would look like this).
                (*p).used += 1;
                give_back(p, &blocks[2..50], true);
                assert!(Page::collect(p).is_err());
            }
        });
    }

    #[test]
    fn odd_inverse_is_exact() {
        for x in (1u64..2000).step_by(2).chain([u64::MAX, 0x8000_0001]) {
            assert_eq!(x.wrapping_mul(odd_inverse(x)), 1, "{x}");
        }
    }

    #[test]
    fn block_start_check_is_exact_for_every_class() {
        // A page's addresses are never dereferenced by the check: a fake 512 KiB-aligned
        // start suffices, and every class (medium and large included) is tried.
        let start = 0x7f00_0000_0000usize;
        for class in 1..crate::size_class::NUM_CLASSES {
            let size = crate::size_class::class_size(class);
            let area = if class < crate::size_class::FIRST_MEDIUM_CLASS {
                1 << 16
            } else {
                (1 << 19).max(size)
            };
            let mut page = Page::EMPTY;
            // SAFETY: init writes the page's fields only; the area is never touched.
            unsafe {
                Page::init(
                    &mut page,
                    core::ptr::without_provenance_mut(start),
                    area,
                    class,
                    7,
                    false,
                )
            };
            let blocks = page.reserved as usize;
            let step = if cfg!(miri) { 7 } else { 1 };
            for index in (0..blocks + 2).step_by(step) {
                for delta in [0usize, 16, 8, size - 16, size.wrapping_neg()] {
                    let offset = (index * size).wrapping_add(delta);
                    let expect = offset.is_multiple_of(size) && offset / size < blocks;
                    // SAFETY: the page is initialised.
                    let got =
                        unsafe { Page::raw_is_block_start(&page, start.wrapping_add(offset)) };
                    assert_eq!(got, expect, "class {class} size {size} offset {offset:#x}");
                }
            }
        }
    }
}
