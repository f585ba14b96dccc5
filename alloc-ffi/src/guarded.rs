//! Guarded sampling in the library (`PAGEBREAK_GUARDED=N`): turning the core's pool on, the
//! stack walker it records with, and the reports that name a guarded block's stacks (a fault
//! in the pool, or a double or invalid free of a guarded block).
//!
//! A report is one block of text written with one `write(2)` from a static buffer (a fault
//! handler may run on a small alternate stack), formatted without allocating, then `abort()`.
//! Stacks are raw return addresses and `module+offset` (see [`symbolize`](crate::symbolize)),
//! innermost first, with the allocator's own frames left out when it is a shared library.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use alloc_core::{FaultKind, GuardedBlock, GuardedFault, Misuse};

use crate::symbolize::{self, Module};

/// The instances' lookups: each answers for its own pool.
type FaultFn = fn(usize) -> Option<GuardedFault>;
type BlockFn = fn(usize) -> Option<GuardedBlock>;
const INSTANCES: &[(FaultFn, BlockFn)] = &[
    #[cfg(feature = "mmap")]
    (crate::mmap::guarded_fault, crate::mmap::guarded_block),
    #[cfg(feature = "brk")]
    (crate::brk::guarded_fault, crate::brk::guarded_block),
];

/// The fault at `addr` if it lies in a guarded pool.
pub(crate) fn fault_at(addr: usize) -> Option<GuardedFault> {
    INSTANCES.iter().find_map(|(fault, _)| fault(addr))
}

fn block_at(addr: usize) -> Option<GuardedBlock> {
    INSTANCES.iter().find_map(|(_, block)| block(addr))
}

/// Turn guarded sampling on for `alloc` as `options` say: the pool, the stack walker, the
/// fault handler. Returns whether the pool is on (a warning is printed otherwise).
pub(crate) fn enable<S: alloc_core::PageSource>(
    alloc: &alloc_core::Allocator<S>,
    options: &crate::Options,
) -> bool {
    alloc_core::guarded::set_stack_capture(crate::stack::capture);
    alloc_core::guarded::set_thread_id(thread_id);
    if !alloc.enable_guarded(options.guarded_config()) {
        let mut line = crate::report::LineBuf::new();
        let _ = writeln!(
            line,
            "pagebreak: warning: PAGEBREAK_GUARDED: no memory for the guarded pool; off"
        );
        line.write_stderr();
        return false;
    }
    crate::fault::install();
    true
}

// ------------------------------------------------------------------ the report buffer

const REPORT_BYTES: usize = 8192;

struct Report {
    buf: [u8; REPORT_BYTES],
    len: usize,
    maps: [u8; 4096],
}

impl Write for Report {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let take = s.len().min(REPORT_BYTES - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

static mut REPORT: Report = Report {
    buf: [0; REPORT_BYTES],
    len: 0,
    maps: [0; 4096],
};
static REPORTING: AtomicBool = AtomicBool::new(false);

/// The report buffer, for the one thread that reports; any other thread that gets here
/// waits for the abort (two reports at once would interleave).
fn take_report() -> &'static mut Report {
    while REPORTING.swap(true, Ordering::Acquire) {
        // SAFETY: plain system call; the reporting thread is about to abort the process.
        unsafe { libc::sched_yield() };
    }
    // SAFETY: REPORTING makes this the only reference, and the process ends after use.
    unsafe {
        let r = &mut *core::ptr::addr_of_mut!(REPORT);
        r.len = 0;
        r
    }
}

fn write_out(r: &Report) {
    let mut rest = &r.buf[..r.len];
    while !rest.is_empty() {
        // SAFETY: a valid byte slice.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

// ------------------------------------------------------------------ stacks

/// Frames of our own module to leave out: the allocator's when it is a shared library (a
/// static build shares the program's module, and then nothing is left out).
fn own_module(r: &mut Report) -> Option<Module> {
    let mut m = [None];
    symbolize::resolve(&[own_module as *const () as usize], &mut m, &mut r.maps);
    let own = m[0]?;
    let mut exe = [0u8; 256];
    // SAFETY: readlink writes at most `exe.len()` bytes.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr().cast(),
            exe.len(),
        )
    };
    let exe = &exe[..n.max(0) as usize];
    let exe_name = exe.rsplit(|&b| b == b'/').next().unwrap_or(exe);
    let exe_name = &exe_name[..exe_name.len().min(symbolize::NAME_MAX)];
    (own.name().as_bytes() != exe_name).then_some(own)
}

fn write_stack(r: &mut Report, title: fmt::Arguments, frames: &[usize], own: Option<&Module>) {
    let mut modules = [None; alloc_core::guarded::STACK_FRAMES];
    let frames = &frames[..frames.len().min(modules.len())];
    symbolize::resolve(frames, &mut modules[..frames.len()], &mut r.maps);
    let skip = match own {
        Some(own) => modules[..frames.len()]
            .iter()
            .take_while(|m| m.is_some_and(|m| m.name() == own.name()))
            .count()
            .min(frames.len().saturating_sub(1)),
        None => 0,
    };
    let _ = writeln!(r, "pagebreak: {title}:");
    if frames.is_empty() {
        let _ = writeln!(r, "pagebreak:   (no stack)");
    }
    for (i, (ip, m)) in frames.iter().zip(&modules).skip(skip).enumerate() {
        let _ = match m {
            Some(m) => writeln!(
                r,
                "pagebreak:   #{i} {ip:#018x} {}+{:#x}",
                m.name(),
                m.offset
            ),
            None => writeln!(r, "pagebreak:   #{i} {ip:#018x}"),
        };
    }
}

/// The calling thread's kernel id (what `ps -L`, gdb and `/proc/PID/task` show).
fn thread_id() -> usize {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as usize }
}

fn write_stacks(r: &mut Report, block: &GuardedBlock) {
    let own = own_module(r);
    let stack = |r: &mut Report, verb: &str, thread: usize, frames: &[usize]| match thread {
        0 => write_stack(r, format_args!("{verb} at"), frames, own.as_ref()),
        t => write_stack(
            r,
            format_args!("{verb} by thread {t} at"),
            frames,
            own.as_ref(),
        ),
    };
    stack(
        r,
        "allocated",
        block.alloc_thread,
        block.alloc_stack.frames(),
    );
    if !block.live {
        stack(r, "freed", block.free_thread, block.free_stack.frames());
    }
}

// ------------------------------------------------------------------ reports

/// How the faulting instruction used the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
    Unknown,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Unknown => "access",
        }
    }
}

fn bytes(n: usize) -> &'static str {
    if n == 1 {
        "byte"
    } else {
        "bytes"
    }
}

/// The first line of a fault report, e.g. `pagebreak: heap-buffer-overflow write at 0x...:
/// 0 bytes after the 24-byte block at 0x...`.
fn write_fault_line(w: &mut impl Write, fault: &GuardedFault, access: Access) -> fmt::Result {
    let rw = access.name();
    let addr = fault.addr;
    let Some(b) = fault.block else {
        return writeln!(w, "pagebreak: wild {rw} at {addr:#x} in the guarded pool");
    };
    let freed = if b.live { "" } else { "freed " };
    let size = b.requested;
    match fault.kind {
        FaultKind::UseAfterFree => {
            let off = addr - b.addr;
            writeln!(
                w,
                "pagebreak: use-after-free {rw} at {addr:#x}: {off} {} into the freed \
                 {size}-byte block at {:#x}",
                bytes(off),
                b.addr
            )
        }
        FaultKind::Overflow => {
            let past = addr - (b.addr + size);
            writeln!(
                w,
                "pagebreak: heap-buffer-overflow {rw} at {addr:#x}: {past} {} after the \
                 {freed}{size}-byte block at {:#x}",
                bytes(past),
                b.addr
            )
        }
        FaultKind::Underflow => {
            let before = b.addr - addr;
            writeln!(
                w,
                "pagebreak: heap-buffer-underflow {rw} at {addr:#x}: {before} {} before the \
                 {freed}{size}-byte block at {:#x}",
                bytes(before),
                b.addr
            )
        }
        FaultKind::Wild => writeln!(
            w,
            "pagebreak: {rw} at {addr:#x} faulted in the live {size}-byte block at {:#x}",
            b.addr
        ),
    }
}

/// Report a fault in a guarded pool and abort. `pc` is the faulting instruction (0: unknown).
pub(crate) fn report_fault(fault: &GuardedFault, access: Access, pc: usize) -> ! {
    let r = take_report();
    let _ = write_fault_line(r, fault, access);
    if pc != 0 {
        let own = own_module(r);
        write_stack(r, format_args!("faulting instruction"), &[pc], own.as_ref());
    }
    if let Some(block) = &fault.block {
        write_stacks(r, block);
    }
    write_out(r);
    // SAFETY: abort is async-signal-safe and does not return.
    unsafe { libc::abort() }
}

/// A misuse report (`pagebreak: free(): double free of 0x...`), with the block's stacks
/// when the pointer is in a guarded pool; then abort.
pub(crate) fn report_misuse(misuse: &Misuse) -> ! {
    let r = take_report();
    let _ = writeln!(r, "pagebreak: {misuse}");
    if let Some(block) = block_at(misuse.ptr) {
        write_stacks(r, &block);
    }
    write_out(r);
    #[cfg(feature = "tracing")]
    crate::trace::misuse(
        core::str::from_utf8(&r.buf[..r.len])
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or(""),
    );
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc_core::guarded::Stack;

    struct S(String);
    impl Write for S {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.push_str(s);
            Ok(())
        }
    }

    fn line(kind: FaultKind, addr: usize, live: bool, access: Access) -> String {
        let block = GuardedBlock {
            addr: 0x1000,
            requested: 24,
            usable: 32,
            live,
            alloc_stack: Stack::EMPTY,
            free_stack: Stack::EMPTY,
            alloc_thread: 0,
            free_thread: 0,
        };
        let mut s = S(String::new());
        write_fault_line(
            &mut s,
            &GuardedFault {
                kind,
                addr,
                block: Some(block),
            },
            access,
        )
        .unwrap();
        s.0
    }

    #[test]
    fn fault_lines() {
        assert_eq!(
            line(FaultKind::UseAfterFree, 0x1010, false, Access::Write),
            "pagebreak: use-after-free write at 0x1010: 16 bytes into the freed 24-byte block \
             at 0x1000\n"
        );
        assert_eq!(
            line(FaultKind::Overflow, 0x1020, true, Access::Read),
            "pagebreak: heap-buffer-overflow read at 0x1020: 8 bytes after the 24-byte block \
             at 0x1000\n"
        );
        assert_eq!(
            line(FaultKind::Underflow, 0xfff, true, Access::Unknown),
            "pagebreak: heap-buffer-underflow access at 0xfff: 1 byte before the 24-byte \
             block at 0x1000\n"
        );
        let mut s = S(String::new());
        let wild = GuardedFault {
            kind: FaultKind::Wild,
            addr: 0x5000,
            block: None,
        };
        write_fault_line(&mut s, &wild, Access::Read).unwrap();
        assert_eq!(s.0, "pagebreak: wild read at 0x5000 in the guarded pool\n");
    }
}
