//! Heap pictures: a text snapshot of every segment, one line each, written without allocating
//! (`cargo xtask heapmap` renders it as SVG). Requested at exit (`PAGEBREAK_HEAPMAP=path`), by
//! `SIGUSR2` (the handler only raises a flag; the next allocator slow path writes the file,
//! so no lock is taken inside a signal handler), or by `pagebreak_heapmap_write`.
//!
//! Format: a first line `pagebreak-heapmap 1 backend=B reserved=N allocated=N huge=N`, then
//! per segment `segment ADDR SLOT_BYTES SLOTS ABANDONED` followed by one token per slot:
//! `H` header, `R` free (resident), `P` free (purged), `B:size:used:reserved:slots` a page,
//! `C` a further slot of the page before.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use alloc_core::view::{SegmentView, SlotState};
use alloc_core::{Allocator, PageSource};

/// A stack buffer flushed to a file descriptor when full (no allocation).
pub(crate) struct FdWriter {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
    pub(crate) failed: bool,
}

impl FdWriter {
    pub(crate) const fn new(fd: i32) -> FdWriter {
        FdWriter {
            fd,
            buf: [0; 4096],
            len: 0,
            failed: false,
        }
    }

    /// Create (or truncate) the file at `path` for writing; `None` if it cannot be opened.
    ///
    /// # Safety
    ///
    /// `path` is a NUL-terminated string.
    pub(crate) unsafe fn create(path: *const libc::c_char) -> Option<FdWriter> {
        // SAFETY: `path` is NUL-terminated (caller's contract); open allocates nothing.
        let fd = unsafe {
            libc::open(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        (fd >= 0).then(|| FdWriter::new(fd))
    }

    /// Flush and close a file made by [`create`](Self::create): 0 if every byte was written,
    /// -1 otherwise (the C API's convention).
    pub(crate) fn finish(mut self) -> i32 {
        self.flush();
        // SAFETY: closing the descriptor `create` opened; `self` is consumed.
        unsafe { libc::close(self.fd) };
        if self.failed {
            -1
        } else {
            0
        }
    }

    /// Write raw bytes.
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
    }

    pub(crate) fn flush(&mut self) {
        let mut rest = &self.buf[..self.len];
        while !rest.is_empty() && !self.failed {
            // SAFETY: `rest` is a valid byte slice for the call.
            let n = unsafe { libc::write(self.fd, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                self.failed = true;
            } else {
                rest = &rest[n as usize..];
            }
        }
        self.len = 0;
    }
}

impl Write for FdWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

fn write_segment(out: &mut FdWriter, view: &SegmentView) {
    let _ = write!(
        out,
        "segment {:#x} {} {} {}",
        view.addr, view.slot_bytes, view.slot_count, view.abandoned as u8
    );
    for slot in &view.slots[..view.slot_count] {
        let _ = match *slot {
            SlotState::Header => out.write_str(" H"),
            SlotState::FreeResident => out.write_str(" R"),
            SlotState::FreePurged => out.write_str(" P"),
            SlotState::Continued => out.write_str(" C"),
            SlotState::Page {
                block_size,
                used,
                reserved,
                slots,
            } => {
                write!(out, " B:{block_size}:{used}:{reserved}:{slots}")
            }
        };
    }
    let _ = out.write_str("\n");
}

/// Write the snapshot of `alloc` to the NUL-terminated `path`. Returns 0, or -1 (errno set).
pub(crate) fn write_to<S: PageSource>(
    alloc: &Allocator<S>,
    backend: &str,
    path: *const libc::c_char,
) -> i32 {
    // SAFETY: `path` is a NUL-terminated string (caller's contract).
    let Some(mut out) = (unsafe { FdWriter::create(path) }) else {
        return -1;
    };
    let stats = alloc.stats();
    let _ = writeln!(
        out,
        "pagebreak-heapmap 1 backend={backend} reserved={} allocated={} huge={}",
        stats.reserved, stats.allocated, stats.huge_count
    );
    alloc.visit_segments(&mut |view| write_segment(&mut out, view));
    out.finish()
}

/// Set by the SIGUSR2 handler; the next slow path writes the snapshot.
pub(crate) static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr2(_signal: libc::c_int) {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Install the SIGUSR2 handler (only when `PAGEBREAK_HEAPMAP` is set).
pub(crate) fn install_signal_handler() {
    // SAFETY: a zeroed sigaction with a plain handler is valid; the handler only stores to an
    // atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_sigusr2 as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGUSR2, &action, core::ptr::null_mut());
    }
}
