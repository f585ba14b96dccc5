//! Misuse reports: one line on stderr through `write(2)`, then `abort()`. Nothing here
//! allocates: the line is formatted into a stack buffer.

use core::fmt::{self, Write};

use alloc_core::Misuse;

/// A fixed buffer that `core::fmt` writes into; output past its end is dropped.
pub(crate) struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    pub(crate) const fn new() -> Self {
        LineBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Write the buffer to file descriptor 2, retrying short writes.
    pub(crate) fn write_stderr(&self) {
        let mut rest = self.as_bytes();
        while !rest.is_empty() {
            // SAFETY: `rest` is a valid byte slice for the duration of the call.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                return;
            }
            rest = &rest[n as usize..];
        }
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// The misuse handler installed in the core: `pagebreak: free(): double free of 0x...`
/// (followed by the block's stacks when it is a guarded block).
pub(crate) fn abort_on_misuse(misuse: &Misuse) -> ! {
    crate::guarded::report_misuse(misuse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc_core::{Call, MisuseKind};

    #[test]
    fn report_line_format() {
        let mut line = LineBuf::new();
        let m = Misuse {
            call: Call::Free,
            kind: MisuseKind::DoubleFree,
            ptr: 0x7f00_1234_5670,
        };
        write!(line, "pagebreak: {m}").unwrap();
        assert_eq!(
            line.as_bytes(),
            b"pagebreak: free(): double free of 0x7f0012345670"
        );
    }

    #[test]
    fn long_output_is_truncated_not_overflowed() {
        let mut line = LineBuf::new();
        for _ in 0..100 {
            write!(line, "0123456789").unwrap();
        }
        assert_eq!(line.as_bytes().len(), 256);
    }
}
