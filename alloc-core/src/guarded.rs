//! Guarded blocks: a fixed pool of slots where a sampled allocation gets page(s) of its own,
//! against an inaccessible guard page, and stays inaccessible for a while after it is freed.
//! An overflow, an underflow (left-aligned mode) or a use after free then faults at the
//! offending instruction; the embedder's fault handler asks
//! [`Allocator::guarded_fault`](crate::Allocator::guarded_fault) what the address was.
//!
//! # Layout
//!
//! One span from the page source, reserved once: the slot records, then `slots` slots, each
//! a guard region followed by a data region of the same size (the largest eligible request
//! rounded up to a power of two, at least a page), and one last guard page. Every data region
//! has a guard on both sides, and ends on a multiple of twice its size, so a block of any
//! alignment up to the region size can be placed against either guard.
//!
//! ```text
//! [records][G G G G D D D D][G G G G D D D D] ... [G G G G D D D D][G]
//! ```
//!
//! A block is right-aligned (its end is the end of the data region, the request rounded up
//! to 16 bytes or its alignment: reading or writing one byte past the usable size faults), or
//! left-aligned (starts at the data region: an underflow faults). Only the pages the block
//! touches are made accessible; the rest stays inaccessible. Inaccessible address space costs
//! no memory: the default pool is 8 MiB of it.
//!
//! # Cost
//!
//! Bounded whatever the program does: the pool is reserved once (256 slots of 32 KiB of
//! address space by default, only live blocks' pages resident). When too few slots are free the
//! allocation falls back to a normal block. Frees keep the most recent `slots / 8` slots (at
//! least) in a FIFO quarantine, inaccessible.
//!
//! # OS calls
//!
//! None here: pages are made accessible or not through [`PageSource::protect`], and emptied
//! with [`PageSource::purge`]. A source that cannot protect leaves the pool off.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::checks::{report, Call, Misuse, MisuseKind};
use crate::segment_map::{SegmentMap, GUARDED};
use crate::source::PageSource;
use crate::util::{align_up, SpinLock};
use crate::{SEGMENT_SHIFT, SEGMENT_SIZE};

/// Return addresses kept per stack (innermost first).
pub const STACK_FRAMES: usize = 16;

/// Default number of slots.
pub const DEFAULT_SLOTS: usize = 256;
/// Default largest eligible request (bytes).
pub const DEFAULT_MAX_SIZE: usize = 16 << 10;
/// Most slots a pool may have (64 Ki slots of 32 KiB are 2 GiB of address space, far more
/// than anyone should want).
pub const MAX_SLOTS: usize = 1 << 16;
/// Largest `max_size` accepted (1 MiB).
pub const MAX_MAX_SIZE: usize = 1 << 20;

/// How the pool is laid out; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardedConfig {
    /// Slots in the pool (1 to [`MAX_SLOTS`]).
    pub slots: usize,
    /// Largest eligible request (1 byte to [`MAX_MAX_SIZE`]).
    pub max_size: usize,
    /// Blocks start at the beginning of their data region (catches underflows) instead of
    /// ending at its end (catches overflows).
    pub left_aligned: bool,
}

impl GuardedConfig {
    /// 256 slots, blocks up to 16 KiB, right-aligned.
    pub const DEFAULT: GuardedConfig = GuardedConfig {
        slots: DEFAULT_SLOTS,
        max_size: DEFAULT_MAX_SIZE,
        left_aligned: false,
    };
}

impl Default for GuardedConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// ------------------------------------------------------------------ stack capture

/// Fills the slice with return addresses, innermost first; returns how many it wrote. Must
/// not allocate, and must not take a lock that a malloc on another thread could hold.
pub type StackCapture = fn(&mut [usize]) -> usize;

static CAPTURE: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Install the stack walker used for the allocation and free stacks of guarded blocks (none
/// by default: the stacks stay empty).
pub fn set_stack_capture(capture: StackCapture) {
    CAPTURE.store(capture as *mut (), Ordering::Release);
}

/// The calling thread's id as the OS names it (`gettid` on Linux), for reports. Must not
/// allocate.
pub type ThreadId = fn() -> usize;

static THREAD_ID: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Install the function that names the thread allocating or freeing a guarded block (none by
/// default: reports then give no thread).
pub fn set_thread_id(thread_id: ThreadId) {
    THREAD_ID.store(thread_id as *mut (), Ordering::Release);
}

/// The function pointer of type `F` last stored in `slot` by its setter, if any.
///
/// # Safety
///
/// Every non-null value stored in `slot` is an `F` cast to a pointer.
unsafe fn installed<F: Copy>(slot: &AtomicPtr<()>) -> Option<F> {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*mut ()>()) };
    let raw = slot.load(Ordering::Acquire);
    // SAFETY: per the contract, a non-null `raw` is an `F` of the same size.
    (!raw.is_null()).then(|| unsafe { core::mem::transmute_copy::<*mut (), F>(&raw) })
}

/// The calling thread's id, 0 when no [`ThreadId`] is installed.
fn thread_id() -> usize {
    // SAFETY: `set_thread_id` stores only `ThreadId`s in THREAD_ID.
    unsafe { installed::<ThreadId>(&THREAD_ID) }.map_or(0, |f| f())
}

fn capture(out: &mut [usize; STACK_FRAMES]) -> usize {
    // SAFETY: `set_stack_capture` stores only `StackCapture`s in CAPTURE.
    unsafe { installed::<StackCapture>(&CAPTURE) }.map_or(0, |f| f(out).min(STACK_FRAMES))
}

// ------------------------------------------------------------------ records

/// A slot never used yet.
const SLOT_UNUSED: u8 = 0;
/// The slot's block is handed out.
const SLOT_LIVE: u8 = 1;
/// The slot's block was freed (the slot is in the quarantine, or handed out again soon).
const SLOT_FREED: u8 = 2;

/// Up to [`STACK_FRAMES`] return addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stack {
    frames: [usize; STACK_FRAMES],
    len: usize,
}

impl Stack {
    /// No frames.
    pub const EMPTY: Stack = Stack {
        frames: [0; STACK_FRAMES],
        len: 0,
    };

    /// The return addresses, innermost first.
    pub fn frames(&self) -> &[usize] {
        &self.frames[..self.len]
    }
}

/// What the pool remembers of a slot's latest block. Written under the pool lock (or, for
/// the free stack, by the thread that won the free); read without a lock by reports, hence
/// atomics throughout (a report racing a reuse may mix two blocks' fields, never crash).
struct SlotRecord {
    state: AtomicU8,
    /// The slot's pages may hold old bytes (the source's purge did not zero them).
    dirty: AtomicU8,
    block: AtomicUsize,
    requested: AtomicUsize,
    usable: AtomicUsize,
    alloc_len: AtomicUsize,
    free_len: AtomicUsize,
    alloc_thread: AtomicUsize,
    free_thread: AtomicUsize,
    alloc_stack: [AtomicUsize; STACK_FRAMES],
    free_stack: [AtomicUsize; STACK_FRAMES],
}

impl SlotRecord {
    fn store_stack(dst: &[AtomicUsize; STACK_FRAMES], len: &AtomicUsize, frames: &[usize]) {
        for (d, &f) in dst.iter().zip(frames) {
            d.store(f, Ordering::Relaxed);
        }
        len.store(frames.len(), Ordering::Release);
    }

    fn load_stack(src: &[AtomicUsize; STACK_FRAMES], len: &AtomicUsize) -> Stack {
        let mut stack = Stack::EMPTY;
        stack.len = len.load(Ordering::Acquire).min(STACK_FRAMES);
        for (d, s) in stack.frames.iter_mut().zip(src).take(stack.len) {
            *d = s.load(Ordering::Relaxed);
        }
        stack
    }
}

/// A snapshot of a guarded block, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardedBlock {
    /// The block's address.
    pub addr: usize,
    /// Bytes the program asked for.
    pub requested: usize,
    /// Bytes usable (`malloc_usable_size`): the request rounded up to its alignment.
    pub usable: usize,
    /// Still handed out (false: freed).
    pub live: bool,
    /// Where it was allocated.
    pub alloc_stack: Stack,
    /// Where it was freed (empty while live).
    pub free_stack: Stack,
    /// The thread that allocated it ([`set_thread_id`]'s id; 0 if unknown).
    pub alloc_thread: usize,
    /// The thread that freed it (0 while live, or if unknown).
    pub free_thread: usize,
}

/// What a faulting access to the pool was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Inside a freed block.
    UseAfterFree,
    /// Past the end of the nearest block.
    Overflow,
    /// Before the start of the nearest block.
    Underflow,
    /// In the pool, but no block was ever near.
    Wild,
}

/// A fault address explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardedFault {
    /// The kind of bug.
    pub kind: FaultKind,
    /// The faulting address.
    pub addr: usize,
    /// The block it belongs to (the nearest one), if any.
    pub block: Option<GuardedBlock>,
}

// ------------------------------------------------------------------ the pool

/// Where things are; written once by `enable`, read-only after `READY` is published.
#[derive(Clone, Copy)]
struct Geometry {
    /// The span (records first).
    span: *mut u8,
    span_size: usize,
    /// Offset of slot 0's guard region in the span (a multiple of `stride`).
    first: usize,
    /// Bytes per slot: a guard region and a data region, `data_bytes` each.
    stride: usize,
    slots: usize,
    data_bytes: usize,
    max_size: usize,
    left: bool,
    records: *const SlotRecord,
    /// The source's page size: the unit of protection.
    page: usize,
}

impl Geometry {
    /// Offset of slot `i`'s data region in the span.
    fn data_offset(&self, i: usize) -> usize {
        self.first + i * self.stride + self.data_bytes
    }

    /// # Safety
    /// `i < self.slots`.
    unsafe fn record(&self, i: usize) -> &SlotRecord {
        // SAFETY: the records array holds `slots` initialised records for the pool's life.
        unsafe { &*self.records.add(i) }
    }

    /// Whether `addr` lies in the slots' part of the span (guards included).
    fn in_slots(&self, addr: usize) -> bool {
        let start = self.span as usize + self.first;
        addr >= start && addr < start + self.slots * self.stride + self.page
    }

    /// The slot whose data region or leading guard region holds `addr` (the last guard page
    /// counts as slot `slots`), and the offset within it.
    fn slot_of(&self, addr: usize) -> (usize, usize) {
        let rel = addr - (self.span as usize + self.first);
        (rel / self.stride, rel % self.stride)
    }

    /// The pages `[lo, hi)` (span offsets) a block at span offset `off` of `usable` bytes
    /// touches.
    fn pages_of(&self, off: usize, usable: usize) -> (usize, usize) {
        let lo = off & !(self.page - 1);
        let hi = (off + usable + self.page - 1) & !(self.page - 1);
        (lo, hi)
    }
}

const OFF: u8 = 0;
const ENABLING: u8 = 1;
const READY: u8 = 2;

/// Slots not handed out, oldest free first: a ring of slot numbers in the records' span.
struct SlotQueue {
    ring: *mut u32,
    cap: usize,
    head: usize,
    len: usize,
    /// Slots always kept back (the quarantine's minimum).
    reserve: usize,
}
// SAFETY: the ring lives in the pool's span, used under the queue's lock only.
unsafe impl Send for SlotQueue {}

impl SlotQueue {
    fn pop(&mut self) -> Option<u32> {
        if self.len <= self.reserve {
            return None;
        }
        // SAFETY: head < cap, the ring holds cap entries.
        let slot = unsafe { *self.ring.add(self.head) };
        self.head = (self.head + 1) % self.cap;
        self.len -= 1;
        Some(slot)
    }

    fn push(&mut self, slot: u32) {
        debug_assert!(self.len < self.cap);
        let tail = (self.head + self.len) % self.cap;
        // SAFETY: tail < cap.
        unsafe { *self.ring.add(tail) = slot };
        self.len += 1;
    }
}

#[cold]
#[inline(never)]
fn bad(call: Call, kind: MisuseKind, ptr: usize) -> ! {
    report(Misuse { call, kind, ptr })
}

/// Counters of the pool (for statistics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardedStats {
    /// Slots in the pool (0: off).
    pub slots: usize,
    /// Blocks handed out from the pool so far.
    pub allocated: usize,
    /// Blocks live now.
    pub live: usize,
    /// Sampled requests that got a normal block because the pool had no slot to spare.
    pub pool_full: usize,
}

/// The guarded pool of one allocator. `const`-constructible; off until `enable`.
pub(crate) struct GuardedPool {
    state: AtomicU8,
    geometry: UnsafeCell<Geometry>,
    queue: SpinLock<SlotQueue>,
    allocated: AtomicUsize,
    live: AtomicUsize,
    pool_full: AtomicUsize,
}

// SAFETY: `geometry` is written once before `state` becomes READY (Release) and only read
// after READY is seen (Acquire); the rest are atomics or behind the lock.
unsafe impl Sync for GuardedPool {}

impl GuardedPool {
    pub(crate) const fn new() -> Self {
        GuardedPool {
            state: AtomicU8::new(OFF),
            geometry: UnsafeCell::new(Geometry {
                span: ptr::null_mut(),
                span_size: 0,
                first: 0,
                stride: 0,
                slots: 0,
                data_bytes: 0,
                max_size: 0,
                left: false,
                records: ptr::null(),
                page: crate::PAGE_SIZE,
            }),
            queue: SpinLock::new(SlotQueue {
                ring: ptr::null_mut(),
                cap: 0,
                head: 0,
                len: 0,
                reserve: 0,
            }),
            allocated: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            pool_full: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn geometry(&self) -> Option<&Geometry> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: READY was published after the last write to `geometry`.
        Some(unsafe { &*self.geometry.get() })
    }

    pub(crate) fn is_on(&self) -> bool {
        self.geometry().is_some()
    }

    /// Reserve the pool. Returns `false` (and leaves it off) when it is already on, the config
    /// is out of range, or the source cannot give or protect the memory.
    pub(crate) fn enable<S: PageSource>(
        &self,
        source: &S,
        map: &SegmentMap,
        config: GuardedConfig,
    ) -> bool {
        if !(1..=MAX_SLOTS).contains(&config.slots)
            || !(1..=MAX_MAX_SIZE).contains(&config.max_size)
        {
            return false;
        }
        if self
            .state
            .compare_exchange(OFF, ENABLING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // SAFETY: ENABLING is ours alone; nothing reads the geometry before READY.
        let ok = unsafe { self.reserve(source, map, config) };
        self.state
            .store(if ok { READY } else { OFF }, Ordering::Release);
        ok
    }

    /// # Safety
    /// Called once, by the thread that moved the state to ENABLING.
    unsafe fn reserve<S: PageSource>(
        &self,
        source: &S,
        map: &SegmentMap,
        config: GuardedConfig,
    ) -> bool {
        let page = source.page_size();
        let data_bytes = config.max_size.next_power_of_two().max(page);
        let stride = 2 * data_bytes;
        let meta = config.slots * (core::mem::size_of::<SlotRecord>() + 4);
        // The span is SEGMENT_SIZE-aligned and stride divides it: slots start stride-aligned.
        let Some(first) = align_up(meta, stride) else {
            return false;
        };
        // Whole 4 MiB chunks: the map marks chunks, and no other block may share one.
        let Some(span_size) = align_up(first + config.slots * stride + page, SEGMENT_SIZE) else {
            return false;
        };
        // SAFETY: a non-zero page multiple, aligned to SEGMENT_SIZE.
        let Ok(span) = (unsafe { source.alloc(span_size, SEGMENT_SIZE) }) else {
            return false;
        };
        // The records first, then the protection. Writing them gives the mapping its anonymous
        // memory object before part of it becomes inaccessible; Linux then keeps the
        // protected part's commit accounting (it drops it from a mapping never written), so a
        // slot protected again after use matches its neighbours and the kernel merges them:
        // without this, each used slot of a brk-backed pool stayed two extra mappings.
        let records = span.ptr.cast::<SlotRecord>();
        // SAFETY: the records and the ring fit in the first `first` bytes (accessible), and
        // SlotRecord's alignment (8) divides the page-aligned span start.
        unsafe {
            for i in 0..config.slots {
                ptr::write(
                    records.add(i),
                    SlotRecord {
                        state: AtomicU8::new(SLOT_UNUSED),
                        dirty: AtomicU8::new(!span.zeroed as u8),
                        block: AtomicUsize::new(0),
                        requested: AtomicUsize::new(0),
                        usable: AtomicUsize::new(0),
                        alloc_len: AtomicUsize::new(0),
                        free_len: AtomicUsize::new(0),
                        alloc_thread: AtomicUsize::new(0),
                        free_thread: AtomicUsize::new(0),
                        alloc_stack: [const { AtomicUsize::new(0) }; STACK_FRAMES],
                        free_stack: [const { AtomicUsize::new(0) }; STACK_FRAMES],
                    },
                );
            }
        }
        // SAFETY: the slots' part of the span is ours and page-aligned.
        let protected = unsafe { source.protect(span.ptr.add(first), span_size - first, false) };
        let mut mapped = protected;
        let mut chunk = 0;
        while mapped && chunk < span_size >> SEGMENT_SHIFT {
            mapped = map.set(
                source,
                span.ptr as usize + (chunk << SEGMENT_SHIFT),
                GUARDED,
            );
            chunk += 1;
        }
        if !mapped {
            for c in 0..chunk {
                map.clear(span.ptr as usize + (c << SEGMENT_SHIFT));
            }
            if protected {
                // SAFETY: as above; accessible again before the span goes back.
                unsafe { source.protect(span.ptr.add(first), span_size - first, true) };
            }
            // SAFETY: the whole span we got, unused.
            unsafe { source.release(span.ptr, span.size) };
            return false;
        }
        let records = span.ptr.cast::<SlotRecord>();
        // SAFETY: as above.
        unsafe {
            let ring = records.add(config.slots).cast::<u32>();
            let mut queue = self.queue.lock(source);
            queue.ring = ring;
            queue.cap = config.slots;
            queue.head = 0;
            queue.len = 0;
            queue.reserve = config.slots / 8;
            for i in 0..config.slots {
                queue.push(i as u32);
            }
            drop(queue);
            *self.geometry.get() = Geometry {
                span: span.ptr,
                span_size,
                first,
                stride,
                slots: config.slots,
                data_bytes,
                max_size: config.max_size,
                left: config.left_aligned,
                records,
                page,
            };
        }
        true
    }

    /// A guarded block of `size` bytes aligned to `align`, or null: pool off, request not
    /// eligible (bigger than a data region once rounded up to `align`), pool full, or the
    /// source failed.
    ///
    /// # Safety
    ///
    /// `source` is the source the pool was enabled with.
    pub(crate) unsafe fn alloc<S: PageSource>(
        &self,
        source: &S,
        size: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        let Some(g) = self.geometry() else {
            return ptr::null_mut();
        };
        if size > g.max_size || align > g.data_bytes {
            return ptr::null_mut();
        }
        let usable = match align_up(size.max(1), align.max(16)) {
            Some(u) if u <= g.data_bytes => u,
            _ => return ptr::null_mut(),
        };
        let Some(slot) = self.queue.lock(source).pop() else {
            self.pool_full.fetch_add(1, Ordering::Relaxed);
            return ptr::null_mut();
        };
        let slot = slot as usize;
        let data = g.data_offset(slot);
        let off = if g.left {
            data
        } else {
            data + g.data_bytes - usable
        };
        let (lo, hi) = g.pages_of(off, usable);
        // SAFETY: [lo, hi) is inside the slot's data region of our span, page-aligned.
        if !unsafe { source.protect(g.span.add(lo), hi - lo, true) } {
            self.queue.lock(source).push(slot as u32);
            return ptr::null_mut();
        }
        let mut stack = [0usize; STACK_FRAMES];
        let frames = capture(&mut stack);
        // SAFETY: slot < slots.
        let record = unsafe { g.record(slot) };
        // SAFETY: the block lies in the span, now accessible.
        let block = unsafe { g.span.add(off) };
        record.block.store(block as usize, Ordering::Relaxed);
        record.requested.store(size, Ordering::Relaxed);
        record.usable.store(usable, Ordering::Relaxed);
        SlotRecord::store_stack(&record.alloc_stack, &record.alloc_len, &stack[..frames]);
        record.alloc_thread.store(thread_id(), Ordering::Relaxed);
        record.free_len.store(0, Ordering::Relaxed);
        record.free_thread.store(0, Ordering::Relaxed);
        if zero && record.dirty.load(Ordering::Relaxed) != 0 {
            // SAFETY: the block's `usable` bytes are accessible and ours.
            unsafe { ptr::write_bytes(block, 0, usable) };
        }
        record.state.store(SLOT_LIVE, Ordering::Release);
        self.allocated.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        block
    }

    /// The live record of the block `p`; reports a freed block (double free) or a pointer
    /// that is no block of the pool (invalid).
    fn live_record(&self, p: usize, call: Call) -> (&Geometry, usize, &SlotRecord) {
        let misuse = |kind| bad(call, kind, p);
        let Some(g) = self.geometry() else {
            misuse(MisuseKind::InvalidPointer)
        };
        if !g.in_slots(p) {
            misuse(MisuseKind::InvalidPointer)
        }
        let (slot, _) = g.slot_of(p);
        if slot >= g.slots {
            misuse(MisuseKind::InvalidPointer)
        }
        // SAFETY: slot < slots.
        let record = unsafe { g.record(slot) };
        if record.block.load(Ordering::Relaxed) != p {
            misuse(MisuseKind::InvalidPointer)
        }
        match record.state.load(Ordering::Acquire) {
            SLOT_LIVE => (g, slot, record),
            SLOT_FREED => misuse(MisuseKind::DoubleFree),
            _ => misuse(MisuseKind::InvalidPointer),
        }
    }

    /// Free the guarded block `p`: its pages are emptied and made inaccessible, and its slot
    /// joins the quarantine's tail. Reports a double or invalid free.
    ///
    /// # Safety
    ///
    /// `source` is the source the pool was enabled with; `p`'s map entry is [`GUARDED`].
    pub(crate) unsafe fn free<S: PageSource>(&self, source: &S, p: *mut u8, call: Call) {
        let (g, slot, record) = self.live_record(p as usize, call);
        if record
            .state
            .compare_exchange(SLOT_LIVE, SLOT_FREED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread freed it between our check and here.
            bad(call, MisuseKind::DoubleFree, p as usize);
        }
        let mut stack = [0usize; STACK_FRAMES];
        let frames = capture(&mut stack);
        SlotRecord::store_stack(&record.free_stack, &record.free_len, &stack[..frames]);
        record.free_thread.store(thread_id(), Ordering::Relaxed);
        let off = p as usize - g.span as usize;
        let (lo, hi) = g.pages_of(off, record.usable.load(Ordering::Relaxed));
        // SAFETY: the block's pages, in our span; the block is dead (we won the free).
        unsafe {
            let zeroed = source.purge(g.span.add(lo), hi - lo);
            record.dirty.store(!zeroed as u8, Ordering::Relaxed);
            source.protect(g.span.add(lo), hi - lo, false);
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.queue.lock(source).push(slot as u32);
    }

    /// Usable bytes of the live guarded block `p`; reports otherwise.
    pub(crate) fn usable_size(&self, p: *mut u8, call: Call) -> usize {
        let (_, _, record) = self.live_record(p as usize, call);
        record.usable.load(Ordering::Relaxed)
    }

    fn snapshot(record: &SlotRecord) -> Option<GuardedBlock> {
        let live = match record.state.load(Ordering::Acquire) {
            SLOT_LIVE => true,
            SLOT_FREED => false,
            _ => return None,
        };
        Some(GuardedBlock {
            addr: record.block.load(Ordering::Relaxed),
            requested: record.requested.load(Ordering::Relaxed),
            usable: record.usable.load(Ordering::Relaxed),
            live,
            alloc_stack: SlotRecord::load_stack(&record.alloc_stack, &record.alloc_len),
            free_stack: if live {
                Stack::EMPTY
            } else {
                SlotRecord::load_stack(&record.free_stack, &record.free_len)
            },
            alloc_thread: record.alloc_thread.load(Ordering::Relaxed),
            free_thread: if live {
                0
            } else {
                record.free_thread.load(Ordering::Relaxed)
            },
        })
    }

    /// Whether `addr` lies in the pool's span.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.geometry()
            .is_some_and(|g| addr >= g.span as usize && addr - (g.span as usize) < g.span_size)
    }

    /// Explain a fault at `addr`: `None` unless it lies in the pool's slots. The block chosen
    /// is the nearest of the slot's and its neighbours' latest blocks (the one containing
    /// `addr` first; a tie goes to a live block, then to the lower one: overflows are more
    /// common than underflows). Lock-free: callable from a signal handler.
    pub(crate) fn fault(&self, addr: usize) -> Option<GuardedFault> {
        let g = self.geometry()?;
        if !g.in_slots(addr) {
            return None;
        }
        let (slot, _) = g.slot_of(addr);
        let mut best: Option<(usize, GuardedBlock)> = None;
        for i in slot.saturating_sub(1)..=(slot + 1).min(g.slots - 1) {
            // SAFETY: i < slots.
            let Some(block) = Self::snapshot(unsafe { g.record(i) }) else {
                continue;
            };
            let end = block.addr + block.usable;
            let distance = if addr < block.addr {
                block.addr - addr
            } else if addr >= end {
                addr - end + 1
            } else {
                0
            };
            let better = match &best {
                None => true,
                Some((d, b)) => distance < *d || (distance == *d && block.live && !b.live),
            };
            if better {
                best = Some((distance, block));
            }
        }
        let Some((_, block)) = best else {
            return Some(GuardedFault {
                kind: FaultKind::Wild,
                addr,
                block: None,
            });
        };
        let kind = if addr < block.addr {
            FaultKind::Underflow
        } else if addr >= block.addr + block.usable {
            FaultKind::Overflow
        } else if block.live {
            // A live block's pages are accessible: something else protected them.
            FaultKind::Wild
        } else {
            FaultKind::UseAfterFree
        };
        Some(GuardedFault {
            kind,
            addr,
            block: Some(block),
        })
    }

    /// The latest block of the slot holding `addr` (data region or the guard before it).
    pub(crate) fn block_at(&self, addr: usize) -> Option<GuardedBlock> {
        let g = self.geometry()?;
        if !g.in_slots(addr) {
            return None;
        }
        let (slot, _) = g.slot_of(addr);
        if slot >= g.slots {
            return None;
        }
        // SAFETY: slot < slots.
        Self::snapshot(unsafe { g.record(slot) })
    }

    pub(crate) fn stats(&self) -> GuardedStats {
        GuardedStats {
            slots: self.geometry().map_or(0, |g| g.slots),
            allocated: self.allocated.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            pool_full: self.pool_full.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn before_fork<S: PageSource>(&self, source: &S) {
        self.queue.raw_lock(source);
    }

    /// # Safety
    /// Paired with `before_fork`.
    pub(crate) unsafe fn after_fork(&self, child: bool) {
        // SAFETY: before_fork took the lock; in the child no other thread exists.
        unsafe {
            if child {
                self.queue.force_unlock();
            } else {
                self.queue.raw_unlock();
            }
        }
    }
}

// ------------------------------------------------------------------ entry points

impl<S: PageSource> crate::Allocator<S> {
    /// Reserve the guarded pool (once; `false` if it is already on, the config is out of
    /// range, or the source cannot provide or protect the memory). Guarded blocks are then
    /// handed out by [`guarded_alloc`](Self::guarded_alloc), and `free`, `realloc` and
    /// `usable_size` recognise them by their segment-map entry.
    pub fn enable_guarded(&self, config: GuardedConfig) -> bool {
        self.guarded.enable(self.source(), &self.map, config)
    }

    /// Whether the guarded pool is on.
    pub fn guarded_enabled(&self) -> bool {
        self.guarded.is_on()
    }

    /// A guarded block of `size` bytes aligned to `align` (zeroed if `zero`), or null when
    /// the pool is off or full, or the request is not eligible (over the pool's maximum size,
    /// aligned to more than a page): the caller then serves it normally. For sampled
    /// allocations only: each one costs system calls.
    ///
    /// # Safety
    ///
    /// None beyond the allocator's: the block is freed with [`free`](Self::free) like any.
    pub unsafe fn guarded_alloc(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // SAFETY: our own source, the one the pool was enabled with.
        unsafe { self.guarded.alloc(self.source(), size, align, zero) }
    }

    /// Explain a fault at `addr`: `None` unless `addr` lies in the guarded pool's slots.
    /// Lock-free and allocation-free: meant for a SIGSEGV handler.
    pub fn guarded_fault(&self, addr: usize) -> Option<GuardedFault> {
        self.guarded.fault(addr)
    }

    /// The latest block of the guarded slot holding `addr` (for misuse reports).
    pub fn guarded_block(&self, addr: usize) -> Option<GuardedBlock> {
        self.guarded.block_at(addr)
    }

    /// Whether `addr` lies in the guarded pool's span.
    pub fn guarded_contains(&self, addr: usize) -> bool {
        self.guarded.contains(addr)
    }

    /// The guarded pool's counters.
    pub fn guarded_stats(&self) -> GuardedStats {
        self.guarded.stats()
    }
}
