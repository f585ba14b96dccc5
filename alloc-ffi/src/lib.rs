//! pagebreak: a fast, hardened general-purpose allocator — the C library
//! (`libpagebreak.so`, `libpagebreak.a`) and the Rust global allocator.
//!
//! # From Rust
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: pagebreak::PageBreak = pagebreak::PageBreak;
//!
//! let v: Vec<u64> = (0..1000).collect();
//! assert_eq!(v.iter().sum::<u64>(), 499_500);
//! ```
//!
//! Features choose the page source: `mmap` (default) and/or `brk`. [`PageBreak`] and the C
//! API use `brk` when it is enabled, `mmap` otherwise; `MmapPageBreak` (feature `mmap`) and
//! `BrkPageBreak` (feature `brk`) name one backend each. Feature `c-api` (default) exports
//! `malloc`, `free` and the rest of the C allocation API from this library; turn it off to use
//! pagebreak only as a Rust allocator without replacing the process's `malloc`.
//!
//! # Arenas
//!
//! An [`Arena`] is a heap of its own: allocate from it through allocator-api2's `Allocator`
//! (`Vec::new_in(&arena)`, `Box::new_in(x, &arena)`), and everything in it is freed at once
//! when it is dropped. Feature `nightly` adds the standard library's unstable
//! `core::alloc::Allocator`, for `std`'s own collections.
//!
//! ```
//! use allocator_api2::vec::Vec;
//!
//! let arena = pagebreak::Arena::new();
//! let mut v = Vec::new_in(&arena);
//! v.extend(0..1000u32);
//! assert_eq!(v[999], 999);
//! ```
//!
//! # Embedding the core
//!
//! `alloc-core` runs over any `PageSource`: a static array (`alloc_core::StaticSource`), a
//! file (`backend_file::FileSource`), or one of your own.
//!
//! # Heap profiles
//!
//! With `PAGEBREAK_PROFILE=1` (or an interval in bytes) in the environment, pagebreak samples
//! allocations and writes heap profiles at exit, on SIGUSR1, on failed allocations, and on
//! request ([`profile::dump`]); `pagebreak-prof` reads them.
//!
//! # Misuse
//!
//! A double free, or a free of a pointer pagebreak did not hand out, prints one line to
//! stderr (`pagebreak: free(): double free of 0x...`) and aborts.

#![cfg_attr(feature = "nightly", feature(allocator_api))]

#[cfg(not(any(feature = "mmap", feature = "brk")))]
compile_error!("pagebreak needs a page source: enable feature `mmap` or `brk` (or both).");

mod arena;
mod fault;
mod global;
mod guarded;
mod heapmap;
mod instance;
mod options;
mod proc_maps;
pub mod profile;
mod report;
mod stack;
mod stats_print;
mod symbolize;
#[cfg(feature = "tracing")]
mod trace;

#[cfg(feature = "c-api")]
mod c_api;
#[cfg(feature = "c-api")]
mod c_ext;

pub use arena::Arena;
pub use global::*;
pub use options::Options;

use instance::define_instance;

#[cfg(feature = "mmap")]
define_instance!(
    mmap,
    backend_mmap::MmapSource,
    backend_mmap::MmapSource::new(),
    "mmap",
    configure_mmap
);
#[cfg(feature = "brk")]
define_instance!(
    brk,
    backend_brk::BrkSource,
    backend_brk::BrkSource::new(),
    "brk",
    configure_brk
);

/// The instance the C API and [`PageBreak`] use: brk when enabled, else mmap.
#[cfg(feature = "brk")]
pub use brk as selected;
#[cfg(all(feature = "mmap", not(feature = "brk")))]
pub use mmap as selected;

/// Options that concern the mmap source: transparent huge pages.
#[cfg(feature = "mmap")]
fn configure_mmap(source: &backend_mmap::MmapSource, options: &Options) {
    source.set_huge_pages(options.huge_pages);
}

/// The brk source has no options (the break is never huge-page backed).
#[cfg(feature = "brk")]
fn configure_brk(_source: &backend_brk::BrkSource, _options: &Options) {}

pub use alloc_core::Stats;
pub(crate) use stats_print::print_stats;
