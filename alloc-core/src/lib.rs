//! pagebreak's core: block management over a pluggable [`PageSource`].
//!
//! `no_std`, no allocation of its own, no OS call: everything the core needs from the outside
//! world goes through the [`PageSource`] trait (spans of memory, a clock, entropy).
//!
//! # Architecture
//!
//! * [`size_class`]: request sizes to block sizes (16-byte steps, then four per doubling).
//! * `page`: a run of blocks of one class with sharded free lists.
//! * `segment`: 4 MiB aligned spans holding pages (or one large block); the
//!   mask `p & !SEGMENT_MASK` finds any block's metadata.
//! * [`segment_map`]: which chunks of the address space are ours (invalid-free detection).
//! * [`heap`]: thread-owned page queues; the malloc fast path.
//! * `free`: the way of a pointer through `free` (validation, own-thread, remote, special).
//! * [`Allocator`]: state heaps share (abandoned segments, the span cache, counters).
//! * `purge_pace`: how long free pages stay resident: the purge delay, lengthened while a
//!   heap takes back pages it purged, as long as that does not raise the peak.
//! * [`checks`]: what misuse is detected and how it is reported.
//! * [`sampling`]: the sampled allocations behind heap profiles and guarded blocks.
//! * [`guarded`]: sampled blocks on pages of their own, against guard pages.
//! * [`stats`]: counters snapshots; [`view`]: a picture of the segments (heapmap).
//!
//! # Example
//!
//! ```
//! use alloc_core::{Allocator, StaticSource};
//!
//! static SOURCE: StaticSource<{ 16 << 20 }> = StaticSource::new();
//! let alloc = Allocator::new(&SOURCE);
//! let heap = alloc.new_heap();
//! unsafe {
//!     let p = alloc.malloc(heap, 100);
//!     assert!(!p.is_null());
//!     p.write_bytes(0xab, 100);
//!     assert!(alloc.usable_size(p) >= 100);
//!     alloc.free(heap, p);
//!     alloc.retire_heap(heap);
//! }
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod allocator;
pub mod checks;
mod free;
pub mod guarded;
pub mod heap;
mod page;
mod page_queue;
pub mod parking;
/// The cross-thread protocols, generic over the atomic word (public for the loom models).
#[doc(hidden)]
pub mod protocol;
mod purge_pace;
pub mod sampling;
mod segment;
pub mod segment_map;
pub mod size_class;
pub mod source;
mod span_cache;
mod static_source;
pub mod stats;
mod util;
pub mod view;
mod wait;

pub use allocator::{Allocator, DEFAULT_PURGE_DELAY_MS, MAX_ALIGN, MAX_ALLOC};
pub use checks::{Call, Misuse, MisuseKind};
pub use guarded::{FaultKind, GuardedBlock, GuardedConfig, GuardedFault, GuardedStats};
pub use heap::{EmptyHeap, Heap};
pub use purge_pace::DEFAULT_PURGE_DELAY_MAX_MS;
pub use sampling::{SampleHooks, SAMPLE_GUARD, SAMPLE_PROFILE};
pub use source::{PageSource, SourceError, Span, MAX_PAGE_SIZE, PAGE_SIZE};
pub use static_source::StaticSource;
pub use stats::{SourceCounters, Stats};
pub use util::{SpinGuard, SpinLock};

/// log2 of [`SEGMENT_SIZE`].
pub const SEGMENT_SHIFT: usize = 22;
/// Segments are 4 MiB, aligned to their size.
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// `p & !SEGMENT_MASK` is the segment holding `p`.
pub const SEGMENT_MASK: usize = SEGMENT_SIZE - 1;
