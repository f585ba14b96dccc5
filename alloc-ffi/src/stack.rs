//! Call stacks for sampled allocations (heap profiles, guarded blocks): captured without
//! allocating and without a lock a signal or `fork` could leave held, and interned in a table
//! whose memory is mapped for it, never taken from malloc.
//!
//! * Capture walks the stack with `_Unwind_Backtrace` from libgcc_s, which Rust's std links
//!   already. With glibc 2.35+ and libgcc 12+ it finds unwind tables with `_dl_find_object`
//!   (lock-free, no allocation). glibc's `backtrace()` is avoided: it dlopens libgcc_s on
//!   first use, which allocates.
//! * Frames inside libpagebreak.so are dropped, so the first frame is the allocation call's
//!   caller. When pagebreak is linked into the program (the Rust global allocator) its frames
//!   cannot be told apart by address and stay at the top of the stack.
//! * Interning: an append-only arena of stacks and an open-addressing hash table, both in
//!   one private anonymous mapping reserved at [`init`] (`MAP_NORESERVE`: untouched parts cost
//!   no memory). Inserts are lock-free (one CAS); readers (a profile dump, possibly from a
//!   signal handler) never wait. Each stack carries the profile's per-stack totals.
//!
//! The interface guarded sampling uses too: [`capture`], [`intern`], [`frames`].

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Frames kept per stack.
pub const MAX_FRAMES: usize = 64;

/// An interned stack's id: stable for the life of the process; 0 means "unknown" (the table
/// was full or not set up).
pub type StackId = u32;

// ------------------------------------------------------------------------------ capture

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type TraceFn = extern "C" fn(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;

struct Walk<'a> {
    out: &'a mut [usize],
    len: usize,
    /// Still inside pagebreak's own frames.
    skipping: bool,
    own: (usize, usize),
}

extern "C" fn trace_one(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` that `capture` passed, alive for the whole walk.
    let walk = unsafe { &mut *arg.cast::<Walk>() };
    // SAFETY: `ctx` is the context libgcc hands the callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    if walk.skipping {
        if ip >= walk.own.0 && ip < walk.own.1 {
            return URC_NO_REASON;
        }
        walk.skipping = false;
    }
    if walk.len == walk.out.len() {
        return URC_NORMAL_STOP;
    }
    walk.out[walk.len] = ip;
    walk.len += 1;
    if walk.len == walk.out.len() {
        URC_NORMAL_STOP
    } else {
        URC_NO_REASON
    }
}

/// The calling thread's stack as return addresses, the allocation call's caller first
/// (frames inside libpagebreak.so dropped), at most `out.len()` of them (profiles keep
/// [`MAX_FRAMES`]). Returns how many were written. Inlined into its caller: one frame less
/// to walk (about 1,500 instructions each).
#[inline]
pub fn capture(out: &mut [usize]) -> usize {
    let own = own_text();
    let mut walk = Walk {
        out,
        len: 0,
        skipping: true,
        own,
    };
    // SAFETY: the callback only touches `walk`, which outlives the call.
    unsafe { _Unwind_Backtrace(trace_one, ptr::addr_of_mut!(walk).cast()) };
    walk.len
}

/// The address range of this library's code when it is a shared object of its own
/// (libpagebreak.so); an empty range when it is part of the main program.
fn own_text() -> (usize, usize) {
    static LO: AtomicUsize = AtomicUsize::new(0);
    static HI: AtomicUsize = AtomicUsize::new(0);
    static DONE: AtomicU8 = AtomicU8::new(0);
    if DONE.load(Ordering::Acquire) == 0 {
        let (lo, hi) = find_own_text();
        LO.store(lo, Ordering::Relaxed);
        HI.store(hi, Ordering::Relaxed);
        DONE.store(1, Ordering::Release);
    }
    (LO.load(Ordering::Relaxed), HI.load(Ordering::Relaxed))
}

fn find_own_text() -> (usize, usize) {
    struct Find {
        addr: usize,
        range: (usize, usize),
    }
    extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, arg: *mut c_void) -> c_int {
        // SAFETY: the loader hands a valid info for the duration of the call; `arg` is our Find.
        unsafe {
            let find = &mut *arg.cast::<Find>();
            let info = &*info;
            // The main program (empty name) is not "our own" library: keep every frame.
            let is_main = info.dlpi_name.is_null() || *info.dlpi_name == 0;
            let mut lo = usize::MAX;
            let mut hi = 0;
            let mut contains = false;
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_X == 0 {
                    continue;
                }
                let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                let end = start + ph.p_memsz as usize;
                lo = lo.min(start);
                hi = hi.max(end);
                contains |= find.addr >= start && find.addr < end;
            }
            if contains {
                if !is_main {
                    find.range = (lo, hi);
                }
                return 1;
            }
            0
        }
    }
    let mut find = Find {
        addr: capture as *const () as usize,
        range: (0, 0),
    };
    // SAFETY: the callback only reads loader data and writes `find`.
    unsafe { libc::dl_iterate_phdr(Some(visit), ptr::addr_of_mut!(find).cast()) };
    find.range
}

// ------------------------------------------------------------------------------ interning

/// Words of the stack arena (8 bytes each): 64 MiB of address space, touched as used.
const ARENA_WORDS: usize = 8 << 20;
/// Hash table slots (a power of two): at most this many distinct stacks.
const TABLE_SLOTS: usize = 1 << 18;
/// Words before the frames of an interned stack: its length + 1 (written first, so a reader
/// can step over it), its hash (written last: non-zero once complete), and the profile's
/// totals (samples, requested bytes, estimated bytes).
const HEADER_WORDS: usize = 5;
const LEN: usize = 0;
const HASH: usize = 1;
const SAMPLES: usize = 2;
const BYTES: usize = 3;
const ESTIMATE: usize = 4;

struct Table {
    /// `TABLE_SLOTS` slots: 0 empty, else the arena word index of a stack (its id).
    slots: *const AtomicU32,
    arena: *const AtomicU64,
    used: AtomicUsize,
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(ptr::null_mut());
static TABLE_STATE: AtomicU8 = AtomicU8::new(0);

/// Map the stack table (once; later calls return at once). Until it is set up, [`intern`]
/// returns 0. Call it before sampling starts.
pub fn init() {
    if TABLE_STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let slots_bytes = TABLE_SLOTS * 4;
    let arena_bytes = ARENA_WORDS * 8;
    let total = 4096 + slots_bytes + arena_bytes;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return;
    }
    const _: () = assert!(core::mem::size_of::<Table>() <= 4096);
    let base = base.cast::<u8>();
    // SAFETY: the mapping is ours, zeroed, and large enough for the three parts.
    unsafe {
        let table = base.cast::<Table>();
        table.write(Table {
            slots: base.add(4096).cast(),
            arena: base.add(4096 + slots_bytes).cast(),
            // Word 0 is never an id.
            used: AtomicUsize::new(1),
        });
        TABLE.store(table, Ordering::Release);
    }
}

fn table() -> Option<&'static Table> {
    // SAFETY: set once to a mapping that is never unmapped.
    unsafe { TABLE.load(Ordering::Acquire).as_ref() }
}

fn hash_frames(frames: &[usize]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    h | 1
}

impl Table {
    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < ARENA_WORDS);
        // SAFETY: `i` is inside the arena (callers check), which lives forever.
        unsafe { &*self.arena.add(i) }
    }

    fn slot(&self, i: usize) -> &AtomicU32 {
        // SAFETY: masked to `TABLE_SLOTS`; the slot array lives forever.
        unsafe { &*self.slots.add(i & (TABLE_SLOTS - 1)) }
    }

    fn matches(&self, id: usize, hash: u64, frames: &[usize]) -> bool {
        self.word(id + HASH).load(Ordering::Acquire) == hash
            && self.word(id + LEN).load(Ordering::Relaxed) == frames.len() as u64 + 1
            && frames
                .iter()
                .enumerate()
                .all(|(i, &f)| self.word(id + HEADER_WORDS + i).load(Ordering::Relaxed) == f as u64)
    }
}

/// The id of `frames` (at most [`MAX_FRAMES`]), adding it to the table if new. 0 when the
/// table is full or not set up.
pub fn intern(frames: &[usize]) -> StackId {
    let Some(t) = table() else {
        return 0;
    };
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let hash = hash_frames(frames);
    let mut index = hash as usize;
    let mut fresh = 0usize;
    for _ in 0..TABLE_SLOTS {
        let slot = t.slot(index);
        let id = slot.load(Ordering::Acquire) as usize;
        if id == 0 {
            if fresh == 0 {
                let words = HEADER_WORDS + frames.len();
                fresh = t.used.fetch_add(words, Ordering::Relaxed);
                if fresh + words > ARENA_WORDS {
                    return 0;
                }
                t.word(fresh + LEN)
                    .store(frames.len() as u64 + 1, Ordering::Release);
                for (i, &f) in frames.iter().enumerate() {
                    t.word(fresh + HEADER_WORDS + i)
                        .store(f as u64, Ordering::Relaxed);
                }
                t.word(fresh + HASH).store(hash, Ordering::Release);
            }
            match slot.compare_exchange(0, fresh as u32, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return fresh as StackId,
                Err(other) => {
                    if t.matches(other as usize, hash, frames) {
                        // Another thread interned it first: ours stays in the arena,
                        // marked unfinished so a dump skips it.
                        t.word(fresh + HASH).store(0, Ordering::Release);
                        return other;
                    }
                }
            }
        } else if t.matches(id, hash, frames) {
            if fresh != 0 {
                t.word(fresh + HASH).store(0, Ordering::Release);
            }
            return id as StackId;
        }
        index = index.wrapping_add(1);
    }
    0
}

/// Copy the frames of stack `id` into `out`; returns how many. (For reports that print a
/// stored stack: guarded blocks' allocation and free stacks.)
#[allow(dead_code)]
pub fn frames(id: StackId, out: &mut [usize; MAX_FRAMES]) -> usize {
    let Some(t) = table() else {
        return 0;
    };
    let id = id as usize;
    if id == 0 || id + HEADER_WORDS > t.used.load(Ordering::Acquire).min(ARENA_WORDS) {
        return 0;
    }
    let len = (t.word(id + LEN).load(Ordering::Acquire) as usize)
        .saturating_sub(1)
        .min(MAX_FRAMES);
    for (i, slot) in out.iter_mut().enumerate().take(len) {
        *slot = t.word(id + HEADER_WORDS + i).load(Ordering::Relaxed) as usize;
    }
    len
}

/// The profile's totals of a stack: samples, requested bytes, estimated bytes.
pub(crate) struct Totals {
    pub(crate) samples: u64,
    pub(crate) bytes: u64,
    pub(crate) estimate: u64,
}

/// Add one sample of `bytes` standing for `estimate` bytes to the totals of stack `id`.
pub(crate) fn add_totals(id: StackId, bytes: u64, estimate: u64) {
    if let (Some(t), true) = (table(), id != 0) {
        let id = id as usize;
        t.word(id + SAMPLES).fetch_add(1, Ordering::Relaxed);
        t.word(id + BYTES).fetch_add(bytes, Ordering::Relaxed);
        t.word(id + ESTIMATE).fetch_add(estimate, Ordering::Relaxed);
    }
}

/// Call `f` with every interned stack: id, totals, frames. Walks the arena in order (cost
/// proportional to the stacks stored); stops at a stack another thread is writing now.
pub(crate) fn for_each(mut f: impl FnMut(StackId, &Totals, &[usize])) {
    let Some(t) = table() else {
        return;
    };
    let used = t.used.load(Ordering::Acquire).min(ARENA_WORDS);
    let mut frames = [0usize; MAX_FRAMES];
    let mut id = 1;
    while id + HEADER_WORDS <= used {
        let len = t.word(id + LEN).load(Ordering::Acquire) as usize;
        if len == 0 || len > MAX_FRAMES + 1 {
            break;
        }
        let len = len - 1;
        if t.word(id + HASH).load(Ordering::Acquire) != 0 {
            for (i, slot) in frames.iter_mut().enumerate().take(len) {
                *slot = t.word(id + HEADER_WORDS + i).load(Ordering::Relaxed) as usize;
            }
            let totals = Totals {
                samples: t.word(id + SAMPLES).load(Ordering::Relaxed),
                bytes: t.word(id + BYTES).load(Ordering::Relaxed),
                estimate: t.word(id + ESTIMATE).load(Ordering::Relaxed),
            };
            f(id as StackId, &totals, &frames[..len]);
        }
        id += HEADER_WORDS + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn nested(depth: usize, out: &mut [usize; MAX_FRAMES]) -> usize {
        if depth == 0 {
            capture(out)
        } else {
            let n = nested(depth - 1, out);
            core::hint::black_box(n)
        }
    }

    #[test]
    fn capture_sees_the_callers() {
        let mut out = [0; MAX_FRAMES];
        let n = nested(5, &mut out);
        assert!(n >= 6, "{n} frames");
        assert!(out[..n].iter().all(|&pc| pc != 0));
        // A deep stack is cut at MAX_FRAMES.
        let n = nested(100, &mut out);
        assert_eq!(n, MAX_FRAMES);
    }

    #[test]
    fn interning_returns_one_id_per_stack() {
        init();
        let a = [1usize, 2, 3];
        let b = [1usize, 2, 4];
        let ia = intern(&a);
        let ib = intern(&b);
        assert_ne!(ia, 0);
        assert_ne!(ia, ib);
        assert_eq!(intern(&a), ia);
        let mut out = [0; MAX_FRAMES];
        assert_eq!(frames(ib, &mut out), 3);
        assert_eq!(&out[..3], &b);
        // Concurrent inserts of the same stacks agree.
        let ids: Vec<Vec<StackId>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..2000usize)
                            .map(|i| intern(&[i, i * 7, 99]))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &ids[1..] {
            assert_eq!(other, &ids[0]);
        }
        add_totals(ia, 10, 100);
        let mut seen = 0;
        for_each(|id, totals, frames| {
            assert_ne!(frames, &b[..0]);
            if id == ia {
                seen += 1;
                assert_eq!(frames, &a);
                assert!(totals.samples >= 1 && totals.bytes >= 10 && totals.estimate >= 100);
            }
        });
        assert_eq!(seen, 1);
        // Every stack interned is listed once (lost races are not).
        let mut listed = 0;
        for_each(|_, _, _| listed += 1);
        assert!(listed >= 2002, "{listed}");
    }
}
