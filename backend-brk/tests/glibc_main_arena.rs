//! glibc's `malloc` grows and trims the break from the main thread (its main arena). Here it
//! does so between the calls of a `BrkSource` on the same thread: no span may overlap a glibc
//! block, and both must keep their contents. Runs without the test harness, on the main thread.

use alloc_core::{PageSource, Span};
use backend_brk::BrkSource;

fn brk_now() -> usize {
    // SAFETY: sbrk(0) only reads the break.
    unsafe { libc::sbrk(0) as usize }
}

fn words(span: &Span) -> &[u64] {
    // SAFETY: the span is live, page-aligned and `size` bytes long; one thread uses it.
    unsafe { std::slice::from_raw_parts(span.ptr.cast::<u64>(), span.size / 8) }
}

fn bytes<'a>(p: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: `p` is a live glibc block of `len` bytes.
    unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    // Make glibc move the break often: no padding, trim at 512 KiB free at the top, blocks up
    // to 256 KiB from the heap. (A trim threshold below the request size makes glibc itself
    // fail: after a foreign sbrk it frees its old top, trims the new one and returns NULL.)
    // SAFETY: mallopt only changes glibc's tuning; nothing is allocated concurrently.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 10);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
    let src = BrkSource::new();
    // The kernel's page (4 KiB on x86-64; 16 or 64 KiB under `qemu-aarch64 -p`).
    let page = src.page_size();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut ours: Vec<(Span, u64)> = Vec::with_capacity(64);
    let mut theirs: Vec<(usize, usize, u8)> = Vec::with_capacity(64);
    let (mut glibc_from_new_break, mut breaks_lowered) = (0, 0);

    for i in 0..4000u64 {
        let r = rng.next();
        match r % 4 {
            0 if ours.len() < 48 => {
                let size = (1 + (r >> 8) as usize % 32) * page;
                let align = if r >> 60 == 0 { 4 << 20 } else { page };
                // SAFETY: a page multiple and a power-of-two alignment >= page.
                let span = unsafe { src.alloc(size, align) }.expect("brk alloc");
                assert_eq!(span.ptr as usize % align, 0);
                let (s, e) = (span.ptr as usize, span.ptr as usize + size);
                for &(p, len, _) in &theirs {
                    assert!(
                        e <= p || p + len <= s,
                        "span {span:?} overlaps glibc block {p:#x}"
                    );
                }
                if span.zeroed {
                    assert!(words(&span).iter().all(|&w| w == 0));
                }
                // SAFETY: the fresh span, not borrowed elsewhere.
                unsafe { std::slice::from_raw_parts_mut(span.ptr.cast::<u64>(), size / 8) }.fill(i);
                ours.push((span, i));
            }
            1 if theirs.len() < 48 => {
                let len = 1024 + (r >> 8) as usize % (200 << 10);
                let before = brk_now();
                // SAFETY: plain malloc.
                let p = unsafe { libc::malloc(len) } as usize;
                assert_ne!(p, 0);
                if p >= before && p < brk_now() {
                    glibc_from_new_break += 1;
                }
                for (span, _) in &ours {
                    let (s, e) = (span.ptr as usize, span.ptr as usize + span.size);
                    assert!(
                        e <= p || p + len <= s,
                        "glibc block {p:#x} overlaps {span:?}"
                    );
                }
                bytes(p, len).fill(i as u8);
                theirs.push((p, len, i as u8));
            }
            2 if !ours.is_empty() => {
                let (span, seed) = ours.swap_remove((r >> 8) as usize % ours.len());
                assert!(
                    words(&span).iter().all(|&w| w == seed),
                    "span {span:?} clobbered"
                );
                let before = brk_now();
                // SAFETY: a whole live span of `src`, not used afterwards.
                unsafe { src.release(span.ptr, span.size) };
                breaks_lowered += usize::from(brk_now() < before);
            }
            3 if !theirs.is_empty() => {
                let (p, len, fillb) = theirs.swap_remove((r >> 8) as usize % theirs.len());
                assert!(
                    bytes(p, len).iter().all(|&b| b == fillb),
                    "glibc block clobbered"
                );
                // SAFETY: a live block from malloc above.
                unsafe { libc::free(p as *mut libc::c_void) };
            }
            _ => {}
        }
    }
    for (span, seed) in ours {
        assert!(words(&span).iter().all(|&w| w == seed));
        // SAFETY: a whole live span of `src`.
        unsafe { src.release(span.ptr, span.size) };
    }
    for (p, len, fillb) in theirs {
        assert!(bytes(p, len).iter().all(|&b| b == fillb));
        // SAFETY: a live block from malloc.
        unsafe { libc::free(p as *mut libc::c_void) };
    }
    assert_eq!(src.mapped_bytes(), 0);
    // The scenario really happened: glibc grew the break between our spans, and we gave
    // memory back by lowering it.
    assert!(
        glibc_from_new_break > 0,
        "glibc never took memory from the break"
    );
    assert!(breaks_lowered > 0, "the source never lowered the break");
    println!(
        "glibc_main_arena: ok ({glibc_from_new_break} glibc blocks from a moved break, \
         {breaks_lowered} break reductions, {} bytes in the free table)",
        src.free_bytes()
    );
}
