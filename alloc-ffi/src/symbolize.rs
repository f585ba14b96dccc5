//! Return addresses to `module+offset`, for reports that are symbolised offline
//! (`addr2line -e libfoo.so 0x1234`). Read from `/proc/self/maps` with open/read/close, which
//! are async-signal-safe and take no lock: `dladdr` and `dl_iterate_phdr` take the loader's
//! lock, which the faulting thread may hold. Nothing here allocates.

/// Longest module name kept (its file name; longer ones are cut).
pub(crate) const NAME_MAX: usize = 48;

/// Where an address lies: a file's name and the offset from its load base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Module {
    name: [u8; NAME_MAX],
    name_len: usize,
    /// The address minus the load base of the file (its first mapping, at file offset 0).
    pub(crate) offset: usize,
}

impl Module {
    pub(crate) fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// FNV-1a, to recognise the same path on consecutive lines.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn hex(field: &[u8]) -> Option<usize> {
    if field.is_empty() || field.len() > 16 {
        return None;
    }
    field.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc << 4 | d as usize)
    })
}

/// One line of /proc/self/maps: `start-end perms offset dev inode   path`.
struct MapLine<'a> {
    start: usize,
    end: usize,
    offset: usize,
    path: &'a [u8],
}

fn parse_line(line: &[u8]) -> Option<MapLine<'_>> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    let _perms = fields.next()?;
    let offset = hex(fields.next()?)?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next().unwrap_or(&[]);
    let skip = path.iter().take_while(|&&b| b == b' ').count();
    Some(MapLine {
        start,
        end,
        offset,
        path: &path[skip..],
    })
}

/// Tracks the load base of the file whose mappings are being read.
struct Bases {
    path_hash: u64,
    base: usize,
}

impl Bases {
    fn see(&mut self, line: &MapLine) {
        if line.path.first() == Some(&b'/') && line.offset == 0 {
            self.path_hash = hash(line.path);
            self.base = line.start;
        }
    }

    fn module(&self, line: &MapLine, addr: usize) -> Option<Module> {
        if line.path.first() != Some(&b'/') {
            return None;
        }
        let base = if hash(line.path) == self.path_hash {
            self.base
        } else {
            line.start - line.offset
        };
        let file = line.path.rsplit(|&b| b == b'/').next().unwrap_or(line.path);
        let file = file.strip_suffix(b" (deleted)").unwrap_or(file);
        let mut m = Module {
            name: [0; NAME_MAX],
            name_len: file.len().min(NAME_MAX),
            offset: addr - base,
        };
        m.name[..m.name_len].copy_from_slice(&file[..m.name_len]);
        Some(m)
    }
}

/// Fill `out[i]` with the module of `addrs[i]` (None: not in a file mapping, or the maps
/// could not be read). `buf` holds the file's text while it is read (4 KiB is plenty: a
/// line longer than `buf` is skipped).
pub(crate) fn resolve(addrs: &[usize], out: &mut [Option<Module>], buf: &mut [u8]) {
    for o in out.iter_mut() {
        *o = None;
    }
    let mut bases = Bases {
        path_hash: 0,
        base: 0,
    };
    crate::proc_maps::for_each_line(buf, |line, whole| {
        // A line longer than `buf` is skipped: its path is cut.
        let Some(line) = parse_line(line).filter(|_| whole) else {
            return;
        };
        bases.see(&line);
        for (addr, o) in addrs.iter().zip(out.iter_mut()) {
            if o.is_none() && (line.start..line.end).contains(addr) {
                *o = bases.module(&line, *addr);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let l = parse_line(b"7f12a000-7f12b000 r-xp 00001000 08:01 1234   /usr/lib/libfoo.so.1")
            .unwrap();
        assert_eq!((l.start, l.end, l.offset), (0x7f12a000, 0x7f12b000, 0x1000));
        assert_eq!(l.path, b"/usr/lib/libfoo.so.1");
        let anon = parse_line(b"7f12a000-7f12b000 rw-p 00000000 00:00 0 ").unwrap();
        assert!(anon.path.is_empty());
        assert!(parse_line(b"garbage").is_none());
    }

    #[inline(never)]
    fn probe() -> usize {
        probe as *const () as usize
    }

    #[test]
    fn resolves_code_of_this_binary() {
        let addr = probe() + 1;
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        // SAFETY: dladdr on an address of ours (a test may take the loader lock).
        assert_ne!(unsafe { libc::dladdr(addr as *const _, &mut info) }, 0);
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        let mut out = [None; 3];
        let mut buf = [0u8; 256]; // small: lines straddle reads
        resolve(&[addr, 8, &out as *const _ as usize], &mut out, &mut buf);
        let m = out[0].expect("probe not found");
        assert_eq!(m.name(), &name[..name.len().min(NAME_MAX)]);
        assert_eq!(m.offset, addr - info.dli_fbase as usize);
        assert_eq!(out[1], None, "address 8 is in no mapping");
        assert_eq!(out[2], None, "the stack is no file");
    }
}
