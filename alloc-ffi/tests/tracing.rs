//! Feature `tracing`: a subscriber receives "mapped" events when memory is mapped, and the
//! subscriber's own allocations (it formats strings) neither recurse nor deadlock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[global_allocator]
static GLOBAL: pagebreak::PageBreak = pagebreak::PageBreak;

struct Collect(Mutex<Vec<String>>, AtomicUsize);

struct Message<'a>(&'a mut String);
impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "pagebreak"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.1.fetch_add(1, Ordering::Relaxed) as u64 + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        // Allocate a good deal inside the subscriber: pagebreak must serve it normally.
        let padding = vec![7u8; 2 << 20];
        assert_eq!(padding[padding.len() - 1], 7);
        self.0.lock().unwrap().push(message);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn mapped_events_reach_the_subscriber() {
    let collect = Collect(Mutex::new(Vec::new()), AtomicUsize::new(0));
    tracing::subscriber::with_default(collect, || {
        let blocks: Vec<Vec<u8>> = (0..32).map(|i| vec![1u8; (2 << 20) + i * 8192]).collect();
        assert_eq!(blocks.iter().map(|b| b[0] as usize).sum::<usize>(), 32);
        drop(blocks);
        tracing::dispatcher::get_default(|d| {
            let c = d.downcast_ref::<Collect>().unwrap();
            let events = c.0.lock().unwrap();
            assert!(
                events.iter().filter(|e| e.as_str() == "mapped").count() >= 16,
                "{events:?}"
            );
        });
    });
}
