//! `/proc/self/maps`, read line by line without allocating and with nothing but
//! `open`/`read`/`close`, so a signal handler (a guarded-block fault report) and a heap-profile
//! dump can both use it.

/// Call `line(text, whole)` for each line of `/proc/self/maps` (without its newline), reading
/// through `buf`. A line longer than `buf` is passed cut to `buf`'s length with `whole` false,
/// and the rest of it is skipped. Does nothing if the file cannot be opened.
pub(crate) fn for_each_line(buf: &mut [u8], mut line: impl FnMut(&[u8], bool)) {
    // SAFETY: a NUL-terminated path; open allocates nothing.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut filled = 0;
    let mut skipping = false;
    loop {
        // SAFETY: reads into the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[filled..].as_mut_ptr().cast(), buf.len() - filled) };
        if n <= 0 {
            break;
        }
        filled += n as usize;
        let mut consumed = 0;
        while let Some(nl) = buf[consumed..filled].iter().position(|&b| b == b'\n') {
            if !skipping {
                line(&buf[consumed..consumed + nl], true);
            }
            skipping = false;
            consumed += nl + 1;
        }
        if consumed == 0 && filled == buf.len() {
            // A line longer than the buffer: pass what fits, drop the rest of it.
            if !skipping {
                line(&buf[..filled], false);
            }
            skipping = true;
            filled = 0;
            continue;
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
    // SAFETY: closing the descriptor we opened.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_the_file_and_long_lines_are_cut() {
        let text = std::fs::read("/proc/self/maps").unwrap();
        let mut lines = 0usize;
        let mut buf = [0u8; 4096];
        for_each_line(&mut buf, |line, whole| {
            assert!(whole && !line.contains(&b'\n'));
            lines += 1;
        });
        // The mappings can change between the two reads (a thread, a library): roughly equal.
        let want = text.iter().filter(|&&b| b == b'\n').count();
        assert!(
            lines.abs_diff(want) <= 8,
            "{lines} lines, /proc says {want}"
        );
        let mut tiny = [0u8; 16];
        let mut cut = 0;
        for_each_line(&mut tiny, |line, whole| {
            assert!(line.len() <= 16);
            cut += usize::from(!whole);
        });
        assert!(cut > 0, "every maps line is longer than 16 bytes");
    }
}
