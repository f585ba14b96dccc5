//! The C allocation API, with glibc's semantics and errno values. Every entry point glibc
//! exports that takes or returns a heap pointer is here: a missing one would let glibc's
//! version be handed our pointers.

use core::ffi::{c_int, c_void};
use core::ptr;

use alloc_core::Call;

use crate::selected as inst;

#[inline(always)]
fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

#[inline(always)]
fn fail_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc(3)`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    let p = inst::malloc_fast(size);
    if !p.is_null() {
        return p.cast();
    }
    // A tail call: the fast path needs no stack frame for the slow path's errno.
    malloc_slow(size)
}

#[cold]
#[inline(never)]
fn malloc_slow(size: usize) -> *mut c_void {
    fail_enomem(inst::malloc_cold(size, false))
}

/// `free(3)`: null is ignored; errno is preserved.
///
/// # Safety
///
/// `p` is null or came from this allocator; misuse is reported and aborts.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { inst::free(p.cast()) }
}

/// `calloc(3)`: NULL with ENOMEM when `count * size` overflows.
#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        Some(total) => fail_enomem(inst::zalloc(total)),
        None => fail_enomem(ptr::null_mut()),
    }
}

/// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns
/// NULL (glibc's behaviour); on failure NULL with ENOMEM and `p` untouched.
///
/// # Safety
///
/// `p` is null or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if !p.is_null() && size == 0 {
        // SAFETY: forwarded contract.
        unsafe { inst::free_as(p.cast(), Call::Realloc) };
        return ptr::null_mut();
    }
    // SAFETY: forwarded contract.
    fail_enomem(unsafe { inst::realloc(p.cast(), size, 16) })
}

/// `reallocarray(3)`: `realloc` with an overflow check on `count * size`.
///
/// # Safety
///
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { realloc(p, total) },
        None => fail_enomem(ptr::null_mut()),
    }
}

/// Aligned allocation shared by the memalign family; `align` is a power of two.
fn aligned(align: usize, size: usize) -> *mut u8 {
    inst::malloc_aligned(size, align.max(16), false)
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power of two multiple of
/// `sizeof(void *)`; ENOMEM when out of memory. `*out` is written only on success.
///
/// # Safety
///
/// `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let p = aligned(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller's contract.
    unsafe { *out = p.cast() };
    0
}

/// `aligned_alloc(3)` (C11): NULL with EINVAL unless `align` is a power of two (glibc 2.38).
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    fail_enomem(aligned(align, size))
}

/// `memalign(3)`: a non-power-of-two alignment is rounded up to one (as glibc does); one past
/// the largest power of two gives EINVAL.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(1).checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    fail_enomem(aligned(align, size))
}

/// `valloc(3)`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    fail_enomem(aligned(inst::page_size(), size))
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages (at least one).
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = inst::page_size();
    match size.max(1).checked_add(page - 1) {
        Some(n) => fail_enomem(aligned(page, n & !(page - 1))),
        None => fail_enomem(ptr::null_mut()),
    }
}

/// `malloc_usable_size(3)`: 0 for NULL.
///
/// # Safety
///
/// `p` is null or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded contract.
    unsafe { inst::usable_size(p.cast()) }
}

/// `free_sized` (C23).
///
/// # Safety
///
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { inst::free(p.cast()) }
}

/// `free_aligned_sized` (C23).
///
/// # Safety
///
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { inst::free(p.cast()) }
}

/// `malloc_trim(3)`: return free memory to the OS now; 1 if any was released.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    inst::trim() as c_int
}

/// `malloc_stats(3)`: the statistics table on stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    crate::print_stats(&inst::stats(), inst::BACKEND);
}

/// `cfree`: an old alias of `free` some programs still call.
///
/// # Safety
///
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { inst::free(p.cast()) }
}

// glibc's own code may call the `__libc_` names directly.

/// `__libc_malloc`: see [`malloc`].
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}
/// `__libc_free`: see [`free`].
///
/// # Safety
///
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { free(p) }
}
/// `__libc_calloc`: see [`calloc`].
#[no_mangle]
pub extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut c_void {
    calloc(count, size)
}
/// `__libc_realloc`: see [`realloc`].
///
/// # Safety
///
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { realloc(p, size) }
}
/// `__libc_memalign`: see [`memalign`].
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}
/// `__libc_valloc`: see [`valloc`].
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}
/// `__libc_pvalloc`: see [`pvalloc`].
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}
