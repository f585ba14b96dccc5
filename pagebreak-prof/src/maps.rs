//! Memory mappings: `/proc/self/maps` lines as the dump's `map` records carry them.

/// One mapping: `start-end perms offset dev inode path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    pub perms: String,
    /// Offset in the file of the byte at `start`.
    pub offset: u64,
    pub inode: u64,
    /// The file, `[vdso]`-style pseudo names, or empty for anonymous memory. A trailing
    /// ` (deleted)` is kept in `path` and reflected in `deleted`.
    pub path: String,
}

impl Mapping {
    /// Parses the text after `map ` (a /proc/self/maps line, verbatim).
    pub fn parse(line: &str) -> Option<Mapping> {
        let line = line.trim_start();
        let mut rest = line;
        let mut field = || {
            let s = rest.trim_start();
            let end = s.find(' ').unwrap_or(s.len());
            let (f, r) = s.split_at(end);
            rest = r;
            f
        };
        let range = field();
        let perms = field().to_string();
        let offset = u64::from_str_radix(field(), 16).ok()?;
        let _dev = field();
        let inode = field().parse().ok()?;
        let path = rest.trim().to_string();
        let (start, end) = range.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        if end <= start || perms.len() != 4 {
            return None;
        }
        Some(Mapping {
            start,
            end,
            perms,
            offset,
            inode,
            path,
        })
    }

    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    /// The offset in the file of the byte mapped at `address` (which must be inside).
    pub fn file_offset(&self, address: u64) -> u64 {
        address - self.start + self.offset
    }

    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }

    /// The file was deleted (or replaced) after it was mapped.
    pub fn deleted(&self) -> bool {
        self.path.ends_with(" (deleted)")
    }

    /// The path of a file on disk, without ` (deleted)`; `None` for anonymous memory and
    /// pseudo mappings such as `[vdso]`.
    pub fn file(&self) -> Option<&str> {
        let p = self.path.strip_suffix(" (deleted)").unwrap_or(&self.path);
        p.starts_with('/').then_some(p)
    }

    /// A short name for reports: the file name, the pseudo name, or `[anon]`.
    pub fn short_name(&self) -> &str {
        match self.file() {
            Some(f) => f.rsplit('/').next().unwrap_or(f),
            None if self.path.is_empty() => "[anon]",
            None => &self.path,
        }
    }
}

/// The mapping holding `address`, if any (mappings do not overlap).
pub fn find(maps: &[Mapping], address: u64) -> Option<&Mapping> {
    maps.iter().find(|m| m.contains(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = Mapping::parse("55d0c0000000-55d0c0021000 r-xp 00001000 fd:01 1234 /usr/bin/prog")
            .unwrap();
        assert_eq!(m.start, 0x55d0c0000000);
        assert_eq!(m.end, 0x55d0c0021000);
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.inode, 1234);
        assert_eq!(m.file(), Some("/usr/bin/prog"));
        assert!(m.is_executable());
        assert_eq!(m.file_offset(0x55d0c0000010), 0x1010);

        let anon = Mapping::parse("7f0000000000-7f0000001000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(anon.file(), None);
        assert_eq!(anon.short_name(), "[anon]");

        let vdso =
            Mapping::parse("7ffd1000-7ffd3000 r-xp 00000000 00:00 0                  [vdso]")
                .unwrap();
        assert_eq!(vdso.path, "[vdso]");
        assert_eq!(vdso.file(), None);

        let spaced =
            Mapping::parse("1000-2000 r-xp 00000000 08:01 77 /opt/my app/lib x.so (deleted)")
                .unwrap();
        assert!(spaced.deleted());
        assert_eq!(spaced.file(), Some("/opt/my app/lib x.so"));
        assert_eq!(spaced.short_name(), "lib x.so");

        assert_eq!(Mapping::parse("2000-1000 r-xp 0 00:00 0"), None);
        assert_eq!(Mapping::parse("zz-1000 r-xp 0 00:00 0"), None);
    }
}
