//! Random operation sequences against alloc-core's `Allocator`, checked against a shadow model.
//!
//! Every block handed out must be non-null (unless the page source refused a span during that
//! call), aligned, at least as big as asked, inside a live span of the source, disjoint from
//! every other live block (usable ranges, not just requested sizes), and must keep its contents
//! until freed. Zeroed allocations must read zero. Several heaps on one thread stand in for
//! threads: freeing through a heap that does not own the block takes the remote-free path, and
//! retiring a heap abandons its segments. Arena heaps are destroyed with their blocks live. At
//! the end everything is freed and trimmed: no live bytes may remain counted and every segment
//! span must be back with the source.

#![no_main]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use alloc_core::size_class::{aligned_class, class_size, LARGE_MAX, MEDIUM_MAX, NUM_CLASSES};
use alloc_core::{Allocator, Heap, PageSource, SourceError, Span, PAGE_SIZE, SEGMENT_SIZE};
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Bytes of spans the live blocks may pin at once (keeps RSS under libFuzzer's limit).
const FOOTPRINT_LIMIT: usize = 160 << 20;
/// Heaps alive at once ("threads").
const MAX_HEAPS: usize = 4;

// ------------------------------------------------------------------------------------ input

/// A request size: mostly small (up to 1 KiB), some medium (up to 128 KiB), a few in the
/// large classes (up to 1 MiB), at class boundaries and other edges, rarely huge (up to 8 MiB).
#[derive(Clone, Copy)]
struct Size(usize);

impl std::fmt::Debug for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'a> Arbitrary<'a> for Size {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let tag = u8::arbitrary(u)?;
        let raw = u32::arbitrary(u)? as usize;
        let size = match tag {
            0..=169 => raw % 1025,
            170..=209 => raw % (MEDIUM_MAX + 1),
            210..=219 => raw % (LARGE_MAX + 1),
            220..=239 => {
                // A class size, one past it, or one short of it.
                let k = 1 + raw % (NUM_CLASSES - 1);
                (class_size(k) + (raw >> 8) % 3).saturating_sub(1)
            }
            240..=246 => {
                const EDGES: [usize; 10] = [
                    0,
                    LARGE_MAX + 1,
                    LARGE_MAX + PAGE_SIZE,
                    SEGMENT_SIZE - 128,
                    SEGMENT_SIZE - 127,
                    SEGMENT_SIZE,
                    2 * SEGMENT_SIZE - 128,
                    2 * SEGMENT_SIZE - 127,
                    33 * PAGE_SIZE + 1,
                    MEDIUM_MAX + 1,
                ];
                EDGES[raw % EDGES.len()]
            }
            _ => raw % ((8 << 20) + 1),
        };
        Ok(Size(size))
    }
}

/// How the page source behaves for one run.
#[derive(Arbitrary, Debug)]
struct Config {
    /// Index into the purge delays tried (0, 1, 100 ms, 1 s).
    purge_delay: u8,
    /// The source has no clock (`now_ms` is 0: purge as soon as free).
    no_clock: bool,
    /// Fresh spans are filled with garbage and not marked zeroed.
    dirty_spans: bool,
    /// What `purge` does: 0 zero the range (MADV_DONTNEED), 1 keep it (MADV_FREE that did
    /// not happen), 2 fill it with garbage; only 0 reports the range as zeroed.
    purge_mode: u8,
    /// The free-list secret.
    entropy: u64,
    /// At the end, retire the other heaps before freeing every block (the frees then land on
    /// abandoned pages) rather than after.
    retire_first: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Malloc {
        heap: u8,
        size: Size,
    },
    Zalloc {
        heap: u8,
        size: Size,
    },
    Aligned {
        heap: u8,
        size: Size,
        align_shift: u8,
        zero: bool,
    },
    Realloc {
        heap: u8,
        index: u16,
        size: Size,
    },
    Free {
        heap: u8,
        index: u16,
    },
    Usable {
        index: u16,
    },
    Trim {
        heap: u8,
    },
    /// Another "thread": a new heap (up to MAX_HEAPS).
    NewThreadHeap,
    /// A thread exits: retire a heap other than heap 0 (its blocks stay live in the model).
    ExitThread {
        heap: u8,
    },
    /// An arena heap (counts towards MAX_HEAPS).
    NewArena,
    /// Destroy an arena heap: the blocks it allocated die with it, unfreed.
    DestroyArena {
        heap: u8,
    },
    /// Advance the source's clock (drives delayed purging).
    Advance {
        ms: u8,
    },
    /// The next `count % 4 + 1` span requests fail (out of memory).
    FailNext {
        count: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    ops: Vec<Op>,
}

// ------------------------------------------------------------------------------ page source

/// Spans mapped with `mmap`, each between two inaccessible guard pages, unmapped on release:
/// a touch outside a live span (or of a released one) faults. A manual clock and fault
/// injection. Spans still held when it drops (the heap pool) are unmapped then.
struct FuzzSource {
    /// Live spans: start -> (size, requested alignment).
    spans: Mutex<BTreeMap<usize, (usize, usize)>>,
    clock: AtomicU64,
    no_clock: bool,
    dirty_spans: bool,
    purge_mode: u8,
    entropy: u64,
    /// Span requests still to refuse.
    fail_next: AtomicUsize,
    /// Span requests refused so far.
    refusals: AtomicUsize,
}

impl FuzzSource {
    fn new(config: &Config) -> Self {
        FuzzSource {
            spans: Mutex::new(BTreeMap::new()),
            clock: AtomicU64::new(1),
            no_clock: config.no_clock,
            dirty_spans: config.dirty_spans,
            purge_mode: config.purge_mode % 3,
            entropy: config.entropy,
            fail_next: AtomicUsize::new(0),
            refusals: AtomicUsize::new(0),
        }
    }

    fn refusals(&self) -> usize {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Assert `[p, p + len)` lies inside one live span.
    fn assert_inside(&self, p: usize, len: usize) {
        let spans = self.spans.lock().unwrap();
        let (&start, &(size, _)) = spans
            .range(..=p)
            .next_back()
            .unwrap_or_else(|| panic!("block {p:#x} below every span"));
        assert!(
            p + len <= start + size,
            "block {p:#x}+{len} outside span {start:#x}+{size:#x}"
        );
    }

    /// Segment-aligned spans still held: everything but the heap pool and the segment map's
    /// leaves, which are page-aligned and kept for good.
    fn segment_spans(&self) -> Vec<(usize, usize)> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|(_, &(_, align))| align >= SEGMENT_SIZE)
            .map(|(&p, &(size, _))| (p, size))
            .collect()
    }
}

/// Unmap a span and its guard pages.
///
/// # Safety
///
/// `[p, p + size)` is a span mapped by `FuzzSource::alloc`, unused from now on.
unsafe fn unmap(p: usize, size: usize) {
    // SAFETY: the span and its guards were mapped together (caller's contract).
    let rc = unsafe { libc::munmap((p - PAGE_SIZE) as *mut libc::c_void, size + 2 * PAGE_SIZE) };
    assert_eq!(rc, 0, "munmap of span {p:#x}+{size:#x}");
}

impl Drop for FuzzSource {
    fn drop(&mut self) {
        for (p, (size, _)) in std::mem::take(self.spans.get_mut().unwrap()) {
            // SAFETY: mapped in `alloc`, not released, and the allocator is gone.
            unsafe { unmap(p, size) };
        }
    }
}

// SAFETY: fresh anonymous mappings are disjoint, zeroed, aligned as asked (we trim them), and
// stay valid until `release` or drop.
unsafe impl PageSource for FuzzSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        assert!(
            size > 0 && size.is_multiple_of(PAGE_SIZE),
            "span size {size:#x}"
        );
        assert!(
            align.is_power_of_two() && align >= PAGE_SIZE,
            "span align {align:#x}"
        );
        if self
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            return Err(SourceError::OutOfMemory);
        }
        // Room for the span at any alignment plus a guard page on each side.
        let len = size + align + PAGE_SIZE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(raw != libc::MAP_FAILED, "mmap of {len:#x} bytes failed");
        let raw = raw as usize;
        let start = (raw + PAGE_SIZE).next_multiple_of(align);
        let (lo, hi) = (start - PAGE_SIZE, start + size + PAGE_SIZE);
        // SAFETY: trimming and guarding parts of the mapping made just above.
        unsafe {
            if lo > raw {
                assert_eq!(libc::munmap(raw as *mut libc::c_void, lo - raw), 0);
            }
            if raw + len > hi {
                assert_eq!(libc::munmap(hi as *mut libc::c_void, raw + len - hi), 0);
            }
            for guard in [lo, start + size] {
                let rc = libc::mprotect(guard as *mut libc::c_void, PAGE_SIZE, libc::PROT_NONE);
                assert_eq!(rc, 0);
            }
        }
        let ptr = start as *mut u8;
        if self.dirty_spans {
            // A recycled span: garbage over the first 256 KiB, then 64 bytes every 64 KiB
            // (filling every page would cost a fault per page).
            let head = size.min(256 << 10);
            // SAFETY: every write below stays inside the span, which is ours.
            unsafe {
                ptr.write_bytes(0xd5, head);
                for off in (head..size).step_by(64 << 10) {
                    ptr.add(off).write_bytes(0xd5, 64);
                }
            }
        }
        self.spans.lock().unwrap().insert(start, (size, align));
        Ok(Span {
            ptr,
            size,
            zeroed: !self.dirty_spans,
        })
    }

    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        let (held, _) = self
            .spans
            .lock()
            .unwrap()
            .remove(&(ptr as usize))
            .unwrap_or_else(|| panic!("release of unknown span {ptr:p}"));
        // The contract allows releasing a prefix or suffix; the core never does, and this
        // source (one guard pair per span) does not take them.
        assert_eq!(held, size, "partial release of {ptr:p}");
        // SAFETY: mapped by `alloc`, and the allocator is done with it.
        unsafe { unmap(ptr as usize, size) };
    }

    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        assert!(
            (ptr as usize).is_multiple_of(PAGE_SIZE) && size.is_multiple_of(PAGE_SIZE) && size > 0
        );
        self.assert_inside(ptr as usize, size);
        // SAFETY: the range is page-aligned, inside a live span, and unused (contract).
        unsafe {
            match self.purge_mode {
                0 => {
                    let rc = libc::madvise(ptr.cast(), size, libc::MADV_DONTNEED);
                    assert_eq!(rc, 0);
                }
                1 => {}
                _ => {
                    // Garbage at the start of every page.
                    for off in (0..size).step_by(PAGE_SIZE) {
                        ptr.add(off).write_bytes(0x5a, 64);
                    }
                }
            }
        }
        self.purge_mode == 0
    }

    fn now_ms(&self) -> u64 {
        if self.no_clock {
            0
        } else {
            self.clock.load(Ordering::Relaxed)
        }
    }

    fn entropy(&self) -> u64 {
        self.entropy
    }
}

// ------------------------------------------------------------------------------ shadow model

struct Live {
    size: usize,
    usable: usize,
    align: usize,
    seed: u32,
    /// Bytes of span this block may pin (for the footprint limit).
    cost: usize,
    /// Id of the heap whose page or huge list holds the block (arenas free theirs at once).
    owner: u32,
}

/// Words (8-byte units) of a `len`-byte block that carry the pattern: the first and last
/// 128, and every 63rd between (a few per page: every byte of a big block would make each run
/// crawl), plus the bytes after the last whole word. Whole words keep the count of
/// ASan-checked, comparison-traced accesses down.
fn pattern_words(len: usize) -> impl Iterator<Item = usize> {
    let (head, tail) = head_tail(len);
    (0..head)
        .chain((head..tail).step_by(63))
        .chain(tail..len / 8)
}

fn head_tail(len: usize) -> (usize, usize) {
    let words = len / 8;
    let head = words.min(128);
    (head, words.saturating_sub(128).max(head))
}

/// Whether byte `i` of a `len`-byte block carries the pattern.
fn is_pattern_byte(len: usize, i: usize) -> bool {
    let (head, tail) = head_tail(len);
    let w = i / 8;
    i < len && (w < head || w >= tail || (w - head).is_multiple_of(63))
}

/// The pattern's word `w` for the block with `seed`; byte `i` is byte `i % 8` of word `i / 8`.
fn pattern(seed: u32, w: usize) -> u64 {
    (seed as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (w as u64).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

fn pattern_byte(seed: u32, i: usize) -> u8 {
    pattern(seed, i / 8).to_le_bytes()[i % 8]
}

/// Fill the pattern over a block's whole usable size.
///
/// # Safety
///
/// `p` is a live block of at least `len` bytes, 8-byte aligned.
unsafe fn fill(p: *mut u8, len: usize, seed: u32) {
    for w in pattern_words(len) {
        // SAFETY: 8 * w + 8 <= len, aligned (caller's contract).
        unsafe { p.add(8 * w).cast::<u64>().write(pattern(seed, w)) };
    }
    for i in len / 8 * 8..len {
        // SAFETY: i < len.
        unsafe { p.add(i).write(pattern_byte(seed, i)) };
    }
}

/// Check the pattern of a block filled over `filled` bytes, in its first `n` bytes.
///
/// # Safety
///
/// `p` holds at least `min(n, filled)` readable bytes, 8-byte aligned.
unsafe fn verify(p: *const u8, n: usize, filled: usize, seed: u32) {
    let limit = n.min(filled);
    let whole = limit / 8;
    // Accumulate differences, locate only on failure.
    let mut diff = 0u64;
    for w in pattern_words(filled).take_while(|&w| w < whole) {
        // SAFETY: 8 * w + 8 <= limit (caller's contract), aligned.
        diff |= unsafe { p.add(8 * w).cast::<u64>().read() } ^ pattern(seed, w);
    }
    for i in (whole * 8..limit).filter(|&i| is_pattern_byte(filled, i)) {
        // SAFETY: i < limit.
        diff |= (unsafe { p.add(i).read() } ^ pattern_byte(seed, i)) as u64;
    }
    if diff != 0 {
        for i in (0..limit).filter(|&i| is_pattern_byte(filled, i)) {
            // SAFETY: i < limit.
            let got = unsafe { p.add(i).read() };
            let want = pattern_byte(seed, i);
            assert_eq!(got, want, "block {p:p} byte {i} of {filled} damaged");
        }
    }
}

/// Bytes of span a block can pin: a huge block (no size class fits) takes a span of its own.
fn cost(size: usize, align: usize) -> usize {
    if aligned_class(size, align).is_some() {
        size.max(16)
    } else {
        (align.max(128) + size).next_multiple_of(PAGE_SIZE) + align
    }
}

struct Model<'a> {
    alloc: &'a Allocator<&'a FuzzSource>,
    source: &'a FuzzSource,
    blocks: BTreeMap<usize, Live>,
    /// Live block addresses, for picking by index.
    order: Vec<usize>,
    footprint: usize,
    next_seed: u32,
}

impl Model<'_> {
    /// Check a fresh block and record it; `zero` asks for its first `size` bytes to read zero.
    ///
    /// # Safety
    ///
    /// `p` was just returned by the allocator for a request of `size` bytes.
    unsafe fn insert(&mut self, p: *mut u8, size: usize, align: usize, zero: bool, owner: u32) {
        let a = p as usize;
        assert!(!p.is_null());
        assert_eq!(a % align.max(16), 0, "block {p:p} not aligned to {align}");
        // SAFETY: p is a live block of this allocator.
        let usable = unsafe { self.alloc.usable_size(p) };
        assert!(
            usable >= size,
            "usable {usable} < requested {size} at {p:p}"
        );
        self.source.assert_inside(a, usable);
        if let Some((&prev, live)) = self.blocks.range(..=a).next_back() {
            assert!(
                prev + live.usable <= a,
                "{p:p} overlaps {prev:#x}+{}",
                live.usable
            );
        }
        if let Some((&next, _)) = self.blocks.range(a + 1..).next() {
            assert!(a + usable <= next, "{p:p}+{usable} overlaps {next:#x}");
        }
        if zero {
            // SAFETY: the block holds `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, size) };
            // Chunk compares (memcmp): one ASan range check each, not one per byte.
            static ZEROS: [u8; 4096] = [0; 4096];
            if !bytes.chunks(4096).all(|c| c == &ZEROS[..c.len()]) {
                let i = bytes.iter().position(|&b| b != 0).unwrap();
                panic!(
                    "zeroed block {p:p} of {size} has {:#x} at byte {i}",
                    bytes[i]
                );
            }
        }
        let seed = self.next_seed;
        self.next_seed += 1;
        // SAFETY: the block holds `usable` bytes.
        unsafe { fill(p, usable, seed) };
        let cost = cost(size, align);
        self.footprint += cost;
        self.blocks.insert(
            a,
            Live {
                size,
                usable,
                align,
                seed,
                cost,
                owner,
            },
        );
        self.order.push(a);
    }

    /// Take block `index` (modulo the live count) out of the model, its contents checked.
    fn take(&mut self, index: usize) -> Option<(usize, Live)> {
        if self.order.is_empty() {
            return None;
        }
        let a = self.order.swap_remove(index % self.order.len());
        let live = self.blocks.remove(&a).unwrap();
        self.footprint -= live.cost;
        // SAFETY: a live block of `usable` bytes, filled over all of them.
        unsafe { verify(a as *const u8, live.usable, live.usable, live.seed) };
        Some((a, live))
    }

    /// Put back a block `take` removed (an allocation that failed left it alone).
    fn put_back(&mut self, a: usize, live: Live) {
        // SAFETY: still live, untouched since `take` checked it.
        unsafe { verify(a as *const u8, live.usable, live.usable, live.seed) };
        self.footprint += live.cost;
        self.blocks.insert(a, live);
        self.order.push(a);
    }

    /// Take every block `owner` holds out of the model, their contents checked.
    fn take_owned(&mut self, owner: u32) {
        let mut i = 0;
        while i < self.order.len() {
            if self.blocks[&self.order[i]].owner == owner {
                self.take(i);
            } else {
                i += 1;
            }
        }
    }

    fn fits(&self, size: usize, align: usize) -> bool {
        self.footprint + cost(size, align) <= FOOTPRINT_LIMIT
    }
}

// ---------------------------------------------------------------------------------- driver

/// A live heap: a "thread" or an arena.
struct Slot {
    heap: *mut Heap,
    arena: bool,
    /// Unique per heap created (the pool reuses addresses).
    id: u32,
}

/// The heap an op names ("the thread it runs on").
fn pick(heaps: &[Slot], h: u8) -> &Slot {
    &heaps[h as usize % heaps.len()]
}

/// The `h`th (modulo their count) heap among those `which` accepts, by index in `heaps`.
fn pick_where(heaps: &[Slot], h: u8, which: impl Fn(usize, &Slot) -> bool) -> Option<usize> {
    let found: Vec<usize> = (0..heaps.len()).filter(|&i| which(i, &heaps[i])).collect();
    (!found.is_empty()).then(|| found[h as usize % found.len()])
}

fn run(input: Input) {
    let source = FuzzSource::new(&input.config);
    let alloc = Allocator::new(&source);
    alloc.set_purge_delay_ms([0, 1, 100, 1000][input.config.purge_delay as usize % 4]);
    let first = alloc.new_heap();
    assert!(!first.is_null());
    let mut heaps = vec![Slot {
        heap: first,
        arena: false,
        id: 0,
    }];
    let mut next_id = 1;
    let mut model = Model {
        alloc: &alloc,
        source: &source,
        blocks: BTreeMap::new(),
        order: Vec::new(),
        footprint: 0,
        next_seed: 1,
    };

    for op in input.ops {
        let refusals = source.refusals();
        // A null result is a bug unless the source refused a span during this call.
        let null_ok = |p: *mut u8, what: &dyn std::fmt::Debug| {
            if p.is_null() {
                assert!(source.refusals() > refusals, "{what:?} returned null");
                return true;
            }
            false
        };
        // SAFETY: every heap in `heaps` is live and used only by this thread; every pointer
        // passed back to the allocator is live in the model, with its recorded alignment.
        unsafe {
            match op {
                Op::Malloc {
                    heap,
                    size: Size(size),
                } => {
                    if model.fits(size, 16) {
                        let h = pick(&heaps, heap);
                        let p = alloc.malloc(h.heap, size);
                        if !null_ok(p, &op) {
                            model.insert(p, size, 16, false, h.id);
                        }
                    }
                }
                Op::Zalloc {
                    heap,
                    size: Size(size),
                } => {
                    if model.fits(size, 16) {
                        let h = pick(&heaps, heap);
                        let p = alloc.zalloc(h.heap, size);
                        if !null_ok(p, &op) {
                            model.insert(p, size, 16, true, h.id);
                        }
                    }
                }
                Op::Aligned {
                    heap,
                    size: Size(size),
                    align_shift,
                    zero,
                } => {
                    // Up to 8 MiB: from the segment size on, a huge block starts a segment
                    // or more into its span.
                    let align = 1usize << (align_shift % 24);
                    if model.fits(size, align) {
                        let h = pick(&heaps, heap);
                        let p = alloc.malloc_aligned(h.heap, size, align, zero);
                        if !null_ok(p, &op) {
                            model.insert(p, size, align, zero, h.id);
                        }
                    }
                }
                Op::Realloc {
                    heap,
                    index,
                    size: Size(size),
                } => {
                    let Some((a, live)) = model.take(index.into()) else {
                        continue;
                    };
                    if !model.fits(size, live.align) {
                        model.put_back(a, live);
                        continue;
                    }
                    let h = pick(&heaps, heap);
                    let q = alloc.realloc(h.heap, a as *mut u8, size, live.align);
                    if null_ok(q, &op) {
                        model.put_back(a, live);
                    } else {
                        // The old usable bytes are copied (or kept in place), up to `size`.
                        verify(q, live.usable.min(size), live.usable, live.seed);
                        // In place, the block stays where it was; moved, it is the new heap's.
                        let owner = if q as usize == a { live.owner } else { h.id };
                        model.insert(q, size, live.align, false, owner);
                    }
                }
                Op::Free { heap, index } => {
                    if let Some((a, _)) = model.take(index.into()) {
                        alloc.free(pick(&heaps, heap).heap, a as *mut u8);
                    }
                }
                Op::Usable { index } => {
                    if model.order.is_empty() {
                        assert_eq!(alloc.usable_size(std::ptr::null_mut()), 0);
                    } else {
                        let a = model.order[index as usize % model.order.len()];
                        let live = &model.blocks[&a];
                        let usable = alloc.usable_size(a as *mut u8);
                        assert_eq!(usable, live.usable, "usable size of {a:#x} changed");
                        assert!(usable >= live.size);
                    }
                }
                Op::Trim { heap } => {
                    alloc.trim(pick(&heaps, heap).heap);
                }
                Op::NewThreadHeap | Op::NewArena => {
                    if heaps.len() < MAX_HEAPS {
                        let arena = matches!(op, Op::NewArena);
                        let h = if arena {
                            alloc.new_arena_heap()
                        } else {
                            alloc.new_heap()
                        };
                        if !null_ok(h.cast(), &op) {
                            heaps.push(Slot {
                                heap: h,
                                arena,
                                id: next_id,
                            });
                            next_id += 1;
                        }
                    }
                }
                Op::ExitThread { heap } => {
                    if let Some(i) = pick_where(&heaps, heap, |i, s| i > 0 && !s.arena) {
                        alloc.retire_heap(heaps.swap_remove(i).heap);
                    }
                }
                Op::DestroyArena { heap } => {
                    if let Some(i) = pick_where(&heaps, heap, |_, s| s.arena) {
                        let slot = heaps.swap_remove(i);
                        model.take_owned(slot.id);
                        alloc.destroy_heap(slot.heap);
                    }
                }
                Op::Advance { ms } => {
                    source.clock.fetch_add(ms as u64, Ordering::Relaxed);
                }
                Op::FailNext { count } => {
                    source
                        .fail_next
                        .store(count as usize % 4 + 1, Ordering::Relaxed);
                }
            }
        }
    }

    // Destroy the arenas with their blocks, free everything else through heap 0 (remote
    // frees for other heaps' blocks), let the other "threads" exit, trim: nothing may stay
    // counted, no segment span may stay reserved.
    source.fail_next.store(0, Ordering::Relaxed);
    let main = heaps[0].heap;
    for slot in heaps.iter().filter(|s| s.arena) {
        model.take_owned(slot.id);
        // SAFETY: an arena heap, unused from now on, its blocks dropped from the model.
        unsafe { alloc.destroy_heap(slot.heap) };
    }
    let threads = heaps[1..].iter().filter(|s| !s.arena);
    if input.config.retire_first {
        // SAFETY: live heaps, not used afterwards.
        threads
            .clone()
            .for_each(|s| unsafe { alloc.retire_heap(s.heap) });
    }
    while let Some((a, _)) = model.take(0) {
        // SAFETY: a live block of this allocator; `main` is ours.
        unsafe { alloc.free(main, a as *mut u8) };
    }
    if !input.config.retire_first {
        // SAFETY: live heaps, not used afterwards.
        threads.for_each(|s| unsafe { alloc.retire_heap(s.heap) });
    }
    // SAFETY: `main` is live and ours.
    unsafe { alloc.trim(main) };
    let stats = alloc.stats();
    assert_eq!(stats.allocated, 0, "{stats:?}");
    let held = source.segment_spans();
    assert!(
        held.is_empty(),
        "spans held after free-all and trim: {held:x?} {stats:?}"
    );
    // SAFETY: `main` is live and not used afterwards.
    unsafe { alloc.retire_heap(main) };
}

fuzz_target!(|input: Input| run(input));
