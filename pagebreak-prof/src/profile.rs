//! A dump symbolised and weighted: per stack, its frames (the allocator's own trimmed from
//! the leaf) and the four values of a heap profile, unbiased for sampling.

use crate::dump::Dump;
use crate::maps::Mapping;
use crate::symbolize::{Frame, Options, Resolved, Symbolizer};
use std::collections::HashMap;

/// Which values a flame graph or a top list shows (jeprof's options of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum View {
    /// The live heap: sampled blocks not yet freed (the default).
    #[default]
    InuseSpace,
    /// Everything allocated since start, freed or not.
    AllocSpace,
}

impl View {
    pub fn name(self) -> &'static str {
        match self {
            View::InuseSpace => "inuse_space",
            View::AllocSpace => "alloc_space",
        }
    }
}

/// Estimated counts and bytes of one stack (or of a whole profile).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Values {
    pub alloc_objects: f64,
    pub alloc_space: f64,
    pub inuse_objects: f64,
    pub inuse_space: f64,
}

impl Values {
    pub fn space(&self, view: View) -> f64 {
        match view {
            View::InuseSpace => self.inuse_space,
            View::AllocSpace => self.alloc_space,
        }
    }
}

/// One interned stack of the dump, resolved.
#[derive(Clone, Debug)]
pub struct Stack {
    pub id: u64,
    /// The return addresses kept, innermost first (the allocator's own frames trimmed).
    pub addresses: Vec<u64>,
    /// Inlined frames of the first address that are the allocator's (RawVec's growth
    /// inlined into a caller, say): hidden like the addresses trimmed before it.
    pub leaf_inlined_skip: usize,
    pub values: Values,
}

/// The whole profile.
pub struct Profile {
    pub interval: u64,
    pub pid: Option<u64>,
    pub time: Option<u64>,
    pub exe: Option<String>,
    pub maps: Vec<Mapping>,
    pub build_ids: HashMap<String, String>,
    pub stacks: Vec<Stack>,
    /// Every kept address, resolved.
    pub resolved: HashMap<u64, Resolved>,
    pub warnings: Vec<String>,
    /// The frame shown for a stack the dump has no addresses for.
    unknown: Frame,
}

/// The name given to samples whose stack is unknown.
pub const UNKNOWN_STACK: &str = "[unknown stack]";

/// The probability a block of `size` bytes was sampled is `1 - exp(-size / interval)`; each
/// sampled block stands for `1 / that` blocks (so `size / that` bytes). Sizes below one byte
/// count as one; an interval of 0 means every block was recorded.
pub fn sample_weight(size: u64, interval: u64) -> f64 {
    if interval == 0 {
        return 1.0;
    }
    let size = size.max(1) as f64;
    1.0 / -f64::exp_m1(-size / interval as f64)
}

impl Profile {
    /// Symbolises `dump` against the files on this machine and weights its samples.
    pub fn build(dump: &Dump, options: Options) -> Profile {
        let mut symbolizer = Symbolizer::new(&dump.maps, &dump.build_ids, options);
        let mut live: HashMap<u64, (f64, f64)> = HashMap::new();
        for block in &dump.live {
            let w = sample_weight(block.size, dump.interval);
            let e = live.entry(block.stack).or_default();
            e.0 += w;
            e.1 += w * block.size as f64;
        }
        let mut resolved = HashMap::new();
        let mut stacks = Vec::with_capacity(dump.stacks.len());
        for (id, addresses) in &dump.stacks {
            let mut values = Values::default();
            if let Some(t) = dump.totals.get(id) {
                // The writer sums size / p(size) per block; the count gets the same scale
                // (exact when a stack's blocks share a size, as Go's heap profiles assume).
                let scale = if t.requested_bytes > 0 {
                    t.estimated_bytes as f64 / t.requested_bytes as f64
                } else {
                    sample_weight(0, dump.interval)
                };
                values.alloc_objects = t.count as f64 * scale;
                values.alloc_space = t.estimated_bytes as f64;
            }
            if let Some(&(objects, bytes)) = live.get(id) {
                values.inuse_objects = objects;
                values.inuse_space = bytes;
            }
            let frames: Vec<Resolved> = addresses.iter().map(|&a| symbolizer.resolve(a)).collect();
            let keep_from = leaf_trim(&frames, &dump.maps);
            let kept = addresses[keep_from..].to_vec();
            let leaf_inlined_skip = frames.get(keep_from).map_or(0, |r| {
                let n = if r.symbolized {
                    r.frames
                        .iter()
                        .take_while(|f| is_allocator(&f.function))
                        .count()
                } else {
                    0
                };
                n.min(r.frames.len().saturating_sub(1))
            });
            for (a, r) in kept.iter().zip(&frames[keep_from..]) {
                resolved.entry(*a).or_insert_with(|| r.clone());
            }
            stacks.push(Stack {
                id: *id,
                addresses: kept,
                leaf_inlined_skip,
                values,
            });
        }
        let mut warnings = symbolizer.warnings().to_vec();
        if !dump.unknown_stacks.is_empty() {
            warnings.push(format!(
                "{} stack id(s) named without a `stack` line (the writer's table was full, or \
                 stacks were added while it wrote): their samples are shown as {UNKNOWN_STACK}",
                dump.unknown_stacks.len()
            ));
        }
        // Build ids under the paths the maps use (the writer may have named files otherwise).
        let mut build_ids = dump.build_ids.clone();
        for m in &dump.maps {
            if let Some(file) = m.file() {
                if let Some(id) = symbolizer.expected_build_id(file) {
                    build_ids.insert(file.to_string(), id.clone());
                }
            }
        }
        Profile {
            interval: dump.interval,
            pid: dump.pid,
            time: dump.time,
            exe: dump.exe.clone(),
            maps: dump.maps.clone(),
            build_ids,
            stacks,
            resolved,
            warnings,
            unknown: Frame {
                function: UNKNOWN_STACK.into(),
                file: None,
                line: None,
            },
        }
    }

    /// The frames of a stack, innermost first (inlined calls expanded); a stack without
    /// addresses has the one frame `[unknown stack]`.
    pub fn frames<'p>(&'p self, stack: &'p Stack) -> impl Iterator<Item = &'p Frame> + 'p {
        let unknown = stack.addresses.is_empty().then_some(&self.unknown);
        unknown.into_iter().chain(
            stack
                .addresses
                .iter()
                .flat_map(move |a| self.resolved[a].frames.iter())
                .skip(stack.leaf_inlined_skip),
        )
    }

    pub fn total(&self) -> Values {
        let mut t = Values::default();
        for s in &self.stacks {
            t.alloc_objects += s.values.alloc_objects;
            t.alloc_space += s.values.alloc_space;
            t.inuse_objects += s.values.inuse_objects;
            t.inuse_space += s.values.inuse_space;
        }
        t
    }
}

/// How many leading (innermost) addresses belong to the allocator itself: pagebreak's
/// library, its malloc family, its sampling code, Rust's allocation shims. One address is
/// always kept, so a stack never becomes empty.
fn leaf_trim(frames: &[Resolved], maps: &[Mapping]) -> usize {
    let n = frames
        .iter()
        .take_while(|r| {
            let in_library = r
                .mapping
                .and_then(|i| maps.get(i))
                .is_some_and(|m| m.short_name().starts_with("libpagebreak"));
            in_library || (r.symbolized && r.frames.iter().all(|f| is_allocator(&f.function)))
        })
        .count();
    n.min(frames.len().saturating_sub(1))
}

/// A function of the allocator or of an allocation shim in front of it.
pub fn is_allocator(function: &str) -> bool {
    const EXACT: &[&str] = &[
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "free",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "__libc_malloc",
        "__libc_calloc",
        "__libc_realloc",
        "__libc_memalign",
        "__libc_valloc",
        "__libc_pvalloc",
        "__posix_memalign",
    ];
    const PREFIXES: &[&str] = &[
        // pagebreak's crates and its C extensions (the sampler lives there too).
        "alloc_core::",
        "alloc_ffi::",
        "pagebreak::",
        "<alloc_core::",
        "<alloc_ffi::",
        "<pagebreak::",
        "pagebreak_",
        // Rust's global-allocator shims and `alloc::alloc::{alloc, exchange_malloc, ...}`.
        "__rust_alloc",
        "__rust_realloc",
        "__rust_no_alloc_shim",
        "__rg_",
        "__rdl_",
        "alloc::alloc::",
        "<alloc::alloc::Global as core::alloc::",
        // RawVec: the growth and allocation layer under Vec, String, VecDeque, ... (as Go
        // trims runtime.growslice); the containers themselves stay.
        "alloc::raw_vec::",
        "<alloc::raw_vec::",
        // C++'s operator new, as jeprof and pprof drop it.
        "operator new",
    ];
    EXACT.contains(&function) || PREFIXES.iter().any(|p| function.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_unbias_sampling() {
        // A block as large as the interval is sampled with probability 1 - 1/e.
        let w = sample_weight(524_288, 524_288);
        assert!((w - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        // Huge blocks are always sampled; tiny ones stand for interval / size blocks.
        assert!((sample_weight(1 << 40, 524_288) - 1.0).abs() < 1e-9);
        assert!((sample_weight(16, 524_288) * 16.0 - 524_288.0).abs() < 16.0);
        assert_eq!(sample_weight(100, 0), 1.0);
    }

    #[test]
    fn allocator_frames() {
        for f in [
            "malloc",
            "__rust_alloc",
            "alloc_ffi::profile::sample",
            "<pagebreak::PageBreak as core::alloc::global::GlobalAlloc>::alloc",
            "alloc::alloc::exchange_malloc",
            "operator new(unsigned long)",
        ] {
            assert!(is_allocator(f), "{f}");
        }
        // RawVec is trimmed, the containers over it are not.
        assert!(is_allocator(
            "<alloc::raw_vec::RawVecInner>::try_allocate_in"
        ));
        assert!(is_allocator("alloc::raw_vec::finish_grow"));
        for f in [
            "main",
            "mallocate",
            "alloc::vec::Vec<T>::with_capacity",
            "my_malloc_wrapper",
        ] {
            assert!(!is_allocator(f), "{f}");
        }
    }
}
