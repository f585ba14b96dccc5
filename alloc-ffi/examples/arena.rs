//! Per-request arenas: each "request" builds its data (a `Vec` of boxed records and a string
//! table) in an `Arena`, and all of it goes at once when the arena is dropped.
//!
//! ```text
//! cargo run -p pagebreak-malloc --example arena
//! ```

use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use pagebreak::{selected, Arena};

/// A cache-line-aligned record: arenas serve any power-of-two alignment.
#[repr(align(64))]
struct Record {
    id: u64,
    score: f64,
}

/// One request's work, all of it inside `arena`. Returns a digest computed from the data.
fn handle(arena: &Arena, request: u64) -> f64 {
    let mut records: Vec<Box<Record, &Arena>, &Arena> = Vec::new_in(arena);
    let mut names: Vec<u8, &Arena> = Vec::new_in(arena);
    for i in 0..5_000 {
        let id = request * 10_000 + i;
        records.push(Box::new_in(
            Record {
                id,
                score: (id % 97) as f64 / 7.0,
            },
            arena,
        ));
        names.extend_from_slice(format!("item-{id};").as_bytes());
    }
    assert!(records
        .iter()
        .all(|r| (&**r as *const Record as usize) & 63 == 0));
    // Nothing is freed here: the caller drops the arena.
    records
        .iter()
        .map(|r| r.score + (r.id % 3) as f64)
        .sum::<f64>()
        + names.len() as f64
}

fn main() {
    let before = selected::stats();
    for request in 0..20 {
        let arena = Arena::new();
        let digest = handle(&arena, request);
        drop(arena);
        let after = selected::stats();
        if request % 5 == 0 {
            println!(
                "request {request:>2}: digest {digest:>10.1}, {} bytes left allocated after the drop",
                after.allocated as i64 - before.allocated as i64,
            );
        }
    }
    let end = selected::stats();
    println!(
        "{} backend: {} KiB reserved at the end (freed arenas' memory is reused, not remapped)",
        selected::BACKEND,
        end.reserved >> 10
    );
}
