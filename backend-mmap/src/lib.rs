//! A pagebreak [`PageSource`] over anonymous `mmap`/`munmap`/`madvise`.
//!
//! Every span is its own private anonymous mapping (`MAP_NORESERVE`: address space is cheap,
//! pages are committed on first touch). An aligned span is mapped at a hinted address, in one
//! call (see `hint.rs`); if the kernel places it elsewhere and unaligned, the span is
//! over-mapped by `align - page` and the unaligned head and tail are unmapped.
//!
//! Pages are the kernel's (4 KiB on x86-64; 4, 16 or 64 KiB on aarch64), read once from the
//! auxiliary vector and reported to the core through [`PageSource::page_size`].
//!
//! Runs inside `malloc`: no allocation, no locks, only `libc` calls.

#![no_std]

mod hint;

use alloc_core::{PageSource, SourceError, Span, MAX_PAGE_SIZE, PAGE_SIZE};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Spans at least this large get `MADV_HUGEPAGE` when huge pages are switched on: a smaller
/// span cannot hold a whole 2 MiB huge page.
const HUGE_PAGE_SIZE: usize = 2 << 20;

/// A [`PageSource`] backed by anonymous `mmap`. Stateless apart from two counters, so it can
/// live in a `static` and be shared by every thread.
#[derive(Debug)]
pub struct MmapSource {
    /// Advise transparent huge pages for large spans.
    thp: AtomicBool,
    /// Bytes currently mapped on behalf of callers (statistics only).
    mapped: AtomicUsize,
    /// Addresses for aligned spans.
    hints: hint::Hints,
}

impl MmapSource {
    /// A source with huge pages off and nothing mapped.
    pub const fn new() -> Self {
        Self {
            thp: AtomicBool::new(false),
            mapped: AtomicUsize::new(0),
            hints: hint::Hints::new(),
        }
    }

    /// Switch `MADV_HUGEPAGE` on or off for spans of 2 MiB or more mapped from now on.
    pub fn set_huge_pages(&self, on: bool) {
        self.thp.store(on, Ordering::Relaxed);
    }

    /// Whether large spans are advised to use transparent huge pages.
    pub fn huge_pages(&self) -> bool {
        self.thp.load(Ordering::Relaxed)
    }

    /// Bytes currently handed out and not yet released.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }
}

impl Default for MmapSource {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's page size, within what the core supports (a larger page would make partial
/// unmaps and purges fail, which costs memory but never correctness).
fn page_size() -> usize {
    os_glue::page_size().clamp(PAGE_SIZE, MAX_PAGE_SIZE)
}

/// Map `len` bytes of fresh anonymous memory anywhere; `None` if the kernel refuses.
fn map(len: usize) -> Option<usize> {
    map_near(0, len)
}

/// Map `len` bytes of fresh anonymous memory, at `hint` if that range is free (0: anywhere);
/// `None` if the kernel refuses.
fn map_near(hint: usize, len: usize) -> Option<usize> {
    // SAFETY: an anonymous mapping without MAP_FIXED creates new memory and never replaces an
    // existing mapping (the kernel ignores a hint whose range is taken); plain arguments.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as usize)
    }
}

/// Unmap `[addr, addr + len)`; a no-op for `len == 0`.
///
/// # Safety
///
/// The range is page-aligned, was mapped by this source, and nothing uses it afterwards.
unsafe fn unmap(addr: usize, len: usize) {
    if len != 0 {
        // SAFETY: the caller owns the range and gives it up. munmap of a valid range only fails
        // if splitting a mapping would exceed vm.max_map_count; the range then stays mapped,
        // which leaks address space but is never unsafe.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }
}

// SAFETY: each span is a fresh private mapping (or the aligned middle of one), so it is readable,
// writable, exactly `size` bytes, aligned as asked, disjoint from every other live mapping, and
// stays mapped until `release` unmaps it.
unsafe impl PageSource for MmapSource {
    unsafe fn alloc(&self, size: usize, align: usize) -> Result<Span, SourceError> {
        let page = page_size();
        if size == 0 || size & (page - 1) != 0 || !align.is_power_of_two() || align < page {
            return Err(SourceError::InvalidRequest);
        }
        let over = size
            .checked_add(align - page)
            .ok_or(SourceError::InvalidRequest)?;

        // At the hint, else anywhere: an exact-size map is sometimes aligned by chance (always
        // for one page).
        let hint = if align > page {
            self.hints.take(size, align, os_glue::entropy).unwrap_or(0)
        } else {
            0
        };
        let mut start = map_near(hint, size).ok_or(SourceError::OutOfMemory)?;
        if hint != 0 && start != hint {
            self.hints.switch_off();
        }
        if start & (align - 1) != 0 {
            // SAFETY: we just mapped it and nobody has seen it.
            unsafe { unmap(start, size) };
            let base = map(over).ok_or(SourceError::OutOfMemory)?;
            start = (base + align - 1) & !(align - 1);
            let head = start - base;
            // SAFETY: head and tail are the parts of our fresh map outside the aligned span;
            // `start + size <= base + over` because `head <= align - page`.
            unsafe {
                unmap(base, head);
                unmap(start + size, over - head - size);
            }
        }

        if size >= HUGE_PAGE_SIZE && self.thp.load(Ordering::Relaxed) {
            // SAFETY: advice on our own fresh span; it changes no contents. Failure (THP not
            // built in or disabled) just means small pages.
            unsafe { libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE) };
        }
        self.mapped.fetch_add(size, Ordering::Relaxed);
        Ok(Span {
            ptr: start as *mut u8,
            size,
            zeroed: true,
        })
    }

    fn reserve_zeroed(&self, size: usize) -> Option<*mut u8> {
        let start = map(size)?;
        // The segment map writes a byte here and there: a transparent huge page (THP
        // "always") would make each write cost 2 MiB of RSS instead of 4 KiB.
        // SAFETY: advice on our own fresh mapping; it changes no contents.
        unsafe { libc::madvise(start as *mut libc::c_void, size, libc::MADV_NOHUGEPAGE) };
        Some(start as *mut u8)
    }

    unsafe fn release(&self, ptr: *mut u8, size: usize) {
        // SAFETY: the caller gives up a page-aligned whole span, prefix or suffix we mapped.
        unsafe { unmap(ptr as usize, size) };
        self.mapped.fetch_sub(size, Ordering::Relaxed);
    }

    unsafe fn purge(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: the caller passes a page-aligned range inside a live span with nothing in use;
        // MADV_DONTNEED on private anonymous memory drops the pages and later reads see zeros.
        // It fails (EINVAL) on mlock()ed pages, which keep their contents: then say so.
        unsafe { libc::madvise(ptr.cast(), size, libc::MADV_DONTNEED) == 0 }
    }

    unsafe fn remap(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<Span> {
        let page = page_size();
        if new_size == 0 || new_size & (page - 1) != 0 || !align.is_power_of_two() || align < page {
            return None;
        }
        // Growing in place keeps the address (and its alignment) when the range after the
        // span is free.
        // SAFETY: the caller owns the whole span; without MREMAP_MAYMOVE the kernel either
        // resizes it where it is or fails and changes nothing.
        let same = unsafe { libc::mremap(ptr.cast(), old_size, new_size, 0) };
        let start = if same != libc::MAP_FAILED {
            same as usize
        } else {
            // Reserve an aligned destination, then move the pages there (no copy: the kernel
            // moves page-table entries). MREMAP_FIXED replaces the reservation.
            let over = new_size.checked_add(align - page)?;
            let base = map(over)?;
            let dest = (base + align - 1) & !(align - 1);
            let head = dest - base;
            // SAFETY: head and tail of our fresh reservation, outside the aligned destination.
            unsafe {
                unmap(base, head);
                unmap(dest + new_size, over - head - new_size);
            }
            // SAFETY: `dest` is our reservation of exactly new_size bytes; the source span is
            // the caller's; on failure nothing moved and we drop the reservation.
            let moved = unsafe {
                libc::mremap(
                    ptr.cast(),
                    old_size,
                    new_size,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    dest as *mut libc::c_void,
                )
            };
            if moved == libc::MAP_FAILED {
                // SAFETY: the reservation is ours and unused.
                unsafe { unmap(dest, new_size) };
                return None;
            }
            moved as usize
        };
        self.mapped.fetch_add(new_size, Ordering::Relaxed);
        self.mapped.fetch_sub(old_size, Ordering::Relaxed);
        Some(Span {
            ptr: start as *mut u8,
            size: new_size,
            zeroed: false,
        })
    }

    fn page_size(&self) -> usize {
        page_size()
    }

    unsafe fn protect(&self, ptr: *mut u8, size: usize, accessible: bool) -> bool {
        // SAFETY: forwarded: a page-aligned range of a live span of ours.
        unsafe { os_glue::protect(ptr, size, accessible) }
    }

    fn now_ms(&self) -> u64 {
        os_glue::now_ms()
    }

    fn entropy(&self) -> u64 {
        os_glue::entropy()
    }

    fn yield_now(&self) {
        os_glue::yield_now()
    }
}
