//! Many more threads than cores (8, 32 and 128 on the 2-core CI machine): a ring where each
//! thread frees what its neighbour allocated (remote frees, full pages coming back through
//! the delayed list), waves of threads that exit while the next wave frees the blocks they
//! left (abandonment, adoption), and large and huge blocks (the span cache's lock). Every
//! block's contents are checked before it is freed. No timing assertion: the point is that
//! nothing is lost, corrupted or deadlocked when lock holders and notifying threads are
//! preempted mid-way.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::*;

/// Blocks allocated per wave, shared out among the threads (at least 300 each).
const TOTAL_PER_WAVE: usize = 24_000;
const WAVES: usize = 2;

fn oversubscribed<A: GlobalAlloc + Sync + 'static>(alloc: &'static A, threads: usize) {
    // Blocks a wave leaves behind for the next one (freed after their owners exited).
    let left: Arc<Mutex<Vec<Block>>> = Arc::new(Mutex::new(Vec::new()));
    for wave in 0..WAVES {
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::channel::<Vec<Block>>()).unzip();
        let start = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(t, rx)| {
                let next = txs[(t + 1) % threads].clone();
                let (left, start) = (left.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    // The blocks the previous wave left: freed into abandoned pages.
                    let inherited: Vec<Block> = {
                        let mut l = left.lock().unwrap();
                        let keep = l.len().saturating_sub(l.len() / threads + 1);
                        l.split_off(keep)
                    };
                    for b in inherited {
                        verify(b.ptr as *mut u8, b.layout.size(), b.seed);
                        // SAFETY: allocated by `alloc` with this layout, freed once.
                        unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
                    }
                    let mut state = 0x2545_f491_4f6c_dd1d ^ ((wave * 1000 + t) as u64 + 1);
                    let mut batch = Vec::new();
                    let mut kept = Vec::new();
                    for i in 0..(TOTAL_PER_WAVE / threads).max(300) {
                        let x = rng(&mut state);
                        let layout = Layout::from_size_align(size_for(x), 16).unwrap();
                        // SAFETY: non-zero size.
                        let p = unsafe { alloc.alloc(layout) };
                        assert!(!p.is_null());
                        let seed = (i as u8) ^ (t as u8) ^ (wave as u8);
                        fill(p, layout.size(), seed);
                        let b = Block {
                            ptr: p as usize,
                            layout,
                            seed,
                        };
                        match x % 4 {
                            0 | 1 => batch.push(b),
                            2 => kept.push(b),
                            _ => {
                                verify(p, layout.size(), seed);
                                // SAFETY: allocated just above, freed once.
                                unsafe { alloc.dealloc(p, layout) };
                            }
                        }
                        if batch.len() == 32 {
                            let _ = next.send(std::mem::take(&mut batch));
                        }
                        // Free what the neighbour sent so far: remote frees into its pages.
                        for got in rx.try_iter() {
                            for b in got {
                                verify(b.ptr as *mut u8, b.layout.size(), b.seed);
                                // SAFETY: sent to us once, freed once.
                                unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
                            }
                        }
                    }
                    let _ = next.send(batch);
                    drop(next);
                    // Half of what we kept outlives this thread.
                    let half = kept.split_off(kept.len() / 2);
                    left.lock().unwrap().extend(half);
                    for b in kept {
                        verify(b.ptr as *mut u8, b.layout.size(), b.seed);
                        // SAFETY: ours, freed once.
                        unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
                    }
                    rx
                })
            })
            .collect();
        drop(txs);
        // Whatever was still in flight when a thread finished.
        for h in handles {
            let rx = h.join().expect("a thread failed");
            for got in rx.try_iter() {
                for b in got {
                    verify(b.ptr as *mut u8, b.layout.size(), b.seed);
                    // SAFETY: sent once, freed once.
                    unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
                }
            }
        }
    }
    for b in left.lock().unwrap().drain(..) {
        verify(b.ptr as *mut u8, b.layout.size(), b.seed);
        // SAFETY: left by an exited thread, freed once here.
        unsafe { alloc.dealloc(b.ptr as *mut u8, b.layout) };
    }
}

macro_rules! per_thread_count {
    ($feature:literal, $alloc:expr, $($name:ident = $n:expr),*) => {$(
        #[cfg(feature = $feature)]
        #[test]
        fn $name() {
            oversubscribed($alloc, $n);
        }
    )*};
}

#[cfg(feature = "mmap")]
static MMAP: pagebreak::MmapPageBreak = pagebreak::MmapPageBreak;
per_thread_count!(
    "mmap",
    &MMAP,
    mmap_8_threads = 8,
    mmap_32_threads = 32,
    mmap_128_threads = 128
);

#[cfg(feature = "brk")]
static BRK: pagebreak::BrkPageBreak = pagebreak::BrkPageBreak;
per_thread_count!(
    "brk",
    &BRK,
    brk_8_threads = 8,
    brk_32_threads = 32,
    brk_128_threads = 128
);
