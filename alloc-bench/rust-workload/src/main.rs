//! A whole-program benchmark in the shape of a Rust service: each thread builds a few hundred
//! thousand records (strings, tag vectors, attribute maps) into a `HashMap` by id, a
//! `BTreeMap` by name and a `Vec<String>` of words, queries them, replaces a third of them,
//! serialises them to JSON with serde_json and hands the text to the next thread, which
//! parses it back and checks every record against its own regenerated copy. Whatever the
//! allocator, the program must come to the same counts; it exits non-zero if not.
//!
//! `rust-workload RECORDS_PER_THREAD [THREADS] [ROUNDS]`
//!
//! The allocator is chosen at build time by a cargo feature (see Cargo.toml); without one,
//! `System`. `cargo xtask bench` builds one binary per allocator.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

#[cfg(any(
    all(feature = "pagebreak-mmap", feature = "pagebreak-brk"),
    all(feature = "mimalloc-2", feature = "mimalloc-3"),
    all(
        any(feature = "pagebreak-mmap", feature = "pagebreak-brk"),
        any(
            feature = "mimalloc-2",
            feature = "mimalloc-3",
            feature = "jemalloc",
            feature = "snmalloc"
        )
    ),
    all(
        any(feature = "mimalloc-2", feature = "mimalloc-3"),
        any(feature = "jemalloc", feature = "snmalloc")
    ),
    all(feature = "jemalloc", feature = "snmalloc"),
))]
compile_error!("rust-workload: enable at most one allocator feature");

#[cfg(feature = "pagebreak-mmap")]
#[global_allocator]
static GLOBAL: pagebreak::MmapPageBreak = pagebreak::MmapPageBreak;
#[cfg(feature = "pagebreak-brk")]
#[global_allocator]
static GLOBAL: pagebreak::BrkPageBreak = pagebreak::BrkPageBreak;
#[cfg(any(feature = "mimalloc-2", feature = "mimalloc-3"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "snmalloc")]
#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

/// What the program says it runs on (printed, so a mix-up of binaries shows).
const ALLOCATOR: &str = if cfg!(feature = "pagebreak-mmap") {
    "pagebreak-mmap"
} else if cfg!(feature = "pagebreak-brk") {
    "pagebreak-brk"
} else if cfg!(feature = "mimalloc-2") {
    "mimalloc-2"
} else if cfg!(feature = "mimalloc-3") {
    "mimalloc-3"
} else if cfg!(feature = "jemalloc") {
    "jemalloc"
} else if cfg!(feature = "snmalloc") {
    "snmalloc"
} else {
    "System"
};

/// Records per JSON document handed to the next thread.
const CHUNK: usize = 1000;
/// One chunk in this many goes through JSON.
const JSON_EVERY: usize = 4;

const WORDS: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
    score: f64,
    attrs: BTreeMap<String, String>,
    history: Vec<u32>,
}

/// splitmix64: each record is a pure function of its id, so any thread can rebuild it.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn record(id: u64) -> Record {
    let h = mix(id);
    let word = |k: u64| WORDS[(mix(h ^ k) % WORDS.len() as u64) as usize];
    let name = format!("{}-{}-{id}", word(1), word(2));
    let tags = (0..h % 6)
        .map(|k| format!("{}{}", word(10 + k), k))
        .collect();
    let attrs = (0..(h >> 8) % 5)
        .map(|k| {
            (
                format!("key{k}"),
                format!("{}:{}", word(20 + k), h >> (k * 7) & 0xffff),
            )
        })
        .collect();
    let history = (0..(h >> 16) % 24)
        .map(|k| (mix(h + k) & 0xffff) as u32)
        .collect();
    Record {
        id,
        email: format!("{}.{}@example.org", word(3), id),
        name,
        tags,
        // Exactly representable, so the JSON round trip is exact.
        score: ((h >> 20) % 100_000) as f64 / 64.0,
        attrs,
        history,
    }
}

/// The ids a thread owns in a round: disjoint across threads and rounds.
fn ids(thread: usize, round: usize, n: usize, threads: usize) -> impl Iterator<Item = u64> {
    let base = ((round * threads + thread) * n * 2) as u64;
    (0..n as u64).map(move |i| base + i * 2 + 1)
}

/// What one thread found; the main thread checks these add up.
#[derive(Default, Debug)]
struct Tally {
    lookups_ok: u64,
    prefix_hits: u64,
    words: u64,
    replaced: u64,
    parsed: u64,
    json_bytes: u64,
}

fn fail(msg: String) -> ! {
    eprintln!("rust-workload: {msg}");
    std::process::exit(1);
}

/// One round of one thread: build, query, churn, serialise (send), then parse what the
/// previous thread sent and check it.
fn round(
    thread: usize,
    round_no: usize,
    n: usize,
    threads: usize,
    tx: &mpsc::Sender<(usize, String)>,
    rx: &mpsc::Receiver<(usize, String)>,
    t: &mut Tally,
) {
    // Build.
    let mut by_id: HashMap<u64, Record> = HashMap::new();
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    let mut words: Vec<String> = Vec::new();
    for id in ids(thread, round_no, n, threads) {
        let r = record(id);
        by_name.insert(r.name.clone(), id);
        words.extend(r.tags.iter().cloned());
        by_id.insert(id, r);
    }
    // Query: every name leads back to its record; prefix scans over the ordered map.
    for (name, id) in by_name.iter().step_by(3) {
        match by_id.get(id) {
            Some(r) if &r.name == name => t.lookups_ok += 1,
            _ => fail(format!("thread {thread}: lookup of {name} failed")),
        }
    }
    for w in WORDS {
        let from = format!("{w}-");
        let to = format!("{w}.");
        t.prefix_hits += by_name.range(from..to).count() as u64;
    }
    words.sort_unstable();
    words.dedup();
    t.words += words.len() as u64;
    // Churn: a third of the records replaced by fresh copies with longer histories.
    let victims: Vec<u64> = by_id.keys().copied().filter(|id| id % 3 == 0).collect();
    for id in victims {
        let old = by_id.remove(&id).expect("victim present");
        by_name.remove(&old.name);
        // The new copy grows past the old history and is cut back: reallocs, then the
        // record is its regenerated self again (what the receiver checks).
        let mut r = record(id);
        r.history.extend(old.history.iter().rev());
        r.history.truncate(r.history.len() - old.history.len());
        by_name.insert(r.name.clone(), id);
        by_id.insert(id, r);
        t.replaced += 1;
    }
    // Serialise every JSON_EVERY-th chunk in id order and hand it to the next thread; parse
    // what arrives. (All of it would make this a JSON benchmark; this is a program.)
    let mut ordered: Vec<&Record> = by_id.values().collect();
    ordered.sort_unstable_by_key(|r| r.id);
    for chunk in ordered.chunks(CHUNK).step_by(JSON_EVERY) {
        let json = serde_json::to_string(chunk).expect("serialise");
        t.json_bytes += json.len() as u64;
        tx.send((thread, json)).expect("next thread alive");
    }
    drop(ordered);
    drop(by_name);
    drop(by_id);
    for _ in 0..json_chunks(n) {
        let (from, json) = rx.recv().expect("previous thread alive");
        let parsed: Vec<Record> = serde_json::from_str(&json)
            .unwrap_or_else(|e| fail(format!("thread {thread}: JSON from {from}: {e}")));
        for r in &parsed {
            if r != &record(r.id) {
                fail(format!(
                    "thread {thread}: record {} from thread {from} changed",
                    r.id
                ));
            }
        }
        // And through serde_json's untyped tree, as a proxy or a config loader would.
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        if serde_json::to_string(&v).expect("serialise value").len() != json.len() {
            fail(format!(
                "thread {thread}: JSON value round trip changed the length"
            ));
        }
        t.parsed += parsed.len() as u64;
    }
}

/// Chunks of JSON a thread sends (and receives) per round.
fn json_chunks(n: usize) -> usize {
    n.div_ceil(CHUNK).div_ceil(JSON_EVERY)
}

/// Records in those chunks.
fn json_records(n: usize) -> usize {
    (0..n.div_ceil(CHUNK))
        .step_by(JSON_EVERY)
        .map(|c| CHUNK.min(n - c * CHUNK))
        .sum()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i).map_or(default, |s| {
            s.parse().ok().filter(|&v| v > 0).unwrap_or_else(|| {
                fail(format!(
                    "bad argument {s:?} (RECORDS_PER_THREAD [THREADS] [ROUNDS])"
                ))
            })
        })
    };
    let n = arg(0, 200_000);
    let threads = arg(1, 3);
    let rounds = arg(2, 2);
    match run(n, threads, rounds) {
        Ok(summary) => {
            println!("rust-workload ({ALLOCATOR}): {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rust-workload: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole program: every thread's rounds, then the counts checked.
fn run(n: usize, threads: usize, rounds: usize) -> Result<String, String> {
    // A ring: thread i sends to thread i+1. Unbounded: every thread sends its whole round
    // before it receives (a bounded ring would deadlock), so a round's JSON is in flight.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<(usize, String)>>> = rxs.into_iter().map(Some).collect();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let tx = txs[(i + 1) % threads].clone();
            let rx = rxs[i].take().expect("one receiver per thread");
            thread::spawn(move || {
                let mut t = Tally::default();
                for r in 0..rounds {
                    round(i, r, n, threads, &tx, &rx, &mut t);
                }
                t
            })
        })
        .collect();
    drop(txs);
    let tallies: Vec<Tally> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| fail("a worker panicked".into()))
        })
        .collect();

    // Every count is known without the allocator: recompute them from the ids alone.
    let mut want = Tally::default();
    for i in 0..threads {
        for r in 0..rounds {
            want.lookups_ok += n.div_ceil(3) as u64;
            want.replaced += ids(i, r, n, threads).filter(|id| id % 3 == 0).count() as u64;
            want.parsed += json_records(n) as u64;
        }
    }
    let got_lookups: u64 = tallies.iter().map(|t| t.lookups_ok).sum();
    let got_replaced: u64 = tallies.iter().map(|t| t.replaced).sum();
    let got_parsed: u64 = tallies.iter().map(|t| t.parsed).sum();
    let hits: u64 = tallies.iter().map(|t| t.prefix_hits).sum();
    if (got_lookups, got_replaced, got_parsed) != (want.lookups_ok, want.replaced, want.parsed) {
        return Err(format!(
            "counts differ: lookups {got_lookups}/{}, replaced {got_replaced}/{}, parsed {got_parsed}/{}",
            want.lookups_ok, want.replaced, want.parsed
        ));
    }
    // Each record's name starts with one of WORDS and a dash: every record is a prefix hit.
    let names = (n * threads * rounds) as u64;
    if hits != names {
        return Err(format!("prefix scans found {hits} names, want {names}"));
    }
    let json: u64 = tallies.iter().map(|t| t.json_bytes).sum();
    let words: u64 = tallies.iter().map(|t| t.words).sum();
    Ok(format!(
        "{threads} threads x {rounds} rounds x {n} records, {got_parsed} parsed back, \
         {} MB of JSON, {words} distinct tags",
        json >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_checks_out() {
        // 2 rounds of 2500 records on 3 threads: 3 chunks of JSON each (1000, 1000, 500
        // records), the first of every 4 sent: 1000 records parsed per thread and round.
        let s = run(2500, 3, 2).unwrap();
        assert!(s.contains("6000 parsed back"), "{s}");
        assert_eq!(json_records(2500), 1000);
        assert_eq!(json_records(4500), 1500);
        assert_eq!(json_chunks(4500), 2);
    }

    #[test]
    fn records_survive_json_and_differ_by_id() {
        let a = record(7);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), a);
        assert_ne!(record(9), a);
        assert_eq!(record(7), a);
        // Ids of threads and rounds never meet.
        let mut all: Vec<u64> = (0..3)
            .flat_map(|t| (0..2).flat_map(move |r| ids(t, r, 100, 3)))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 600);
    }
}
