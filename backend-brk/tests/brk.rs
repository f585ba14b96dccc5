//! BrkSource against the PageSource contract, on the real program break, with other code
//! (this test, glibc's malloc) moving the break too.

use alloc_core::{PageSource, SourceError, Span};
use backend_brk::BrkSource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// The source's page: the kernel's (4 KiB on x86-64; 16 or 64 KiB on some aarch64 kernels,
/// and under `qemu-aarch64 -p`).
fn page() -> usize {
    BrkSource::new().page_size()
}

#[test]
fn page_size_is_the_kernels() {
    // SAFETY: plain libc call.
    let kernel = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    assert_eq!(page(), kernel);
}

/// The break is process-wide: tests that look at it take turns.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn brk_now() -> usize {
    // SAFETY: sbrk(0) only reads the break.
    unsafe { libc::sbrk(0) as usize }
}

fn words(span: &Span) -> &[u64] {
    // SAFETY: the span is live, page-aligned and `size` bytes long, and only its owning
    // thread touches it.
    unsafe { std::slice::from_raw_parts(span.ptr.cast::<u64>(), span.size / 8) }
}

fn fill(span: &Span, seed: u64) {
    // SAFETY: as in `words`; the span is not borrowed elsewhere during the fill.
    let words = unsafe { std::slice::from_raw_parts_mut(span.ptr.cast::<u64>(), span.size / 8) };
    for (i, w) in words.iter_mut().enumerate() {
        *w = seed ^ i as u64;
    }
}

fn check(span: &Span, seed: u64) {
    let bad = words(span)
        .iter()
        .enumerate()
        .position(|(i, &w)| w != seed ^ i as u64);
    assert_eq!(bad, None, "span {:p} lost its pattern {seed:#x}", span.ptr);
}

fn reads_zero(span: &Span) -> bool {
    words(span).iter().all(|&w| w == 0)
}

fn end(span: &Span) -> usize {
    span.ptr as usize + span.size
}

fn disjoint(span: &Span, start: usize, len: usize) -> bool {
    end(span) <= start || start + len <= span.ptr as usize
}

fn alloc(src: &BrkSource, size: usize, align: usize) -> Span {
    // SAFETY: the tests pass page multiples and power-of-two alignments >= page().
    let span = unsafe { src.alloc(size, align) }.expect("alloc");
    assert_eq!(span.size, size);
    assert_eq!(span.ptr as usize % align, 0, "misaligned for {align:#x}");
    span
}

fn release(src: &BrkSource, span: &Span) {
    // SAFETY: a whole live span from `src`, not used afterwards.
    unsafe { src.release(span.ptr, span.size) };
}

#[test]
fn spans_are_aligned_zeroed_and_writable() {
    let _s = serial();
    let src = BrkSource::new();
    for align in [page(), 4 * MIB, 64 * MIB] {
        for size in [page(), 12 * page(), 4 * MIB, 6 * MIB] {
            let span = alloc(&src, size, align);
            assert!(span.zeroed);
            assert!(reads_zero(&span));
            fill(&span, 0xabcd ^ size as u64);
            check(&span, 0xabcd ^ size as u64);
            assert_eq!(src.mapped_bytes(), size);
            release(&src, &span);
            assert_eq!(src.mapped_bytes(), 0);
        }
    }
}

#[test]
fn reuse_from_the_free_table_is_zeroed() {
    let _s = serial();
    let src = BrkSource::new();
    let a = alloc(&src, 8 * page(), page());
    let b = alloc(&src, 8 * page(), page());
    fill(&a, 1);
    fill(&b, 2);
    let before = src.free_bytes();
    release(&src, &a); // not at the top: purged into the table
    assert_eq!(src.free_bytes(), before + a.size);
    let again = alloc(&src, 8 * page(), page());
    assert!(again.ptr as usize >= a.ptr as usize && end(&again) <= end(&a) || again.ptr == a.ptr);
    assert!(again.zeroed);
    assert!(reads_zero(&again));
    check(&b, 2);
    release(&src, &b);
    release(&src, &again);
}

#[test]
fn releasing_the_top_lowers_the_break() {
    let _s = serial();
    let src = BrkSource::new();
    let a = alloc(&src, 64 * page(), page());
    let b = alloc(&src, 32 * page(), page());
    assert_eq!(brk_now(), end(&b), "the break ends at our last span");
    fill(&a, 3);
    fill(&b, 4);
    release(&src, &a); // below b: into the table
    assert_eq!(brk_now(), end(&b));
    release(&src, &b); // at the top: the break comes down past a too
    assert!(
        brk_now() <= a.ptr as usize,
        "{:#x} > {:p}",
        brk_now(),
        a.ptr
    );
    assert_eq!(src.free_bytes(), 0);

    // A suffix at the top goes back on its own; the rest stays valid.
    let c = alloc(&src, 16 * page(), page());
    fill(&c, 5);
    let keep = 4 * page();
    // SAFETY: a page-aligned suffix of a live span.
    unsafe { src.release(c.ptr.add(keep), c.size - keep) };
    assert_eq!(brk_now(), c.ptr as usize + keep);
    let head = Span { size: keep, ..c };
    check(&head, 5);
    release(&src, &head);
    assert!(brk_now() <= c.ptr as usize);
}

#[test]
fn foreign_sbrk_is_never_overlapped() {
    let _s = serial();
    let src = BrkSource::new();
    let a = alloc(&src, 16 * page(), page());
    fill(&a, 10);

    // Someone else moves the break by an odd amount and uses the memory.
    const LEN: usize = 10_001;
    // SAFETY: growing the break takes nobody's memory; we own [theirs, theirs + LEN).
    let theirs = unsafe { libc::sbrk(LEN as libc::intptr_t) } as usize;
    assert_ne!(theirs, usize::MAX);
    // SAFETY: the LEN bytes sbrk just gave us.
    let foreign = unsafe { std::slice::from_raw_parts_mut(theirs as *mut u8, LEN) };
    foreign.fill(0xee);

    let b = alloc(&src, 16 * page(), page());
    let c = alloc(&src, 4 * MIB, 4 * MIB);
    for s in [&a, &b, &c] {
        assert!(
            disjoint(s, theirs, LEN),
            "{s:?} overlaps [{theirs:#x}, +{LEN})"
        );
    }
    assert!(b.ptr as usize >= theirs + LEN);
    assert!(reads_zero(&b) && reads_zero(&c));
    fill(&b, 11);
    fill(&c, 12);

    // `a` is below the foreign memory: it cannot lower the break, it goes to the table.
    release(&src, &a);
    assert!(src.free_bytes() >= a.size);
    // `c` and `b` are at the top of our new region: the break comes down, but not below
    // the foreign memory.
    release(&src, &c);
    check(&b, 11);
    release(&src, &b);
    assert!(brk_now() >= theirs + LEN);
    assert!(brk_now() <= theirs + LEN + page());
    assert!(
        foreign.iter().all(|&x| x == 0xee),
        "foreign memory was touched"
    );

    // The table serves the old hole, below the foreign memory.
    let d = alloc(&src, 16 * page(), page());
    assert!(disjoint(&d, theirs, LEN));
    assert!(reads_zero(&d));
    release(&src, &d);
}

#[test]
fn interleaved_foreign_sbrk_calls() {
    let _s = serial();
    let src = BrkSource::new();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..32u64 {
        let s = alloc(&src, (1 + i as usize % 4) * page(), page());
        fill(&s, i);
        ours.push((s, i));
        // Other code takes small, unaligned pieces of the break between our spans.
        // SAFETY: sbrk of a positive amount; we write only what it gave us.
        let p = unsafe { libc::sbrk(3000) } as usize;
        assert_ne!(p, usize::MAX);
        // SAFETY: the 3000 bytes sbrk just returned.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0x5a, 3000) };
        theirs.push(p);
        if i % 3 == 0 {
            let (s, seed) = ours.remove(0);
            check(&s, seed);
            release(&src, &s);
        }
    }
    for (s, seed) in &ours {
        check(s, *seed);
        for &p in &theirs {
            assert!(disjoint(s, p, 3000));
        }
    }
    for &p in &theirs {
        // SAFETY: bytes we got from sbrk above.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, 3000) };
        assert!(bytes.iter().all(|&x| x == 0x5a));
    }
    ours.iter().for_each(|(s, _)| release(&src, s));
}

#[test]
fn a_full_free_table_loses_address_space_only() {
    let _s = serial();
    let src = BrkSource::new();
    let n = 2 * backend_brk::FREE_SLOTS + 8;
    let spans: Vec<Span> = (0..n).map(|_| alloc(&src, page(), page())).collect();
    spans
        .iter()
        .enumerate()
        .for_each(|(i, s)| fill(s, i as u64));
    // Release every other span: more separate holes than the table has slots.
    for s in spans.iter().step_by(2) {
        release(&src, s);
    }
    assert_eq!(src.free_bytes(), backend_brk::FREE_SLOTS * page());
    for (i, s) in spans.iter().enumerate().skip(1).step_by(2) {
        check(s, i as u64);
    }
    // Holes are reused and never overlap the live spans.
    let again: Vec<Span> = (0..n).map(|_| alloc(&src, page(), page())).collect();
    for a in &again {
        assert!(reads_zero(a));
        for s in spans.iter().skip(1).step_by(2) {
            assert!(disjoint(a, s.ptr as usize, s.size));
        }
    }
    for s in spans.iter().skip(1).step_by(2).chain(&again) {
        release(&src, s);
    }
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn purge_keeps_the_range_and_zeroes_it() {
    let _s = serial();
    let src = BrkSource::new();
    let span = alloc(&src, 4 * MIB, 4 * MIB);
    fill(&span, 0x5555);
    // SAFETY: page-aligned, inside a live span, unused.
    assert!(unsafe { src.purge(span.ptr, span.size) });
    assert!(reads_zero(&span));
    fill(&span, 0x6666);
    check(&span, 0x6666);
    release(&src, &span);
}

#[test]
fn out_of_memory_leaves_the_source_usable() {
    let _s = serial();
    let src = BrkSource::new();
    let a = alloc(&src, page(), page());
    let brk = brk_now();
    // SAFETY (all calls): the source must reject these without touching memory.
    unsafe {
        // 64 TiB cannot fit between the heap and the mmap area.
        assert_eq!(src.alloc(64 << 40, page()), Err(SourceError::OutOfMemory));
        assert_eq!(
            src.alloc(usize::MAX & !(page() - 1), 4 * MIB),
            Err(SourceError::InvalidRequest)
        );
        assert_eq!(
            src.alloc(page(), 3 * page()),
            Err(SourceError::InvalidRequest)
        );
        assert_eq!(src.alloc(0, page()), Err(SourceError::InvalidRequest));
    }
    assert_eq!(brk_now(), brk, "a failed request must not move the break");
    assert_eq!(src.mapped_bytes(), page());
    let b = alloc(&src, page(), page());
    assert_eq!(
        b.ptr as usize,
        end(&a),
        "the region continues after the failure"
    );
    release(&src, &b);
    release(&src, &a);
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn fork_hooks_hold_the_lock() {
    let _s = serial();
    static SRC: BrkSource = BrkSource::new();
    static DONE: AtomicBool = AtomicBool::new(false);
    SRC.before_fork();
    let t = thread::spawn(|| {
        let s = alloc(&SRC, page(), page());
        DONE.store(true, Ordering::SeqCst);
        release(&SRC, &s);
    });
    thread::sleep(Duration::from_millis(50));
    assert!(
        !DONE.load(Ordering::SeqCst),
        "alloc ran while the fork lock was held"
    );
    // SAFETY: paired with the before_fork above.
    unsafe { SRC.after_fork() };
    t.join().unwrap();
    assert!(DONE.load(Ordering::SeqCst));
}

#[test]
fn clock_and_entropy() {
    let src = BrkSource::new();
    let t0 = src.now_ms();
    assert!(t0 > 0);
    thread::sleep(Duration::from_millis(30));
    assert!(src.now_ms() >= t0 + 10);
    assert_ne!(src.entropy(), src.entropy());
}

#[test]
fn threads_get_disjoint_spans() {
    let _s = serial();
    static SRC: BrkSource = BrkSource::new();
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                let mut live: Vec<(Span, u64)> = Vec::new();
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                for i in 0..2000u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if live.len() > 16 || (rng & 3 == 0 && !live.is_empty()) {
                        let (s, seed) = live.swap_remove(rng as usize % live.len());
                        check(&s, seed);
                        if rng & 32 != 0 && s.size > page() {
                            // Give back a prefix now and the rest later.
                            let cut = page() * (1 + (rng >> 40) as usize % (s.size / page() - 1));
                            // SAFETY: a page-aligned prefix of a live span.
                            unsafe { SRC.release(s.ptr, cut) };
                            let rest = Span {
                                // SAFETY: inside the span.
                                ptr: unsafe { s.ptr.add(cut) },
                                size: s.size - cut,
                                zeroed: false,
                            };
                            fill(&rest, seed);
                            live.push((rest, seed));
                        } else {
                            release(&SRC, &s);
                        }
                    } else {
                        let align = match rng >> 60 {
                            0 => 4 * MIB,
                            1..=3 => 64 << 10,
                            _ => page(),
                        };
                        let size = (1 + (rng >> 8) as usize % 16) * page();
                        let s = alloc(&SRC, size, align);
                        if s.zeroed {
                            assert!(reads_zero(&s), "span {s:?} claims zero but is not");
                        }
                        let seed = (t << 56) | i;
                        fill(&s, seed);
                        live.push((s, seed));
                    }
                }
                for (s, seed) in &live {
                    check(s, *seed);
                }
                // Spans hold raw pointers (not Send): hand back plain numbers.
                live.iter()
                    .map(|(s, seed)| (s.ptr as usize, s.size, *seed))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(Span, u64)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .map(|(ptr, size, seed)| {
            let span = Span {
                ptr: ptr as *mut u8,
                size,
                zeroed: false,
            };
            (span, seed)
        })
        .collect();
    all.sort_by_key(|(s, _)| s.ptr as usize);
    for pair in all.windows(2) {
        assert!(
            end(&pair[0].0) <= pair[1].0.ptr as usize,
            "overlap: {pair:?}"
        );
    }
    for (s, seed) in &all {
        check(s, *seed);
        release(&SRC, s);
    }
    assert_eq!(SRC.mapped_bytes(), 0);
}
