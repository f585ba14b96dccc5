//! The SIGSEGV/SIGBUS handler of guarded sampling, installed only when `PAGEBREAK_GUARDED`
//! is on (a handler installed behind a program's back can clash with runtimes that own
//! SIGSEGV: JVMs, Go).
//!
//! A fault in a guarded pool is reported (see [`guarded`](crate::guarded)) and aborts. Any
//! other fault goes to the handler the program had when we installed ours (a program that
//! installs its own later replaces ours and gets every fault directly): its `SA_SIGINFO`
//! handler with the same arguments, or its plain handler; with none (`SIG_DFL`), the default
//! action is restored and the faulting instruction runs again, so the process dies as it would
//! have without us (same signal, same core dump). `SA_ONSTACK`: on the thread's alternate
//! signal stack if it has one (Rust threads do, for stack overflows), else on the current one.

use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::guarded::{self, Access};

static INSTALLED: AtomicBool = AtomicBool::new(false);
static mut OLD_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();
static mut OLD_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();

/// Install the handler for SIGSEGV and SIGBUS (once), remembering the program's.
pub(crate) fn install() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: a zeroed sigaction is valid; the old actions are written by the kernel before
    // the handler can run (it is installed by the same call).
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(
            libc::SIGSEGV,
            &action,
            core::ptr::addr_of_mut!(OLD_SEGV).cast(),
        );
        libc::sigaction(
            libc::SIGBUS,
            &action,
            core::ptr::addr_of_mut!(OLD_BUS).cast(),
        );
    }
}

/// Read (bit 1 of the page-fault error code clear) or write, for a SIGSEGV on x86-64.
fn access_of(sig: c_int, ctx: *mut c_void) -> Access {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if sig == libc::SIGSEGV && !ctx.is_null() {
        // SAFETY: the kernel passes the interrupted context as the third argument.
        let err =
            unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_ERR as usize] };
        return if err & 2 != 0 {
            Access::Write
        } else {
            Access::Read
        };
    }
    let _ = (sig, ctx);
    Access::Unknown
}

fn pc_of(ctx: *mut c_void) -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if !ctx.is_null() {
        // SAFETY: as in access_of.
        return unsafe {
            (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RIP as usize]
        } as usize;
    }
    let _ = ctx;
    0
}

extern "C" fn on_fault(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (addr, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    // A fault the kernel raised (si_code > 0), not a kill() that merely looks like one.
    if code > 0 {
        if let Some(fault) = guarded::fault_at(addr) {
            guarded::report_fault(&fault, access_of(sig, ctx), pc_of(ctx));
        }
    }
    // SAFETY: `install` wrote both before installing this handler.
    let old = unsafe {
        if sig == libc::SIGBUS {
            (*core::ptr::addr_of!(OLD_BUS)).assume_init_ref()
        } else {
            (*core::ptr::addr_of!(OLD_SEGV)).assume_init_ref()
        }
    };
    chain(sig, info, ctx, old, code > 0);
}

/// Hand the signal to the program's previous disposition.
fn chain(
    sig: c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut c_void,
    old: &libc::sigaction,
    from_kernel: bool,
) {
    let handler = old.sa_sigaction;
    if handler == libc::SIG_DFL || (handler == libc::SIG_IGN && from_kernel) {
        // As if we were never here: the default action (a fault cannot be ignored: the
        // kernel would kill the process too). Returning re-runs the faulting instruction; a
        // signal sent with kill() is raised again.
        // SAFETY: plain libc calls with a valid zeroed action.
        unsafe {
            let mut dfl: libc::sigaction = core::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut dfl.sa_mask);
            libc::sigaction(sig, &dfl, core::ptr::null_mut());
            if !from_kernel {
                libc::raise(sig);
            }
        }
        return;
    }
    if handler == libc::SIG_IGN {
        return;
    }
    if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this three-argument handler for `sig`.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { core::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the program installed this one-argument handler for `sig`.
        let f: extern "C" fn(c_int) = unsafe { core::mem::transmute(handler) };
        f(sig);
    }
}
