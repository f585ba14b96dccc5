//! The cross-thread protocols under many threads: blocks freed by a thread that does not own
//! them (the `thread_free` CAS, the delayed list of full pages), and heaps retired while
//! others still free into their pages (abandonment, then adoption). Under Miri its data-race
//! detector and weak-memory emulation check every access these protocols make.

mod common;

use std::sync::mpsc;
use std::thread;

use alloc_core::Allocator;
use common::{check, fill, StdSource};

static SOURCE: StdSource = StdSource::new();
static ALLOC: Allocator<&StdSource> = Allocator::new(&SOURCE);

/// A block crossing threads (raw pointers are not Send).
struct Sent(*mut u8, usize, u8);
// SAFETY: the block is owned by whoever holds the message; the allocator allows freeing it
// from any thread.
unsafe impl Send for Sent {}

#[test]
fn remote_frees_full_pages_and_abandonment() {
    let (rounds, per_round) = if cfg!(miri) { (2, 40) } else { (20, 4000) };
    for round in 0..rounds {
        let (tx, rx) = mpsc::channel::<Sent>();
        // Producers: allocate, fill, send, then exit (their heaps are retired while the
        // consumer still holds and frees their blocks).
        let producers: Vec<_> = (0..2u8)
            .map(|t| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let heap = ALLOC.new_heap();
                    let mut own = Vec::new();
                    for i in 0..per_round {
                        let size = 16 + (i * 7 + t as usize * 13) % 600;
                        // SAFETY: our heap; blocks are sent away or freed here once.
                        unsafe {
                            let p = ALLOC.malloc(heap, size);
                            assert!(!p.is_null());
                            let seed = (i as u8) ^ t ^ round;
                            fill(p, size, seed);
                            if i % 3 == 0 {
                                own.push(p);
                            } else {
                                tx.send(Sent(p, size, seed)).unwrap();
                            }
                        }
                    }
                    for p in own {
                        // SAFETY: allocated above by this heap, freed once.
                        unsafe { ALLOC.free(heap, p) };
                    }
                    // SAFETY: this thread's heap, not used after.
                    unsafe { ALLOC.retire_heap(heap) };
                })
            })
            .collect();
        drop(tx);
        // Consumer: frees every block remotely (its own heap owns none of them).
        let consumer = thread::spawn(move || {
            let heap = ALLOC.new_heap();
            let mut n = 0;
            for Sent(p, size, seed) in rx {
                check(p, size, seed);
                // SAFETY: a live block sent to us, freed once.
                unsafe { ALLOC.free(heap, p) };
                n += 1;
            }
            // SAFETY: this thread's heap.
            unsafe { ALLOC.retire_heap(heap) };
            n
        });
        for p in producers {
            p.join().unwrap();
        }
        let freed = consumer.join().unwrap();
        assert_eq!(freed, 2 * (per_round - per_round.div_ceil(3)));
    }
    // A fresh heap adopts the abandoned segments and finds every block free.
    let heap = ALLOC.new_heap();
    // SAFETY: our heap.
    unsafe {
        ALLOC.trim(heap);
        ALLOC.retire_heap(heap);
    }
    let stats = ALLOC.stats();
    assert_eq!(stats.allocated, 0, "{stats:?}");
    assert_eq!(stats.abandoned_segments, 0, "{stats:?}");
}
