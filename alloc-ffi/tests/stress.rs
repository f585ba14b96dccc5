//! Multi-threaded stress through the Rust API: blocks allocated on one thread are verified
//! and freed on another. Runs against every backend compiled in.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

use common::*;

/// Producers allocate and fill, consumers on other threads verify and free.
fn cross_thread<A: GlobalAlloc + Sync + 'static>(alloc: &'static A) {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 20_000;
    let (tx, rx) = mpsc::sync_channel::<Vec<Block>>(64);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || loop {
                let batch = match rx.lock().unwrap().recv() {
                    Ok(b) => b,
                    Err(_) => return,
                };
                for b in batch {
                    verify(b.ptr as *mut u8, b.layout.size(), b.seed);
                    // SAFETY: allocated by `alloc` with this layout, freed once.
                    unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut state = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
                let mut batch = Vec::new();
                for i in 0..PER_PRODUCER {
                    let x = rng(&mut state);
                    let align = if x.is_multiple_of(7) {
                        1 << (x % 13)
                    } else {
                        8
                    };
                    let layout = Layout::from_size_align(size_for(x), align).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc.alloc(layout) };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0);
                    let seed = (i as u8) ^ (t as u8);
                    fill(p, layout.size(), seed);
                    batch.push(Block {
                        ptr: p as usize,
                        layout,
                        seed,
                    });
                    if batch.len() == 64 {
                        tx.send(std::mem::take(&mut batch)).unwrap();
                    }
                }
                tx.send(batch).unwrap();
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    for c in consumers {
        c.join().unwrap();
    }
}

#[cfg(feature = "mmap")]
#[test]
fn cross_thread_mmap() {
    static A: pagebreak::MmapPageBreak = pagebreak::MmapPageBreak;
    cross_thread(&A);
}

#[cfg(feature = "brk")]
#[test]
fn cross_thread_brk() {
    static A: pagebreak::BrkPageBreak = pagebreak::BrkPageBreak;
    cross_thread(&A);
}

/// Huge blocks grown by realloc keep their contents (the mmap backend moves pages with
/// mremap instead of copying) and their alignment.
fn huge_realloc_growth<A: GlobalAlloc>(alloc: &A) {
    let mut layout = Layout::from_size_align(2 << 20, 64).unwrap();
    // SAFETY: non-zero size; every realloc passes the current layout.
    unsafe {
        let mut p = alloc.alloc(layout);
        assert!(!p.is_null());
        fill(p, layout.size(), 7);
        let mut filled = layout.size();
        while layout.size() < (300 << 20) {
            let new_size = layout.size() * 3 / 2 + 4096;
            p = alloc.realloc(p, layout, new_size);
            assert!(!p.is_null());
            assert_eq!(p as usize % 64, 0);
            verify(p, filled, 7);
            layout = Layout::from_size_align(new_size, 64).unwrap();
            // Touch the new tail's last byte too.
            p.add(new_size - 1).write(1);
            fill(p, filled, 7);
            filled = filled.min(new_size);
        }
        alloc.dealloc(p, layout);
    }
}

#[cfg(feature = "mmap")]
#[test]
fn huge_realloc_growth_mmap() {
    huge_realloc_growth(&pagebreak::MmapPageBreak);
}

#[cfg(feature = "brk")]
#[test]
fn huge_realloc_growth_brk() {
    huge_realloc_growth(&pagebreak::BrkPageBreak);
}
