//! One allocator instance per backend: the static [`Allocator`], the thread-local heap pointer
//! each thread starts with (an empty heap, so the first use registers nothing), the
//! `pthread_key` whose destructor retires a thread's heap, and the `fork` handlers.
//!
//! A macro stamps this out per backend so both can live in one process (the benchmarks
//! compare them side by side); the C API uses one of them.

/// Define module `$name` holding an allocator over `$source`.
macro_rules! define_instance {
    ($name:ident, $source:ty, $init:expr, $backend:literal, $configure:ident) => {
        #[doc = concat!("The allocator instance over the ", $backend, " backend.")]
        pub mod $name {
            use core::ffi::c_void;
            use core::ptr;
            use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

            use alloc_core::{Allocator, Call, Heap, EmptyHeap, Stats};

            use crate::options::Options;

            /// The allocator.
            pub static ALLOC: Allocator<$source> = Allocator::new($init);
            static EMPTY_HEAP: EmptyHeap = EmptyHeap::new();

            // The thread's heap pointer. On x86-64 and aarch64 Linux it is a TLS slot defined
            // in assembly and read with the initial-exec model (x86-64: one %fs-relative load;
            // aarch64: a GOT load and a tpidr_el0-relative load), like mimalloc's preload
            // build: Rust's `thread_local!` in a cdylib compiles to the general-dynamic model,
            // a `__tls_get_addr` call (x86-64, about 12% of a malloc/free-heavy run) or a TLS
            // descriptor call (aarch64, `blr` to the resolver) on every malloc and free. The
            // slot starts out pointing at the empty heap, so first use registers nothing and
            // allocates nothing. (`%progbits`/`%object`: `@` starts a comment on aarch64.)
            #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_os = "linux"))]
            mod slot {
                use alloc_core::Heap;

                core::arch::global_asm!(
                    ".pushsection .tdata,\"awT\",%progbits",
                    ".balign 8",
                    concat!(".globl pagebreak_heap_", $backend),
                    concat!(".hidden pagebreak_heap_", $backend),
                    concat!(".type pagebreak_heap_", $backend, ",%object"),
                    concat!(".size pagebreak_heap_", $backend, ", 8"),
                    concat!("pagebreak_heap_", $backend, ":"),
                    ".quad {empty_heap}",
                    ".popsection",
                    empty_heap = sym super::EMPTY_HEAP,
                );

                #[cfg(target_arch = "x86_64")]
                #[inline(always)]
                pub(super) fn get() -> *mut Heap {
                    let heap: *mut Heap;
                    // SAFETY: reads this thread's slot (defined above, 8 bytes, initialised).
                    unsafe {
                        core::arch::asm!(
                            concat!("movq pagebreak_heap_", $backend, "@GOTTPOFF(%rip), {h}"),
                            "movq %fs:({h}), {h}",
                            h = out(reg) heap,
                            options(att_syntax, nostack, preserves_flags, readonly, pure)
                        );
                    }
                    heap
                }

                #[cfg(target_arch = "x86_64")]
                #[inline(always)]
                pub(super) fn set(heap: *mut Heap) {
                    // SAFETY: writes this thread's slot.
                    unsafe {
                        core::arch::asm!(
                            concat!("movq pagebreak_heap_", $backend, "@GOTTPOFF(%rip), {t}"),
                            "movq {h}, %fs:({t})",
                            t = out(reg) _,
                            h = in(reg) heap,
                            options(att_syntax, nostack, preserves_flags)
                        );
                    }
                }

                // aarch64 initial-exec: the slot's offset from the thread pointer sits in the
                // GOT (R_AARCH64_TLS_TPREL64, resolved once at load time).
                #[cfg(target_arch = "aarch64")]
                #[inline(always)]
                pub(super) fn get() -> *mut Heap {
                    let heap: *mut Heap;
                    // SAFETY: reads this thread's slot (defined above, 8 bytes, initialised).
                    unsafe {
                        core::arch::asm!(
                            concat!("adrp {h}, :gottprel:pagebreak_heap_", $backend),
                            concat!("ldr {h}, [{h}, #:gottprel_lo12:pagebreak_heap_", $backend, "]"),
                            "mrs {tp}, tpidr_el0",
                            "ldr {h}, [{tp}, {h}]",
                            h = out(reg) heap,
                            tp = out(reg) _,
                            options(nostack, preserves_flags, readonly, pure)
                        );
                    }
                    heap
                }

                #[cfg(target_arch = "aarch64")]
                #[inline(always)]
                pub(super) fn set(heap: *mut Heap) {
                    // SAFETY: writes this thread's slot.
                    unsafe {
                        core::arch::asm!(
                            concat!("adrp {t}, :gottprel:pagebreak_heap_", $backend),
                            concat!("ldr {t}, [{t}, #:gottprel_lo12:pagebreak_heap_", $backend, "]"),
                            "mrs {tp}, tpidr_el0",
                            "str {h}, [{tp}, {t}]",
                            t = out(reg) _,
                            tp = out(reg) _,
                            h = in(reg) heap,
                            options(nostack, preserves_flags)
                        );
                    }
                }
            }

            #[cfg(not(all(
                any(target_arch = "x86_64", target_arch = "aarch64"),
                target_os = "linux"
            )))]
            mod slot {
                use alloc_core::Heap;
                use core::cell::Cell;

                thread_local! {
                    static HEAP: Cell<*mut Heap> = const { Cell::new(super::EMPTY_HEAP.as_ptr()) };
                }

                #[inline(always)]
                pub(super) fn get() -> *mut Heap {
                    HEAP.with(|h| h.get())
                }

                #[inline(always)]
                pub(super) fn set(heap: *mut Heap) {
                    HEAP.with(|h| h.set(heap))
                }
            }

            const UNINIT: u8 = 0;
            const BUSY: u8 = 1;
            const READY: u8 = 2;
            static STATE: AtomicU8 = AtomicU8::new(UNINIT);
            static KEY: AtomicU32 = AtomicU32::new(0);
            static mut OPTIONS: Options = Options::DEFAULT;
            /// What the core calls for sampled allocations: heap profiles (and guarded
            /// blocks, when that sampling is on).
            static SAMPLE_HOOKS: alloc_core::SampleHooks = alloc_core::SampleHooks {
                record: crate::profile::record,
                forget: crate::profile::forget,
                guarded: Some(guarded_hook),
            };

            /// The core's `guarded` hook: a sampled allocation on guarded pages, or null
            /// (pool full, request not eligible) for a normal block.
            fn guarded_hook(size: usize, align: usize, zero: bool) -> *mut u8 {
                // SAFETY: a plain allocation request of this instance.
                unsafe { ALLOC.guarded_alloc(size, align, zero) }
            }

            /// The backend's name.
            pub const BACKEND: &str = $backend;

            /// The calling thread's heap (the empty heap before its first allocation).
            #[inline(always)]
            pub fn heap() -> *mut Heap {
                slot::get()
            }

            /// The page size of the source (the kernel's): `valloc` and `pvalloc` align to it.
            pub fn page_size() -> usize {
                alloc_core::PageSource::page_size(ALLOC.source())
            }

            /// The options read at start-up.
            pub fn options() -> Options {
                init();
                // SAFETY: written once by `init` before STATE becomes READY, read-only after.
                unsafe { ptr::addr_of!(OPTIONS).read() }
            }

            /// One-time set-up: options, the misuse reporter, the thread-exit key, fork
            /// handlers. Re-entrant calls (set-up itself may allocate) see BUSY and go on
            /// without waiting.
            #[cold]
            pub fn init() {
                if STATE.load(Ordering::Acquire) == READY {
                    return;
                }
                if STATE
                    .compare_exchange(UNINIT, BUSY, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return;
                }
                let options = Options::from_environ();
                // SAFETY: only this thread writes, once, before publishing READY.
                unsafe { ptr::addr_of_mut!(OPTIONS).write(options) };
                ALLOC.set_purge_delay_ms(options.purge_delay_ms);
                ALLOC.set_purge_delay_max_ms(options.purge_delay_max_ms);
                crate::$configure(ALLOC.source(), &options);
                // Sampling: set up before the first heap, which reads it.
                let mut sampling = false;
                if options.profile_interval != 0
                    && crate::profile::start(
                        options.profile_interval,
                        options.profile_path,
                        options.profile_signal,
                    )
                {
                    ALLOC.set_profile_interval(options.profile_interval);
                    sampling = true;
                }
                if options.guarded != 0 && crate::guarded::enable(&ALLOC, &options) {
                    ALLOC.set_guard_every(options.guarded);
                    sampling = true;
                }
                if sampling {
                    ALLOC.set_sample_hooks(&SAMPLE_HOOKS);
                }
                alloc_core::checks::set_misuse_handler(crate::report::abort_on_misuse);
                let mut key: libc::pthread_key_t = 0;
                // SAFETY: plain libc calls with valid arguments.
                unsafe {
                    if libc::pthread_key_create(&mut key, Some(thread_exit)) == 0 {
                        KEY.store(key + 1, Ordering::Release);
                    }
                    libc::pthread_atfork(
                        Some(before_fork),
                        Some(after_fork_parent),
                        Some(after_fork_child),
                    );
                }
                if options.verbose {
                    options.print(BACKEND);
                }
                if options.show_stats {
                    // SAFETY: registering a plain extern "C" function.
                    unsafe { libc::atexit(print_stats_at_exit) };
                }
                if !options.heapmap.is_null() {
                    crate::heapmap::install_signal_handler();
                    // SAFETY: registering a plain extern "C" function.
                    unsafe { libc::atexit(write_heapmap) };
                }
                STATE.store(READY, Ordering::Release);
            }

            /// Write the heap picture to `PAGEBREAK_HEAPMAP` (at exit, and after SIGUSR2).
            extern "C" fn write_heapmap() {
                let path = options().heapmap;
                if !path.is_null() {
                    crate::heapmap::write_to(&ALLOC, BACKEND, path);
                }
            }

            extern "C" fn print_stats_at_exit() {
                crate::print_stats(&stats(), BACKEND);
            }

            extern "C" fn before_fork() {
                ALLOC.before_fork();
            }
            extern "C" fn after_fork_parent() {
                // SAFETY: paired with before_fork, in the parent.
                unsafe { ALLOC.after_fork_parent() };
            }
            extern "C" fn after_fork_child() {
                // SAFETY: paired with before_fork, in the child.
                unsafe { ALLOC.after_fork_child() };
                crate::profile::after_fork_child();
            }

            /// Thread exit: park the heap for the next new thread (or retire it); later frees on
            /// this thread take the remote path.
            extern "C" fn thread_exit(heap: *mut c_void) {
                slot::set(EMPTY_HEAP.as_ptr());
                if !heap.is_null() {
                    // SAFETY: `heap` is this thread's heap, registered by `bind_heap`, and the
                    // thread-local no longer points to it.
                    unsafe { ALLOC.park_heap(heap.cast()) };
                }
            }

            /// The calling thread's heap, creating and binding it on first use.
            #[cold]
            #[inline(never)]
            fn bind_heap() -> *mut Heap {
                init();
                let heap = ALLOC.new_heap();
                if heap.is_null() {
                    return heap;
                }
                // Bind before pthread_setspecific: it may calloc, which must find this heap.
                slot::set(heap);
                let key = KEY.load(Ordering::Acquire);
                if key != 0 {
                    // SAFETY: the key was created by init; the value is our heap.
                    unsafe { libc::pthread_setspecific(key - 1, heap.cast()) };
                }
                heap
            }

            #[inline(always)]
            fn live_heap() -> *mut Heap {
                let heap = heap();
                // SAFETY: the thread-local always points at a heap or the empty heap.
                if unsafe { (*heap).is_live() } {
                    heap
                } else {
                    bind_heap()
                }
            }

            /// The malloc fast path alone: null when [`malloc_cold`] must answer.
            #[inline(always)]
            pub fn malloc_fast(size: usize) -> *mut u8 {
                // SAFETY: the heap is this thread's.
                unsafe { Allocator::<$source>::malloc_fast(heap(), size) }
            }

            /// `malloc`: `size` bytes, 16-byte aligned; null when out of memory.
            #[inline(always)]
            pub fn malloc(size: usize) -> *mut u8 {
                // SAFETY: the heap is this thread's.
                let p = unsafe { Allocator::<$source>::malloc_fast(heap(), size) };
                if !p.is_null() {
                    return p;
                }
                malloc_cold(size, false)
            }

            /// The slow path of [`malloc`] (and of [`zalloc`] with `zero`): null when out of
            /// memory.
            #[cold]
            #[inline(never)]
            pub fn malloc_cold(size: usize, zero: bool) -> *mut u8 {
                if crate::heapmap::REQUESTED.load(Ordering::Relaxed)
                    && crate::heapmap::REQUESTED.swap(false, Ordering::Relaxed)
                {
                    write_heapmap();
                }
                let heap = live_heap();
                if heap.is_null() {
                    return heap.cast();
                }
                #[cfg(feature = "tracing")]
                let before = ALLOC.source_counters();
                // SAFETY: a live heap of this thread.
                let p = unsafe { ALLOC.malloc_slow(heap, size, zero) };
                #[cfg(feature = "tracing")]
                crate::trace::after_call(BACKEND, before, ALLOC.source_counters(), size, p.is_null());
                if p.is_null() {
                    crate::profile::on_oom();
                }
                p
            }

            /// `calloc` without the overflow check: `size` zeroed bytes.
            #[inline]
            pub fn zalloc(size: usize) -> *mut u8 {
                let heap = heap();
                // SAFETY: the heap is this thread's; the empty heap's fast path always misses.
                if unsafe { (*heap).is_live() } {
                    unsafe { ALLOC.zalloc(heap, size) }
                } else {
                    malloc_cold(size, true)
                }
            }

            /// `size` bytes aligned to `align` (a power of two), zeroed if `zero`.
            pub fn malloc_aligned(size: usize, align: usize, zero: bool) -> *mut u8 {
                let heap = live_heap();
                if heap.is_null() {
                    return heap.cast();
                }
                #[cfg(feature = "tracing")]
                let before = ALLOC.source_counters();
                // SAFETY: a live heap of this thread.
                let p = unsafe { ALLOC.malloc_aligned(heap, size, align, zero) };
                #[cfg(feature = "tracing")]
                crate::trace::after_call(BACKEND, before, ALLOC.source_counters(), size, p.is_null());
                if p.is_null() {
                    crate::profile::on_oom();
                }
                p
            }

            /// `free`; misuse is reported and aborts.
            ///
            /// # Safety
            ///
            /// `p` is null or a pointer this instance returned (misuse of such is detected).
            #[inline(always)]
            pub unsafe fn free(p: *mut u8) {
                // SAFETY: forwarded contract; the heap is this thread's (or the empty heap).
                unsafe { ALLOC.free(heap(), p) }
            }

            /// `realloc` keeping `align`; null when out of memory (then `p` is untouched).
            ///
            /// # Safety
            ///
            /// `p` is null or a live block of this instance allocated with `align`.
            pub unsafe fn realloc(p: *mut u8, size: usize, align: usize) -> *mut u8 {
                let heap = live_heap();
                if heap.is_null() {
                    return heap.cast();
                }
                #[cfg(feature = "tracing")]
                let before = ALLOC.source_counters();
                // SAFETY: forwarded contract.
                let q = unsafe { ALLOC.realloc(heap, p, size, align) };
                #[cfg(feature = "tracing")]
                crate::trace::after_call(BACKEND, before, ALLOC.source_counters(), size, q.is_null());
                if q.is_null() {
                    crate::profile::on_oom();
                }
                q
            }

            /// `malloc_usable_size`.
            ///
            /// # Safety
            ///
            /// `p` is null or a live block of this instance.
            pub unsafe fn usable_size(p: *mut u8) -> usize {
                // SAFETY: forwarded contract.
                unsafe { ALLOC.usable_size(p) }
            }

            /// Free `p`, naming `call` in a misuse report.
            ///
            /// # Safety
            ///
            /// As for [`free`].
            pub unsafe fn free_as(p: *mut u8, call: Call) {
                // SAFETY: forwarded contract.
                unsafe { ALLOC.free_as(heap(), p, call) }
            }

            /// `malloc_trim`: give back all free memory now.
            pub fn trim() -> bool {
                let heap = live_heap();
                // SAFETY: a live heap of this thread.
                !heap.is_null() && unsafe { ALLOC.trim(heap) }
            }

            /// The fault at `addr` if it lies in this instance's guarded pool.
            pub fn guarded_fault(addr: usize) -> Option<alloc_core::GuardedFault> {
                ALLOC.guarded_fault(addr)
            }

            /// The latest guarded block of the slot holding `addr`.
            pub fn guarded_block(addr: usize) -> Option<alloc_core::GuardedBlock> {
                ALLOC.guarded_block(addr)
            }

            /// Counters snapshot (the calling thread's counts brought up to date first).
            pub fn stats() -> Stats {
                // SAFETY: this thread's heap.
                unsafe { ALLOC.publish_counts(heap()) };
                ALLOC.stats()
            }
        }
    };
}

pub(crate) use define_instance;
