//! The extended C API of `include/pagebreak.h` (statistics, heaps, heap pictures) and glibc's
//! `mallinfo`/`mallinfo2`, filled from pagebreak's own counters.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use alloc_core::size_class::{class_size, NUM_CLASSES};
use alloc_core::{Heap, Stats};

use crate::selected as inst;

/// `struct pagebreak_stats` of pagebreak.h.
#[repr(C)]
pub struct PagebreakStats {
    allocated: usize,
    reserved: usize,
    peak_reserved: usize,
    segments: usize,
    purges: usize,
    purged_bytes: usize,
    remote_frees: usize,
    huge_count: usize,
    huge_bytes: usize,
    heaps: usize,
    abandoned_segments: usize,
    cached_resident: usize,
    class_size: [usize; NUM_CLASSES],
    class_live: [usize; NUM_CLASSES],
}

/// `pagebreak_stats_get`: fill `*out` with a snapshot; returns 0.
///
/// # Safety
///
/// `out` is valid for a write of `struct pagebreak_stats`.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_stats_get(out: *mut PagebreakStats) -> c_int {
    let s: Stats = inst::stats();
    let mut sizes = [0; NUM_CLASSES];
    for (class, size) in sizes.iter_mut().enumerate().skip(1) {
        *size = class_size(class);
    }
    // SAFETY: caller's contract.
    unsafe {
        out.write(PagebreakStats {
            allocated: s.allocated,
            reserved: s.reserved,
            peak_reserved: s.peak_reserved,
            segments: s.segments,
            purges: s.purges,
            purged_bytes: s.purged_bytes,
            remote_frees: s.remote_frees,
            huge_count: s.huge_count,
            huge_bytes: s.huge_bytes,
            heaps: s.heaps,
            abandoned_segments: s.abandoned_segments,
            cached_resident: s.cached_resident,
            class_size: sizes,
            class_live: s.class_live,
        })
    };
    0
}

/// `pagebreak_stats_print`: the statistics table on stderr.
#[no_mangle]
pub extern "C" fn pagebreak_stats_print() {
    crate::print_stats(&inst::stats(), inst::BACKEND);
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
pub struct Mallinfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

fn mallinfo_now() -> Mallinfo2 {
    let s = inst::stats();
    let in_pages = s.reserved.saturating_sub(s.huge_bytes);
    Mallinfo2 {
        arena: in_pages,
        ordblks: s.class_live.iter().sum(),
        smblks: 0,
        hblks: s.huge_count,
        hblkhd: s.huge_bytes,
        usmblks: s.peak_reserved,
        fsmblks: 0,
        uordblks: s.allocated,
        fordblks: s.reserved.saturating_sub(s.allocated),
        keepcost: s.cached_resident,
    }
}

/// `mallinfo2(3)`: `arena` bytes in page segments, `hblks`/`hblkhd` huge blocks, `uordblks`
/// allocated, `fordblks` reserved but free, `keepcost` freed memory kept for reuse.
#[no_mangle]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    mallinfo_now()
}

/// glibc's `struct mallinfo` (int fields; values saturate at INT_MAX).
#[repr(C)]
pub struct Mallinfo {
    fields: [c_int; 10],
}

/// `mallinfo(3)`: as [`mallinfo2`], saturated to `int`.
#[no_mangle]
pub extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo_now();
    let sat = |v: usize| v.min(c_int::MAX as usize) as c_int;
    Mallinfo {
        fields: [
            sat(m.arena),
            sat(m.ordblks),
            sat(m.smblks),
            sat(m.hblks),
            sat(m.hblkhd),
            sat(m.usmblks),
            sat(m.fsmblks),
            sat(m.uordblks),
            sat(m.fordblks),
            sat(m.keepcost),
        ],
    }
}

/// `pagebreak_heap_new`: a new arena heap, or NULL (ENOMEM).
#[no_mangle]
pub extern "C" fn pagebreak_heap_new() -> *mut c_void {
    inst::init();
    let heap = inst::ALLOC.new_arena_heap();
    if heap.is_null() {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
    }
    heap.cast()
}

/// `pagebreak_heap_destroy`: free every block of `heap` at once.
///
/// # Safety
///
/// `heap` came from `pagebreak_heap_new`, is not in use, and none of its blocks is used after.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heap_destroy(heap: *mut c_void) {
    if !heap.is_null() {
        // SAFETY: caller's contract.
        unsafe { inst::ALLOC.destroy_heap(heap.cast()) };
    }
}

fn nomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
    }
    p.cast()
}

/// `pagebreak_heap_malloc`.
///
/// # Safety
///
/// `heap` came from `pagebreak_heap_new` and no other thread uses it now.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heap_malloc(heap: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: caller's contract.
    nomem(unsafe { inst::ALLOC.malloc(heap.cast::<Heap>(), size) })
}

/// `pagebreak_heap_calloc`: NULL with ENOMEM when `count * size` overflows.
///
/// # Safety
///
/// As for [`pagebreak_heap_malloc`].
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heap_calloc(
    heap: *mut c_void,
    count: usize,
    size: usize,
) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: caller's contract.
        Some(total) => nomem(unsafe { inst::ALLOC.zalloc(heap.cast::<Heap>(), total) }),
        None => nomem(ptr::null_mut()),
    }
}

/// `pagebreak_heap_aligned_alloc`: NULL with EINVAL unless `align` is a power of two.
///
/// # Safety
///
/// As for [`pagebreak_heap_malloc`].
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heap_aligned_alloc(
    heap: *mut c_void,
    align: usize,
    size: usize,
) -> *mut c_void {
    if !align.is_power_of_two() {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = libc::EINVAL };
        return ptr::null_mut();
    }
    // SAFETY: caller's contract.
    nomem(unsafe { inst::ALLOC.malloc_aligned(heap.cast::<Heap>(), size, align, false) })
}

/// `pagebreak_heap_realloc`.
///
/// # Safety
///
/// As for [`pagebreak_heap_malloc`]; `p` is null or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heap_realloc(
    heap: *mut c_void,
    p: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: caller's contract.
    nomem(unsafe { inst::ALLOC.realloc(heap.cast::<Heap>(), p.cast(), size, 16) })
}

/// `pagebreak_heap_free`.
///
/// # Safety
///
/// As for [`pagebreak_heap_malloc`]; `p` is null or a block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heap_free(heap: *mut c_void, p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { inst::ALLOC.free(heap.cast::<Heap>(), p.cast()) }
}

/// `pagebreak_heapmap_write`: write a heap picture to `path`.
///
/// # Safety
///
/// `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_heapmap_write(path: *const c_char) -> c_int {
    crate::heapmap::write_to(&inst::ALLOC, inst::BACKEND, path)
}

/// `pagebreak_version`.
#[no_mangle]
pub extern "C" fn pagebreak_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// `pagebreak_profile_dump`: write a heap profile to `path` (NULL: `PAGEBREAK_PROFILE_PATH`,
/// or `pagebreak-<pid>.prof`). Returns 0, or -1 with errno set (EINVAL when profiling is off).
///
/// # Safety
///
/// `path` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pagebreak_profile_dump(path: *const c_char) -> c_int {
    inst::init();
    crate::profile::write_dump(path, "request")
}
