//! MmapSource against the PageSource contract, on the real kernel.

use alloc_core::{PageSource, SourceError, Span};
use backend_mmap::MmapSource;
use std::thread;

const MIB: usize = 1 << 20;

/// The source's page: the kernel's (4 KiB on x86-64; 16 or 64 KiB on some aarch64 kernels,
/// and under `qemu-aarch64 -p`).
fn page() -> usize {
    MmapSource::new().page_size()
}

#[test]
fn page_size_is_the_kernels() {
    // SAFETY: plain libc call.
    let kernel = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    assert_eq!(page(), kernel);
}

fn words(span: &Span) -> &[u64] {
    // SAFETY: the span is live, page-aligned and `size` bytes long, and each test uses it from
    // one thread at a time.
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

fn alloc(src: &MmapSource, size: usize, align: usize) -> Span {
    // SAFETY: the tests pass page multiples and power-of-two alignments >= page().
    let span = unsafe { src.alloc(size, align) }.expect("alloc");
    assert_eq!(span.size, size);
    assert_eq!(span.ptr as usize % align, 0, "misaligned for {align:#x}");
    span
}

fn release(src: &MmapSource, span: &Span) {
    // SAFETY: a whole live span from `src`, not used afterwards.
    unsafe { src.release(span.ptr, span.size) };
}

#[test]
fn spans_are_aligned_zeroed_and_writable() {
    let src = MmapSource::new();
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
fn many_live_spans_are_disjoint() {
    let src = MmapSource::default();
    let spans: Vec<Span> = (0..16)
        .map(|i| alloc(&src, (1 + i % 3) * 4 * MIB, 4 * MIB))
        .collect();
    for (i, s) in spans.iter().enumerate() {
        fill(s, i as u64);
    }
    for (i, s) in spans.iter().enumerate() {
        check(s, i as u64);
    }
    spans.iter().for_each(|s| release(&src, s));
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn release_then_alloc_again() {
    let src = MmapSource::new();
    for round in 0..8u64 {
        let span = alloc(&src, 8 * MIB, 4 * MIB);
        assert!(reads_zero(&span), "fresh map after a release must be zero");
        fill(&span, round);
        release(&src, &span);
    }
}

#[test]
fn prefix_and_suffix_release() {
    let src = MmapSource::new();
    let span = alloc(&src, 16 * page(), page());
    fill(&span, 7);
    let prefix = 4 * page();
    let suffix = 4 * page();
    // SAFETY: a page-aligned prefix and suffix of a live span; the middle stays in use.
    unsafe {
        src.release(span.ptr, prefix);
        src.release(span.ptr.add(span.size - suffix), suffix);
    }
    let middle = Span {
        // SAFETY: inside the span.
        ptr: unsafe { span.ptr.add(prefix) },
        size: span.size - prefix - suffix,
        zeroed: false,
    };
    // The middle keeps its contents (the pattern continues at word prefix / 8).
    let first = words(&middle)[0];
    assert_eq!(first, 7 ^ (prefix / 8) as u64);
    assert_eq!(src.mapped_bytes(), middle.size);
    release(&src, &middle);
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn purge_keeps_the_range_and_zeroes_it() {
    let src = MmapSource::new();
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
fn huge_pages_switch() {
    let src = MmapSource::new();
    assert!(!src.huge_pages());
    src.set_huge_pages(true);
    assert!(src.huge_pages());
    let span = alloc(&src, 8 * MIB, 4 * MIB);
    assert!(reads_zero(&span));
    fill(&span, 1);
    check(&span, 1);
    release(&src, &span);
    src.set_huge_pages(false);
    assert!(!src.huge_pages());
}

#[test]
fn errors_are_reported_not_panicked() {
    let src = MmapSource::new();
    // SAFETY (all calls): the source must reject these without touching memory.
    unsafe {
        // 1 PiB is beyond the 47-bit user address space.
        assert_eq!(src.alloc(1 << 50, page()), Err(SourceError::OutOfMemory));
        assert_eq!(
            src.alloc(usize::MAX & !(page() - 1), 4 * MIB),
            Err(SourceError::InvalidRequest)
        );
        assert_eq!(
            src.alloc(page(), 3 * page()),
            Err(SourceError::InvalidRequest)
        );
        assert_eq!(src.alloc(100, page()), Err(SourceError::InvalidRequest));
    }
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn clock_and_entropy() {
    let src = MmapSource::new();
    let t0 = src.now_ms();
    assert!(t0 > 0);
    thread::sleep(std::time::Duration::from_millis(30));
    let t1 = src.now_ms();
    assert!(t1 >= t0 + 10, "{t0} -> {t1}");
    let (a, b) = (src.entropy(), src.entropy());
    assert_ne!(a, b);
    assert!(a.count_ones() > 8 && a.count_ones() < 56, "{a:#x}");
}

#[test]
fn threads_get_disjoint_spans() {
    static SRC: MmapSource = MmapSource::new();
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                let mut live: Vec<(Span, u64)> = Vec::new();
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ t;
                for i in 0..400u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if live.len() > 12 || (rng & 3 == 0 && !live.is_empty()) {
                        let (s, seed) = live.swap_remove(rng as usize % live.len());
                        check(&s, seed);
                        release(&SRC, &s);
                    } else {
                        let align = if rng & 16 == 0 { page() } else { 4 * MIB };
                        let size = (1 + (rng >> 8) as usize % 16) * page();
                        let s = alloc(&SRC, size, align);
                        let seed = (t << 56) | i;
                        fill(&s, seed);
                        live.push((s, seed));
                    }
                }
                for (s, seed) in live {
                    check(&s, seed);
                    release(&SRC, &s);
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(SRC.mapped_bytes(), 0);
}
