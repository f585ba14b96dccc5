//! Thread churn: thousands of short-lived threads, memory stays bounded because exited
//! threads' segments are adopted. Its own test binary, so no other test's memory counts.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::thread;

use common::*;

/// Thousands of short threads; each leaves blocks behind for the main thread to free.
/// Abandoned segments must be adopted: reserved memory stays bounded.
fn thread_churn<A: GlobalAlloc + Sync + 'static>(alloc: &'static A, reserved: fn() -> usize) {
    const THREADS: usize = 3000;
    let mut leftovers = Vec::new();
    let mut peak = 0;
    for t in 0..THREADS {
        let handle = thread::spawn(move || {
            let mut kept = Vec::new();
            for i in 0..64usize {
                let layout = Layout::from_size_align(16 + (i * 37 + t) % 2000, 16).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc.alloc(layout) };
                assert!(!p.is_null());
                fill(p, layout.size(), i as u8);
                if i % 4 == 0 {
                    kept.push(Block {
                        ptr: p as usize,
                        layout,
                        seed: i as u8,
                    });
                } else {
                    // SAFETY: allocated above, freed once.
                    unsafe { alloc.dealloc(p, layout) };
                }
            }
            kept
        });
        leftovers.extend(handle.join().unwrap());
        if leftovers.len() > 4000 {
            for b in leftovers.drain(..) {
                verify(b.ptr as *mut u8, b.layout.size(), b.seed);
                // SAFETY: allocated by a finished thread, freed once here.
                unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
            }
        }
        peak = peak.max(reserved());
    }
    for b in leftovers {
        verify(b.ptr as *mut u8, b.layout.size(), b.seed);
        // SAFETY: as above.
        unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
    }
    // 3000 threads x 64 blocks of up to 2 KiB were live at most a few at a time: without
    // adoption every thread would strand its segments (3000 x 4 MiB reserved).
    assert!(peak < 256 << 20, "reserved peaked at {} MiB", peak >> 20);
}

#[cfg(feature = "mmap")]
#[test]
fn thread_churn_mmap() {
    static A: pagebreak::MmapPageBreak = pagebreak::MmapPageBreak;
    thread_churn(&A, || pagebreak::mmap::stats().reserved);
}

#[cfg(feature = "brk")]
#[test]
fn thread_churn_brk() {
    static A: pagebreak::BrkPageBreak = pagebreak::BrkPageBreak;
    thread_churn(&A, || pagebreak::brk::stats().reserved);
}
