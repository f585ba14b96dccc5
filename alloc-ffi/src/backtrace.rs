//! Stack capture without allocating: `_Unwind_Backtrace` from libgcc_s (which Rust's
//! standard library links already). glibc's `backtrace()` would `dlopen` libgcc_s on first
//! use, which allocates. libgcc finds unwind tables with glibc's `_dl_find_object` (no lock,
//! no allocation) on glibc 2.35 and later.

use core::ffi::{c_int, c_void};

#[allow(non_camel_case_types)]
type _Unwind_Reason_Code = c_int;
const URC_NO_REASON: _Unwind_Reason_Code = 0;
const URC_END_OF_STACK: _Unwind_Reason_Code = 5;

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(ctx: *mut c_void, arg: *mut c_void) -> _Unwind_Reason_Code,
        arg: *mut c_void,
    ) -> _Unwind_Reason_Code;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

struct Frames<'a> {
    out: &'a mut [usize],
    len: usize,
}

extern "C" fn one_frame(ctx: *mut c_void, arg: *mut c_void) -> _Unwind_Reason_Code {
    // SAFETY: `arg` is the `Frames` that `capture` passed, alive for the whole walk.
    let frames = unsafe { &mut *arg.cast::<Frames>() };
    if frames.len == frames.out.len() {
        return URC_END_OF_STACK;
    }
    // SAFETY: `ctx` is the unwinder's context for this frame.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return URC_END_OF_STACK;
    }
    frames.out[frames.len] = ip;
    frames.len += 1;
    URC_NO_REASON
}

/// Fill `out` with the calling thread's return addresses, innermost first (this function's
/// caller's frame first); returns how many were written.
#[inline(never)]
pub(crate) fn capture(out: &mut [usize]) -> usize {
    let mut frames = Frames { out, len: 0 };
    // SAFETY: the callback only writes into `frames`, which outlives the call.
    unsafe { _Unwind_Backtrace(one_frame, (&mut frames as *mut Frames).cast()) };
    frames.len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn inner(out: &mut [usize]) -> usize {
        capture(out)
    }

    #[test]
    fn captures_the_callers() {
        let mut out = [0usize; 16];
        let n = inner(&mut out);
        assert!(n >= 3, "{n} frames");
        let here = captures_the_callers as *const () as usize;
        // One of the first frames returns into this test function (within 4 KiB of its
        // start: the test is small).
        assert!(
            out[..n].iter().any(|&ip| ip > here && ip - here < 4096),
            "{:x?} vs {here:#x}",
            &out[..n]
        );
        let mut two = [0usize; 2];
        assert_eq!(inner(&mut two), 2);
    }
}
