//! A `tracing` subscriber receiving pagebreak's events (run with `--features tracing`):
//! `cargo run -p pagebreak-malloc --example tracing_events --features tracing`.
//!
//! The subscriber allocates (it formats every event into a `String`); pagebreak serves those
//! allocations normally and does not report them as events of their own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[global_allocator]
static GLOBAL: pagebreak::PageBreak = pagebreak::PageBreak;

/// Collects every pagebreak event as a line of text.
struct Collect {
    lines: Mutex<Vec<String>>,
    next_id: AtomicUsize,
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Collect {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "pagebreak"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) as u64 + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Line(&mut text));
        self.lines.lock().unwrap().push(text);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn main() {
    let collect = Collect {
        lines: Mutex::new(Vec::new()),
        next_id: AtomicUsize::new(0),
    };
    tracing::subscriber::with_default(collect, || {
        // 64 MiB in 1 MiB+ blocks: each is mapped, freed into the cache, and at last purged.
        let mut blocks: Vec<Vec<u8>> = (0..48)
            .map(|i| vec![i as u8; (1 << 20) + 4096 * i])
            .collect();
        blocks.clear();
        let more: Vec<Vec<u8>> = (0..48).map(|i| vec![i as u8; (3 << 20) + i]).collect();
        drop(more);
        std::thread::sleep(std::time::Duration::from_millis(250));
        let _late = vec![0u8; 5 << 20];
        tracing::dispatcher::get_default(|d| {
            let collect = d.downcast_ref::<Collect>().expect("our subscriber");
            let lines = collect.lines.lock().unwrap();
            for line in lines.iter() {
                println!("{line}");
            }
            println!("{} events", lines.len());
        });
    });
}
