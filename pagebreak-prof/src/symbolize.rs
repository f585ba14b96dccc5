//! Offline symbolisation: a return address -> its mapping -> the file offset -> the ELF's
//! virtual address (through its PT_LOAD segments, which also undoes a PIE's or a shared
//! library's load bias) -> function, file and line (DWARF, inlined frames included), or the
//! symbol table's name, or `module+0xoffset`. Each file is opened once.

use crate::maps::{self, Mapping};
use object::{Object, ObjectSegment};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One function frame of a resolved address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Demangled function name, or `module+0xoffset` when nothing names it.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// An address resolved: its frames innermost first (several when functions were inlined
/// into the one that holds the address; never none) and the index of its mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub mapping: Option<usize>,
    pub frames: Vec<Frame>,
    /// True when the frames came from debug info or a symbol table, not a fallback.
    pub symbolized: bool,
}

/// A file's PT_LOAD segment: where its bytes are in the file and in the ELF's address space.
#[derive(Clone, Copy, Debug)]
struct Segment {
    file_offset: u64,
    file_size: u64,
    address: u64,
}

struct Module {
    segments: Vec<Segment>,
    /// None when the file has neither debug info nor a symbol table we could read.
    loader: Option<addr2line::Loader>,
}

/// Where the files named by the mappings are looked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Prefix every mapped path with this directory (a copy of the machine's files).
    pub sysroot: Option<PathBuf>,
    /// Directories searched for separate debug files (`.build-id/xx/yyyy.debug`);
    /// `/usr/lib/debug` when empty.
    pub debug_dirs: Vec<PathBuf>,
}

/// Resolves addresses of one dump against the files on this machine, caching each file.
pub struct Symbolizer<'a> {
    maps: &'a [Mapping],
    build_ids: &'a HashMap<String, String>,
    options: Options,
    /// Path as mapped -> the module, or None when it cannot be used.
    modules: HashMap<String, Option<Module>>,
    resolved: HashMap<u64, Resolved>,
    warnings: Vec<String>,
}

impl<'a> Symbolizer<'a> {
    pub fn new(
        maps: &'a [Mapping],
        build_ids: &'a HashMap<String, String>,
        options: Options,
    ) -> Symbolizer<'a> {
        Symbolizer {
            maps,
            build_ids,
            options,
            modules: HashMap::new(),
            resolved: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    /// What went wrong on the way (a file missing, a build id that does not match), one
    /// line each, once per file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Resolves a return address (as stack walks record them: the instruction after the
    /// call, so the call itself is looked up at `address - 1`).
    pub fn resolve(&mut self, address: u64) -> Resolved {
        if let Some(r) = self.resolved.get(&address) {
            return r.clone();
        }
        let r = self.resolve_uncached(address);
        self.resolved.insert(address, r.clone());
        r
    }

    fn resolve_uncached(&mut self, address: u64) -> Resolved {
        let Some(mapping) = maps::find(self.maps, address) else {
            return fallback(None, format!("{address:#x}"));
        };
        let index = self
            .maps
            .iter()
            .position(|m| std::ptr::eq(m, mapping))
            .expect("found in maps");
        let label = format!(
            "{}+{:#x}",
            mapping.short_name(),
            mapping.file_offset(address)
        );
        let Some(path) = mapping.file() else {
            return fallback(Some(index), label);
        };
        let probe_offset = mapping.file_offset(address.saturating_sub(1).max(mapping.start));
        let path = path.to_string();
        if !self.modules.contains_key(&path) {
            let module = self.load(&path);
            self.modules.insert(path.clone(), module);
        }
        let Some(module) = self.modules[&path].as_ref() else {
            return fallback(Some(index), label);
        };
        let Some(svma) = module.virtual_address(probe_offset) else {
            return fallback(Some(index), label);
        };
        let Some(loader) = &module.loader else {
            return fallback(Some(index), label);
        };
        match frames_at(loader, svma) {
            Some(frames) => Resolved {
                mapping: Some(index),
                frames,
                symbolized: true,
            },
            None => fallback(Some(index), label),
        }
    }

    fn on_disk(&self, path: &str) -> PathBuf {
        match &self.options.sysroot {
            Some(root) => root.join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    /// Opens a mapped file: its segments, its build id checked against the dump's, and its
    /// debug info (from a separate debug file found by build id when there is one).
    fn load(&mut self, path: &str) -> Option<Module> {
        let disk = self.on_disk(path);
        let (segments, file_build_id) = match read_elf(&disk) {
            Ok(x) => x,
            Err(e) => {
                self.warnings.push(format!(
                    "{}: {e}; its frames are shown as module+offset",
                    disk.display()
                ));
                return None;
            }
        };
        if let Some(expected) = self.expected_build_id(path) {
            let found = file_build_id.as_deref().unwrap_or("none");
            if found != expected {
                self.warnings.push(format!(
                    "{}: build id {found} differs from the dump's {expected} (the file changed \
                     since the run); its frames are shown as module+offset",
                    disk.display()
                ));
                return None;
            }
        }
        let debug_file = file_build_id
            .as_deref()
            .and_then(|id| self.separate_debug_file(id));
        let loader = match addr2line::Loader::new(debug_file.as_deref().unwrap_or(&disk)) {
            Ok(l) => Some(l),
            Err(e) => {
                self.warnings.push(format!(
                    "{}: cannot read its debug info or symbols ({e})",
                    disk.display()
                ));
                None
            }
        };
        Some(Module { segments, loader })
    }

    /// The dump's build id for `path`. The writer may name a file by another path than the
    /// maps do (`/lib/...` for `/usr/lib/...` through a symlink): then both are compared as
    /// they resolve on this machine.
    pub fn expected_build_id(&self, path: &str) -> Option<&'a String> {
        let ids: &'a HashMap<String, String> = self.build_ids;
        if let Some(id) = ids.get(path) {
            return Some(id);
        }
        let real = std::fs::canonicalize(self.on_disk(path)).ok()?;
        ids.iter()
            .find(|(p, _)| std::fs::canonicalize(self.on_disk(p)).ok().as_ref() == Some(&real))
            .map(|(_, id)| id)
    }

    /// `DIR/.build-id/xx/yyyy….debug`, the layout distributions' debug packages use.
    fn separate_debug_file(&self, build_id: &str) -> Option<PathBuf> {
        if build_id.len() < 3 {
            return None;
        }
        let default = [PathBuf::from("/usr/lib/debug")];
        let dirs: &[PathBuf] = if self.options.debug_dirs.is_empty() {
            &default
        } else {
            &self.options.debug_dirs
        };
        dirs.iter()
            .map(|d| {
                d.join(".build-id")
                    .join(&build_id[..2])
                    .join(format!("{}.debug", &build_id[2..]))
            })
            .find(|p| p.is_file())
    }
}

impl Module {
    /// The ELF virtual address of the byte at `offset` in the file.
    fn virtual_address(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.file_offset <= offset && offset < s.file_offset + s.file_size)
            .map(|s| s.address + (offset - s.file_offset))
    }
}

fn fallback(mapping: Option<usize>, label: String) -> Resolved {
    Resolved {
        mapping,
        frames: vec![Frame {
            function: label,
            file: None,
            line: None,
        }],
        symbolized: false,
    }
}

/// The PT_LOAD segments and the GNU build id (lowercase hex) of an ELF file.
fn read_elf(path: &Path) -> Result<(Vec<Segment>, Option<String>), String> {
    let file = File::open(path).map_err(|e| format!("cannot open ({e})"))?;
    // SAFETY: the map is read-only and dropped before this function returns; a file
    // truncated meanwhile by someone else could fault, the usual caveat of reading
    // binaries through mmap (addr2line's loader does the same).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map ({e})"))?;
    let obj = object::File::parse(&*map).map_err(|e| format!("not an object file ({e})"))?;
    let segments = obj
        .segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            Segment {
                file_offset,
                file_size,
                address: s.address(),
            }
        })
        .filter(|s| s.file_size > 0)
        .collect();
    let build_id = obj
        .build_id()
        .ok()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
    Ok((segments, build_id))
}

/// Function frames at `svma`, innermost first: from DWARF when it covers the address
/// (with the inlined calls), else the symbol table's name.
fn frames_at(loader: &addr2line::Loader, svma: u64) -> Option<Vec<Frame>> {
    let mut frames = Vec::new();
    if let Ok(mut iter) = loader.find_frames(svma) {
        while let Ok(Some(f)) = iter.next() {
            let Some(function) = f.function.as_ref().and_then(|n| n.demangle().ok()) else {
                continue;
            };
            frames.push(Frame {
                function: function.into_owned(),
                file: f.location.as_ref().and_then(|l| l.file).map(str::to_string),
                line: f.location.as_ref().and_then(|l| l.line),
            });
        }
    }
    if frames.is_empty() {
        let name = loader.find_symbol(svma)?;
        let name = addr2line::demangle_auto(name.into(), None).into_owned();
        let location = loader.find_location(svma).ok().flatten();
        frames.push(Frame {
            function: name,
            file: location.as_ref().and_then(|l| l.file).map(str::to_string),
            line: location.as_ref().and_then(|l| l.line),
        });
    }
    Some(frames)
}
