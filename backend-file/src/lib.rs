//! A pagebreak [`PageSource`] over a memory-mapped file: a heap living in a file.
//!
//! [`FileSource`] maps a whole file once, shared (`MAP_SHARED`, through memmap2), and hands
//! out spans of it to an [`alloc_core::Allocator`]. Every block that allocator returns is then
//! a range of the file:
//!
//! * **Data sets larger than RAM.** The kernel writes dirty pages back to the file and drops
//!   them when memory is short, as it does for any shared file mapping; the heap is bounded by
//!   the file's capacity and the disk, not by RAM or swap.
//! * **Sharing and keeping data.** Another process (or a later run) maps the same file and
//!   finds the data. Mappings land at different addresses, so a structure in the file links
//!   by *file offsets* ([`offset_of`](FileSource::offset_of),
//!   [`ptr_at`](FileSource::ptr_at)), never by pointers, and a small header keeps one
//!   [`root`](FileSource::root) offset to start from.
//!
//! # Example
//!
//! ```
//! use alloc_core::Allocator;
//! use backend_file::FileSource;
//!
//! let path = std::env::temp_dir().join(format!("pagebreak-doc-{}.heap", std::process::id()));
//! {
//!     let source = FileSource::create(&path, 64 << 20)?;
//!     let alloc = Allocator::new(&source);
//!     let heap = alloc.new_heap();
//!     // SAFETY: `heap` is this thread's live heap of `alloc`.
//!     let p = unsafe { alloc.malloc(heap, 6) };
//!     assert!(!p.is_null());
//!     // SAFETY: `p` holds at least 6 bytes.
//!     unsafe { p.copy_from_nonoverlapping(b"hello!".as_ptr(), 6) };
//!     source.set_root(source.offset_of(p).unwrap());
//!     source.flush()?;
//! } // `alloc` goes first, then the source unmaps the file.
//!
//! let again = FileSource::open(&path)?;
//! let p = again.ptr_at(again.root()).unwrap();
//! // SAFETY: the root block holds 6 bytes written above.
//! assert_eq!(unsafe { std::slice::from_raw_parts(p, 6) }, b"hello!");
//! drop(again);
//! std::fs::remove_file(&path)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The file
//!
//! | file offset | contents |
//! | --- | --- |
//! | `0..HEADER_SIZE` | the header: a magic number, the capacity, the high-water mark, the root offset |
//! | `HEADER_SIZE..capacity` | spans handed to the allocator, 4 MiB-aligned *in memory* |
//!
//! The file is created sparse: space nobody touched costs no disk. Spans keep the alignment
//! the core asks for (4 MiB) in the address space, not in the file, so their file offsets
//! depend on where the file was mapped; nothing in the file needs to know.
//!
//! # What survives a reopen, and what does not
//!
//! The *bytes* survive: every block, and the header. The *allocator* does not: heaps, free
//! lists and segment headers in the file hold pointers into the old mapping and are never read
//! again. [`FileSource::open`] gives a source that hands out only space above the file's
//! high-water mark, so a new allocator over it can add data without touching the old; space
//! freed in an earlier run is not reused.
//!
//! # Contract
//!
//! * The source owns the mapping ([`memmap2::MmapRaw`]); dropping it unmaps the file. An
//!   allocator over it must not outlive it, and no block may be used after: build the
//!   allocator over a reference (`Allocator::new(&source)`) so the borrow checker holds it
//!   to that, or let an `Allocator<FileSource>` own it. Blocks then live as long as both.
//! * Nobody may shrink the file while it is mapped: touching a page past the end of a file
//!   raises `SIGBUS`.
//! * One process at a time may allocate from a file. Two sources over one file hand out the
//!   same space: nothing locks the file across processes. Readers are welcome.
//! * Durability: the kernel writes dirty pages back on its own schedule (and after the
//!   process exits); [`flush`](FileSource::flush) (`msync`) forces it. A crash mid-way leaves
//!   whatever had been written back.
//! * Unlike the other sources, `FileSource` has no `const` constructor (it opens a file): an
//!   allocator over it lives in a local, a `Box`, or a `static` initialised once (`OnceLock`).
//!
//! # Purging
//!
//! [`PageSource::purge`] punches a hole in the file (`fallocate(FALLOC_FL_PUNCH_HOLE |
//! FALLOC_FL_KEEP_SIZE)`): the disk blocks and page-cache pages go, the range reads as zero
//! afterwards, and `purge` returns `true`. On a file system that cannot punch holes it falls
//! back to `madvise(MADV_DONTNEED)`, which on a *shared file* mapping only drops this
//! process's page-table entries: the data stays in the page cache and the file, and reads
//! return it rather than zeros, so `purge` returns `false` (`MADV_DONTNEED` zeroes only
//! private and anonymous mappings). Spans released for good are punched out the same way, so
//! the file gives their disk space back.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use alloc_core::{PageSource, SourceError, Span, SpinLock, PAGE_SIZE};
use memmap2::{MmapOptions, MmapRaw, UncheckedAdvice};

/// Bytes at the start of the file reserved for the header; spans start above.
pub const HEADER_SIZE: usize = PAGE_SIZE;

/// The header's first eight bytes: "pagebreak heap file, layout 1".
const MAGIC: u64 = u64::from_le_bytes(*b"PGBRKHF1");

/// Released ranges remembered for reuse; a release that finds the table full is dropped (its
/// space is lost until the file is recreated), which only fragmented, long-running use hits.
const FREE_RANGES: usize = 32;

/// The header at file offset 0. Atomics, because the mapping is shared: a reader in another
/// process may look at the root while this one writes it.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    /// File length when created.
    capacity: AtomicU64,
    /// File offset above which no span was ever handed out (and the file reads as zero).
    high_water: AtomicU64,
    /// The user's root offset (0: none).
    root: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Header>() <= HEADER_SIZE);

/// A released (or skipped) range of the file, below the bump pointer.
#[derive(Clone, Copy)]
struct Range {
    offset: usize,
    /// 0: an empty slot of the table.
    len: usize,
    /// Every byte reads as zero: never handed out, or punched out when released.
    zero: bool,
}

const NO_RANGE: Range = Range {
    offset: 0,
    len: 0,
    zero: false,
};

/// Space bookkeeping, in file offsets.
struct State {
    /// Bump pointer: spans are carved upwards from here.
    top: usize,
    /// Everything at or above this offset reads as zero (never handed out, or given back
    /// with a hole punched). `fresh >= top`.
    fresh: usize,
    /// Released ranges below `top`.
    free: [Range; FREE_RANGES],
}

impl State {
    fn add_free(&mut self, mut offset: usize, mut len: usize, mut zero: bool) {
        if len == 0 {
            return;
        }
        if offset + len == self.top {
            // Fold into the top, then whatever now touches it, each range with its own
            // zero flag (so `fresh` follows the zero ranges as far as they go).
            self.lower_top(offset, zero);
            while let Some(i) = self
                .free
                .iter()
                .position(|r| r.len != 0 && r.offset + r.len == self.top)
            {
                let r = self.free[i];
                self.free[i] = NO_RANGE;
                self.lower_top(r.offset, r.zero);
            }
            return;
        }
        // Merge with released neighbours on either side.
        for slot in self.free.iter_mut() {
            let r = *slot;
            if r.len != 0 && (r.offset + r.len == offset || offset + len == r.offset) {
                *slot = NO_RANGE;
                len += r.len;
                offset = offset.min(r.offset);
                zero &= r.zero;
            }
        }
        if let Some(slot) = self.free.iter_mut().find(|r| r.len == 0) {
            *slot = Range { offset, len, zero };
        }
    }

    /// Move the bump pointer down to `offset` over a range that reads as zero if `zero`.
    fn lower_top(&mut self, offset: usize, zero: bool) {
        if zero && self.fresh == self.top {
            self.fresh = offset;
        }
        self.top = offset;
    }
}

/// A [`PageSource`] over one file, mapped whole and shared. See the
/// [crate documentation](crate) for the file's layout and the contract.
pub struct FileSource {
    map: MmapRaw,
    file: File,
    state: SpinLock<State>,
    /// Cleared when the file system refuses `FALLOC_FL_PUNCH_HOLE`, to stop trying.
    punch: AtomicBool,
    epoch: Instant,
}

impl FileSource {
    /// Create (or truncate) the file at `path`, `capacity` bytes long (rounded up to whole
    /// pages; at least one page beyond the header), sparse, and map it.
    ///
    /// The allocator's spans are 4 MiB aligned in memory, so the first one may start up to
    /// 4 MiB above the header (the gap serves smaller metadata spans): give a few MiB more
    /// than the data needs.
    pub fn create(path: impl AsRef<Path>, capacity: usize) -> io::Result<FileSource> {
        let capacity = capacity
            .max(2 * HEADER_SIZE)
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "capacity too large"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(capacity as u64)?;
        let source = FileSource::map(file, capacity, HEADER_SIZE)?;
        let header = source.header();
        header.capacity.store(capacity as u64, Ordering::Relaxed);
        header
            .high_water
            .store(HEADER_SIZE as u64, Ordering::Relaxed);
        header.root.store(0, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        Ok(source)
    }

    /// Map an existing heap file made by [`create`](Self::create). Its data is reachable
    /// through [`root`](Self::root) and [`ptr_at`](Self::ptr_at); as a page source it hands
    /// out only space above the file's high-water mark, leaving the old data alone.
    ///
    /// Fails with [`io::ErrorKind::InvalidData`] if the file has no pagebreak header.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileSource> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| invalid("file too large"))?;
        if len < 2 * HEADER_SIZE || len % PAGE_SIZE != 0 {
            return Err(invalid("not a pagebreak heap file (bad length)"));
        }
        // Map first, read the header from the mapping: the same view every reader has.
        let source = FileSource::map(file, len, len)?;
        let header = source.header();
        if header.magic.load(Ordering::Acquire) != MAGIC {
            return Err(invalid("not a pagebreak heap file (bad magic)"));
        }
        let high_water = header.high_water.load(Ordering::Relaxed);
        let high_water = usize::try_from(high_water)
            .ok()
            .filter(|&h| (HEADER_SIZE..=len).contains(&h))
            .ok_or_else(|| invalid("corrupt pagebreak heap header"))?;
        let start = high_water.next_multiple_of(PAGE_SIZE).min(len);
        let mut state = source.state.lock(&source);
        state.top = start;
        state.fresh = start;
        drop(state);
        Ok(source)
    }

    fn map(file: File, len: usize, start: usize) -> io::Result<FileSource> {
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(FileSource {
            map,
            file,
            state: SpinLock::new(State {
                top: start,
                fresh: start,
                free: [NO_RANGE; FREE_RANGES],
            }),
            punch: AtomicBool::new(true),
            epoch: Instant::now(),
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least two pages long and page-aligned, the header's
        // fields are atomics (valid for any bits, shared access through `&` is fine), and
        // no span overlaps the header page.
        unsafe { &*self.map.as_mut_ptr().cast::<Header>() }
    }

    /// The mapped file's first byte (file offset 0). Differs from one mapping to the next.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The mapping's length: the file's size in bytes.
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// File offset above which no span was ever handed out.
    pub fn high_water(&self) -> u64 {
        self.header().high_water.load(Ordering::Relaxed)
    }

    /// The root offset kept in the header (0 until [`set_root`](Self::set_root)).
    pub fn root(&self) -> u64 {
        self.header().root.load(Ordering::Acquire)
    }

    /// Keep `offset` in the header, for whoever maps the file next. Offsets come from
    /// [`offset_of`](Self::offset_of).
    pub fn set_root(&self, offset: u64) {
        self.header().root.store(offset, Ordering::Release);
    }

    /// The file offset of `p`, if `p` points into the mapping.
    pub fn offset_of(&self, p: *const u8) -> Option<u64> {
        let offset = (p as usize).checked_sub(self.as_ptr() as usize)?;
        (offset < self.capacity()).then_some(offset as u64)
    }

    /// The address of file offset `offset` in this mapping, if it lies inside the file. The
    /// pointer is valid while the source lives; what it may be read as is up to whoever
    /// wrote there.
    pub fn ptr_at(&self, offset: u64) -> Option<*mut u8> {
        let offset = usize::try_from(offset).ok()?;
        (offset < self.capacity()).then(|| self.as_ptr().wrapping_add(offset))
    }

    /// Write every dirty page back to the file now (`msync(MS_SYNC)`).
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// Give the disk blocks and page-cache pages of a file range back: it reads as zero after.
    /// `false` when the file system cannot punch holes.
    fn punch_hole(&self, offset: usize, len: usize) -> bool {
        use std::os::fd::AsRawFd;
        if !self.punch.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: a plain syscall on our own descriptor; the range lies inside the file, and
        // the caller guarantees nothing in it is in use.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return true;
        }
        let err = io::Error::last_os_error().raw_os_error();
        if err == Some(libc::EOPNOTSUPP) || err == Some(libc::ENOSYS) {
            self.punch.store(false, Ordering::Relaxed);
        }
        false
    }

    fn offset(&self, ptr: *mut u8) -> usize {
        ptr as usize - self.as_ptr() as usize
    }
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("base", &self.as_ptr())
            .field("capacity", &self.capacity())
            .field("high_water", &self.high_water())
            .field("root", &self.root())
            .finish()
    }
}

// SAFETY: spans are disjoint ranges of the mapping above the header (bump allocation plus
// reuse of released ranges, all under one lock), aligned as asked, readable and writable
// (a shared read-write mapping of a file at least as long), and valid while the source lives,
// which the allocator over it must not outlive (see the crate documentation).
unsafe impl PageSource for FileSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        let base = self.as_ptr() as usize;
        let capacity = self.capacity();
        let mut state = self.state.lock(self);
        // Reuse a released range first (first fit, honouring alignment).
        for i in 0..FREE_RANGES {
            let Range { offset, len, zero } = state.free[i];
            if len == 0 {
                continue;
            }
            let Some(start) = (base + offset).checked_next_multiple_of(align) else {
                continue;
            };
            let start = start - base;
            if start + size > offset + len {
                continue;
            }
            state.free[i] = NO_RANGE;
            state.add_free(offset, start - offset, zero);
            state.add_free(start + size, offset + len - start - size, zero);
            return Ok(Span {
                ptr: self.as_ptr().wrapping_add(start),
                size,
                zeroed: zero,
            });
        }
        let start = (base + state.top)
            .checked_next_multiple_of(align)
            .ok_or(SourceError::InvalidRequest)?
            - base;
        let end = start.checked_add(size).ok_or(SourceError::InvalidRequest)?;
        if end > capacity {
            return Err(SourceError::OutOfMemory);
        }
        let old_top = state.top;
        // Space at or above `fresh` is a hole and reads as zero; space below it was handed
        // out before and may hold anything.
        let zeroed = start >= state.fresh;
        let pad_zero = old_top >= state.fresh;
        state.top = end;
        state.fresh = state.fresh.max(end);
        // The alignment gap (a page multiple: `top` and `align` are) serves later, smaller
        // requests.
        state.add_free(old_top, start - old_top, pad_zero);
        self.header()
            .high_water
            .fetch_max(end as u64, Ordering::Relaxed);
        Ok(Span {
            ptr: self.as_ptr().wrapping_add(start),
            size,
            zeroed,
        })
    }

    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        let offset = self.offset(ptr);
        // Give the disk space back first (outside the lock: it is a syscall); a punched range
        // reads as zero when it is handed out again.
        let zero = self.punch_hole(offset, size);
        self.state.lock(self).add_free(offset, size, zero);
    }

    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        let offset = self.offset(ptr);
        if self.punch_hole(offset, size) {
            return true;
        }
        // SAFETY: the range is inside the mapping and unused (the caller's contract). On a
        // shared file mapping MADV_DONTNEED drops only our page-table entries: the data
        // stays in the file, which is why this path does not promise zeros.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, offset, size)
        };
        false
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn yield_now(&self) {
        std::thread::yield_now()
    }

    fn entropy(&self) -> u64 {
        let probe = 0u8;
        let stack = core::ptr::addr_of!(probe) as u64;
        let clock = self.epoch.elapsed().as_nanos() as u64;
        let mut x = stack.rotate_left(32) ^ clock ^ (self.as_ptr() as u64) ^ 0x9e37_79b9_7f4a_7c15;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn before_fork(&self) {
        self.state.raw_lock(self);
    }

    unsafe fn after_fork(&self) {
        // SAFETY: before_fork took the lock.
        unsafe { self.state.raw_unlock() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(top: usize) -> State {
        State {
            top,
            fresh: top,
            free: [NO_RANGE; FREE_RANGES],
        }
    }

    #[test]
    fn a_dirty_range_at_the_top_keeps_fresh() {
        let mut s = state(10 * PAGE_SIZE);
        s.add_free(8 * PAGE_SIZE, 2 * PAGE_SIZE, false);
        assert_eq!(s.top, 8 * PAGE_SIZE);
        assert_eq!(
            s.fresh,
            10 * PAGE_SIZE,
            "dirty space must not count as fresh"
        );
    }

    #[test]
    fn zero_ranges_folding_into_the_top_lower_fresh() {
        let mut s = state(10 * PAGE_SIZE);
        s.add_free(4 * PAGE_SIZE, 2 * PAGE_SIZE, true); // a hole below the top
        s.add_free(6 * PAGE_SIZE, 4 * PAGE_SIZE, true); // meets the top: both fold
        assert_eq!((s.top, s.fresh), (4 * PAGE_SIZE, 4 * PAGE_SIZE));
        assert!(s.free.iter().all(|r| r.len == 0));
    }

    #[test]
    fn merging_a_dirty_neighbour_makes_the_range_dirty() {
        let mut s = state(10 * PAGE_SIZE);
        s.add_free(2 * PAGE_SIZE, PAGE_SIZE, true);
        s.add_free(3 * PAGE_SIZE, PAGE_SIZE, false);
        let r = s.free.iter().find(|r| r.len != 0).copied().unwrap();
        assert_eq!(
            (r.offset, r.len, r.zero),
            (2 * PAGE_SIZE, 2 * PAGE_SIZE, false)
        );
        // Folding a dirty range into the top leaves `fresh` where it was.
        s.add_free(4 * PAGE_SIZE, 6 * PAGE_SIZE, true);
        assert_eq!((s.top, s.fresh), (2 * PAGE_SIZE, 4 * PAGE_SIZE));
    }
}
