//! Heap profiles: which call stacks hold the memory, from sampled allocations (see
//! `alloc_core::sampling`), written as the raw dump of `pagebreak-prof/FORMAT.md`.
//!
//! * `PAGEBREAK_PROFILE=1` (or `on`) samples about one allocation per 512 KiB; a number
//!   above 1 is the mean interval in bytes; `0`/`off`, or unset: off.
//! * A dump is written at exit, on `PAGEBREAK_PROFILE_SIGNAL` (default SIGUSR1; 0: none), on
//!   the first failed allocation of each second, and on request
//!   ([`dump`], C `pagebreak_profile_dump`). Path: `PAGEBREAK_PROFILE_PATH`, default
//!   `pagebreak-<pid>.prof` in the working directory.
//!
//! Nothing here allocates or takes a lock. Live samples are records in a mapped array: a
//! sample takes one from a lock-free free list, and each record has a sequence number, so a
//! dump (possibly from a signal handler, while other threads allocate) reads every record
//! without waiting and skips one that changes under it. The dump itself uses only
//! async-signal-safe calls (open, read, write, readlink, dl_iterate_phdr).

use core::ffi::{c_char, c_int, c_void, CStr};
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::heapmap::FdWriter;
use crate::stack::{self, MAX_FRAMES};

/// The interval `PAGEBREAK_PROFILE=1` means: 512 KiB, as tcmalloc and jemalloc.
pub const DEFAULT_INTERVAL: u64 = 512 * 1024;

static INTERVAL: AtomicU64 = AtomicU64::new(0);
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static PATH: AtomicPtr<c_char> = AtomicPtr::new(ptr::null_mut());
static DUMPING: AtomicBool = AtomicBool::new(false);
static LAST_OOM_DUMP: AtomicU64 = AtomicU64::new(0);

// ------------------------------------------------------------------------------ records

/// Live samples tracked at most (48 MiB of address space, touched as used).
const MAX_RECORDS: usize = 1 << 20;

/// One live sampled block. `seq` is odd while the record changes; `addr` is 0 when free.
#[repr(C)]
struct Record {
    seq: AtomicU64,
    addr: AtomicUsize,
    size: AtomicUsize,
    align: AtomicUsize,
    tid: AtomicU32,
    stack: AtomicU32,
    /// Free-list link: index + 1 of the next free record.
    next: AtomicU32,
}

static RECORDS: AtomicPtr<Record> = AtomicPtr::new(ptr::null_mut());
/// Records handed out so far (the free list recycles below this).
static HIGH: AtomicU32 = AtomicU32::new(0);
/// Free list head: (tag << 32) | (index + 1); the tag defeats ABA.
static FREE_HEAD: AtomicU64 = AtomicU64::new(0);

fn record_at(index: usize) -> &'static Record {
    // SAFETY: `index < MAX_RECORDS` (callers), inside the mapping made by `start`, which
    // is never unmapped; zeroed memory is a valid free Record.
    unsafe { &*RECORDS.load(Ordering::Acquire).add(index) }
}

fn take_record() -> Option<usize> {
    let mut head = FREE_HEAD.load(Ordering::Acquire);
    loop {
        let first = (head & 0xffff_ffff) as usize;
        if first == 0 {
            let index = HIGH.fetch_add(1, Ordering::Relaxed) as usize;
            return (index < MAX_RECORDS).then_some(index);
        }
        let next = record_at(first - 1).next.load(Ordering::Relaxed) as u64;
        let new = (((head >> 32) + 1) << 32) | next;
        match FREE_HEAD.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(first - 1),
            Err(seen) => head = seen,
        }
    }
}

fn give_record(index: usize) {
    let mut head = FREE_HEAD.load(Ordering::Relaxed);
    loop {
        record_at(index)
            .next
            .store((head & 0xffff_ffff) as u32, Ordering::Relaxed);
        let new = (((head >> 32) + 1) << 32) | (index as u64 + 1);
        match FREE_HEAD.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => head = seen,
        }
    }
}

/// The bytes a sample of `size` bytes stands for: size / (1 - exp(-size / interval)).
pub(crate) fn estimate(size: u64, interval: u64) -> u64 {
    if interval == 0 {
        return size;
    }
    let s = size.max(1) as f64;
    // libm (pure Rust), not f64::exp_m1: std's would make libpagebreak.so need libm.so.6,
    // whose pages cost every program about 300 KiB of RSS for this one function.
    let p = -libm::expm1(-s / interval as f64);
    (s / p) as u64
}

fn thread_id() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The core's `record` hook (`SampleHooks`): capture the stack, add to its totals, note
/// the live block.
pub(crate) fn record(ptr: *mut u8, size: usize, align: usize) -> usize {
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    let mut frames = [0usize; MAX_FRAMES];
    let n = stack::capture(&mut frames);
    let id = stack::intern(&frames[..n]);
    stack::add_totals(
        id,
        size as u64,
        estimate(size as u64, INTERVAL.load(Ordering::Relaxed)),
    );
    if RECORDS.load(Ordering::Acquire).is_null() {
        return 0;
    }
    let Some(index) = take_record() else {
        return 0;
    };
    let r = record_at(index);
    let seq = r.seq.load(Ordering::Relaxed);
    r.seq.store(seq + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    r.size.store(size, Ordering::Relaxed);
    r.align.store(align, Ordering::Relaxed);
    r.tid.store(thread_id(), Ordering::Relaxed);
    r.stack.store(id, Ordering::Relaxed);
    r.addr.store(ptr as usize, Ordering::Relaxed);
    r.seq.store(seq + 2, Ordering::Release);
    index + 1
}

/// The core's `forget` hook (`SampleHooks`): the sampled block with `token` was freed.
pub(crate) fn forget(token: usize) {
    let index = token - 1;
    let r = record_at(index);
    let seq = r.seq.load(Ordering::Relaxed);
    r.seq.store(seq + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    r.addr.store(0, Ordering::Relaxed);
    r.seq.store(seq + 2, Ordering::Release);
    give_record(index);
}

// ------------------------------------------------------------------------------ set-up

/// Turn profiling on with `interval` bytes (called by an instance's `init`, before its first
/// heap). Maps the record array and the stack table, installs the signal handler and the
/// exit dump. Returns false if the memory could not be mapped (profiling stays off).
pub(crate) fn start(interval: u64, path: *const c_char, signal: c_int) -> bool {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return !RECORDS.load(Ordering::Acquire).is_null();
    }
    INTERVAL.store(interval, Ordering::Relaxed);
    PATH.store(path.cast_mut(), Ordering::Relaxed);
    stack::init();
    // SAFETY: a fresh private anonymous mapping; zeroed records are free records.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            MAX_RECORDS * core::mem::size_of::<Record>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return false;
    }
    RECORDS.store(base.cast(), Ordering::Release);
    // SAFETY: registering plain extern "C" functions; the handler only calls
    // async-signal-safe functions.
    unsafe {
        libc::atexit(dump_at_exit);
        if signal > 0 {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    }
    true
}

/// Whether profiling is on.
pub(crate) fn enabled() -> bool {
    INTERVAL.load(Ordering::Relaxed) != 0
}

extern "C" fn dump_at_exit() {
    write_dump(ptr::null(), "exit");
}

extern "C" fn on_signal(_signal: c_int) {
    // SAFETY: errno is this thread's; saved and restored around the handler's calls.
    let saved = unsafe { *libc::__errno_location() };
    write_dump(ptr::null(), "signal");
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// In a child after `fork`: a dump another thread of the parent was writing does not go
/// on here, so the child may write its own.
pub(crate) fn after_fork_child() {
    DUMPING.store(false, Ordering::Relaxed);
}

/// An allocation failed: dump (at most once a second), the profile people need most.
pub(crate) fn on_oom() {
    if !enabled() {
        return;
    }
    // SAFETY: time(NULL) only reads the clock.
    let now = unsafe { libc::time(ptr::null_mut()) } as u64;
    let last = LAST_OOM_DUMP.load(Ordering::Relaxed);
    if now != last
        && LAST_OOM_DUMP
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        // SAFETY: errno is this thread's; the caller sets ENOMEM after us anyway.
        let saved = unsafe { *libc::__errno_location() };
        write_dump(ptr::null(), "oom");
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
    }
}

// ------------------------------------------------------------------------------ the dump

/// Write the dump to `path` (null: the configured or default path). Returns 0, or -1 with
/// errno set (EBUSY while another dump is being written, EINVAL when profiling is off).
pub(crate) fn write_dump(path: *const c_char, reason: &str) -> c_int {
    if !enabled() {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = libc::EINVAL };
        return -1;
    }
    if DUMPING.swap(true, Ordering::Acquire) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = libc::EBUSY };
        return -1;
    }
    let result = write_dump_locked(path, reason);
    DUMPING.store(false, Ordering::Release);
    result
}

/// A NUL-terminated path in a stack buffer.
struct PathBuf {
    buf: [u8; 4096],
    len: usize,
}

impl Write for PathBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

fn write_dump_locked(path: *const c_char, reason: &str) -> c_int {
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let mut default = PathBuf {
        buf: [0; 4096],
        len: 0,
    };
    let path = if !path.is_null() {
        path
    } else if !PATH.load(Ordering::Relaxed).is_null() {
        PATH.load(Ordering::Relaxed).cast_const()
    } else {
        let _ = write!(default, "pagebreak-{pid}.prof");
        default.buf.as_ptr().cast()
    };
    // SAFETY: `path` is NUL-terminated (caller's, environ's, or ours).
    let Some(mut out) = (unsafe { FdWriter::create(path) }) else {
        return -1;
    };
    let interval = INTERVAL.load(Ordering::Relaxed);
    // SAFETY: time(NULL) only reads the clock.
    let now = unsafe { libc::time(ptr::null_mut()) };
    let _ = writeln!(out, "pagebreak-profile 1");
    let _ = writeln!(out, "interval {interval}");
    let _ = writeln!(out, "pid {pid}");
    let _ = writeln!(out, "reason {reason}");
    let _ = writeln!(out, "time {}", now.max(0));
    let mut exe = [0u8; 4096];
    // SAFETY: readlink writes at most `exe.len()` bytes into our buffer.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr().cast(),
            exe.len() - 1,
        )
    };
    let exe = if n > 0 { &exe[..n as usize] } else { &exe[..0] };
    if !exe.is_empty() {
        out.write_bytes(b"exe ");
        out.write_bytes(exe);
        out.write_bytes(b"\n");
    }
    let _ = writeln!(out, "samples {}", SAMPLES.load(Ordering::Relaxed));
    stack::for_each(|id, _, frames| {
        let _ = write!(out, "stack {id}");
        for pc in frames {
            let _ = write!(out, " {pc:#x}");
        }
        let _ = out.write_str("\n");
    });
    stack::for_each(|id, totals, _| {
        if totals.samples != 0 {
            let _ = writeln!(
                out,
                "total {id} {} {} {}",
                totals.samples, totals.bytes, totals.estimate
            );
        }
    });
    write_live(&mut out);
    write_maps(&mut out);
    write_build_ids(&mut out, exe);
    let _ = out.write_str("end\n");
    out.finish()
}

fn write_live(out: &mut FdWriter) {
    if RECORDS.load(Ordering::Acquire).is_null() {
        return;
    }
    let high = (HIGH.load(Ordering::Acquire) as usize).min(MAX_RECORDS);
    for index in 0..high {
        let r = record_at(index);
        let before = r.seq.load(Ordering::Acquire);
        if before & 1 != 0 {
            continue;
        }
        let addr = r.addr.load(Ordering::Relaxed);
        let size = r.size.load(Ordering::Relaxed);
        let align = r.align.load(Ordering::Relaxed);
        let tid = r.tid.load(Ordering::Relaxed);
        let stack = r.stack.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if addr == 0 || r.seq.load(Ordering::Relaxed) != before {
            continue;
        }
        let _ = writeln!(out, "live {stack} {size} {align} {tid} {addr:#x}");
    }
}

/// Copy /proc/self/maps, each line prefixed with `map ` (a line longer than 8 KiB is cut).
fn write_maps(out: &mut FdWriter) {
    let mut buf = [0u8; 8192];
    crate::proc_maps::for_each_line(&mut buf, |line, _whole| {
        out.write_bytes(b"map ");
        out.write_bytes(line);
        out.write_bytes(b"\n");
    });
}

/// `buildid NAME HEX` for every loaded object with a GNU build-id note (read in memory).
fn write_build_ids(out: &mut FdWriter, exe: &[u8]) {
    struct Ctx<'a> {
        out: &'a mut FdWriter,
        exe: &'a [u8],
    }
    extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, arg: *mut c_void) -> c_int {
        // SAFETY: the loader hands a valid info for the duration of the call; `arg` is our
        // Ctx; PT_NOTE segments are mapped (they lie inside a loaded PT_LOAD).
        unsafe {
            let ctx = &mut *arg.cast::<Ctx>();
            let info = &*info;
            let name: &[u8] = if info.dlpi_name.is_null() || *info.dlpi_name == 0 {
                ctx.exe
            } else {
                CStr::from_ptr(info.dlpi_name).to_bytes()
            };
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type != libc::PT_NOTE || name.is_empty() {
                    continue;
                }
                let mut note = (info.dlpi_addr as usize + ph.p_vaddr as usize) as *const u8;
                let end = note.add(ph.p_memsz as usize);
                while note.add(12) <= end {
                    let namesz = note.cast::<u32>().read_unaligned() as usize;
                    let descsz = note.add(4).cast::<u32>().read_unaligned() as usize;
                    let kind = note.add(8).cast::<u32>().read_unaligned();
                    let name_at = note.add(12);
                    let desc_at = name_at.add(namesz.next_multiple_of(4));
                    let next = desc_at.add(descsz.next_multiple_of(4));
                    if next > end {
                        break;
                    }
                    if kind == 3
                        && namesz == 4
                        && core::slice::from_raw_parts(name_at, 4) == b"GNU\0"
                    {
                        ctx.out.write_bytes(b"buildid ");
                        ctx.out.write_bytes(name);
                        ctx.out.write_bytes(b" ");
                        for &b in core::slice::from_raw_parts(desc_at, descsz) {
                            let _ = write!(ctx.out, "{b:02x}");
                        }
                        ctx.out.write_bytes(b"\n");
                    }
                    note = next;
                }
            }
        }
        0
    }
    let mut ctx = Ctx { out, exe };
    // SAFETY: the callback reads loader data and writes through our context only.
    unsafe { libc::dl_iterate_phdr(Some(visit), ptr::addr_of_mut!(ctx).cast()) };
}

// ------------------------------------------------------------------------------ Rust API

/// Write a heap profile now (the raw dump of `pagebreak-prof/FORMAT.md`) to `path`, for
/// `pagebreak-prof` to read. Fails unless profiling is on (`PAGEBREAK_PROFILE`).
///
/// ```no_run
/// pagebreak::profile::dump("heap.prof").unwrap();
/// ```
pub fn dump(path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_ref().as_os_str().as_bytes();
    let mut buf = [0u8; 4096];
    if bytes.len() >= buf.len() || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    crate::selected::init();
    if write_dump(buf.as_ptr().cast(), "request") == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether heap profiling is on, and its mean sampling interval in bytes.
pub fn interval() -> Option<u64> {
    crate::selected::init();
    let i = INTERVAL.load(Ordering::Relaxed);
    (i != 0).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_unbiases() {
        // Small blocks stand for about one interval each; huge ones for themselves.
        let i = DEFAULT_INTERVAL;
        assert!((estimate(16, i) as i64 - i as i64).abs() < 16);
        assert_eq!(estimate(100 << 20, i), 100 << 20);
        let e = estimate(i, i) as f64;
        assert!((e - i as f64 / (1.0 - (-1.0f64).exp())).abs() < 2.0);
    }
}
