//! The aarch64 Linux tests on an x86-64 host: cross-built with Debian's `aarch64-linux-gnu-gcc`
//! and run under qemu-user (`qemu-aarch64 -L /usr/aarch64-linux-gnu`), at 4, 16 and 64 KiB
//! pages (`qemu-aarch64 -p`, what ARM servers' kernels use): the core's tests (4 KiB: the core
//! makes no OS call, its model test covers larger pages itself), the OS crates' tests, and the
//! C tests in tests/c with libpagebreak.so preloaded (mmap at every page size, brk at 16 and
//! 64 KiB). Three C tests do not run there (see [`NOT_UNDER_QEMU`]).
//!
//! qemu-user runs the guest's threads on the host with x86's memory order, so this checks
//! aarch64 code generation, the TLS slot, system call use and page sizes, not weak memory
//! ordering.

use crate::build::{self, Backend};
use crate::cmd;
use crate::ctests::{self, CTest};
use crate::test::{Stop, Tally};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const TARGET: &str = "aarch64-unknown-linux-gnu";
const QEMU: &str = "qemu-aarch64";
const LINKER: &str = "aarch64-linux-gnu-gcc";
/// The aarch64 C library and dynamic loader (Debian's libc6-dev-arm64-cross).
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const LINKER_VAR: &str = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER";
const RUNNER_VAR: &str = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER";

/// The page sizes of aarch64 Linux kernels.
pub const PAGES: [usize; 3] = [4 << 10, 16 << 10, 64 << 10];

/// One C test's limit under emulation (tests/c/malloc.c takes about 15 s here).
const TIMEOUT: Duration = Duration::from_secs(600);

/// Crates whose tests touch the OS's pages: run at every page size. The brk backend's are
/// linked `-no-pie` (see [`NO_PIE`]).
const OS_CRATES: &[&str] = &[
    "pagebreak-os-glue",
    "pagebreak-backend-mmap",
    "pagebreak-backend-brk",
];

/// qemu-user (7.2) loads a position-independent program just below the loader and lets its
/// break grow by 32 MiB only (then brk fails, like a 32 MiB RLIMIT_DATA); a program linked
/// `-no-pie` sits low and its break grows by gigabytes. The brk backend needs the latter.
const NO_PIE: &str = "-no-pie";

/// C tests that measure qemu rather than pagebreak, and why they are skipped.
const NOT_UNDER_QEMU: &[(&str, &str)] = &[
    (
        "thread_churn",
        "qemu-user does not return the stacks of exited threads, so RSS after thread churn \
         grows with qemu's leak (1 GB after 2,800 threads), not pagebreak's",
    ),
    (
        "rlimit",
        "qemu-user ignores the guest's RLIMIT_DATA and RLIMIT_AS (they would limit qemu itself)",
    ),
];

/// tests/c/options.c re-executes itself: the kernel can start an aarch64 program only
/// through binfmt_misc.
fn can_reexec() -> bool {
    Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
}

/// Why the aarch64 tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if cfg!(target_arch = "aarch64") {
        return Some("the host is aarch64: the tests above already ran natively".into());
    }
    let runs = |prog: &str, arg: &str| {
        Command::new(prog)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing = Vec::new();
    if !runs(QEMU, "--version") {
        missing.push("qemu-aarch64 (Debian: qemu-user)");
    }
    if !runs(LINKER, "--version") {
        missing.push("aarch64-linux-gnu-gcc (Debian: gcc-aarch64-linux-gnu)");
    }
    if !Path::new(SYSROOT).join("lib").join("libc.so.6").exists() {
        missing.push("/usr/aarch64-linux-gnu/lib/libc.so.6 (Debian: libc6-dev-arm64-cross)");
    }
    if !rust_target_installed() {
        missing
            .push("Rust's aarch64 standard library (rustup target add aarch64-unknown-linux-gnu)");
    }
    (!missing.is_empty()).then(|| format!("aarch64 tests need {}", missing.join(", ")))
}

/// Whether the toolchain running xtask has the aarch64 standard library.
fn rust_target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
    else {
        return false;
    };
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    std::fs::read_dir(dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
    })
}

/// `qemu-aarch64 -L SYSROOT -p PAGE`, the prefix of every emulated run.
fn qemu(page: usize) -> Vec<String> {
    vec![
        QEMU.into(),
        "-L".into(),
        SYSROOT.into(),
        "-p".into(),
        page.to_string(),
    ]
}

/// Cargo for the aarch64 target: the cross linker (unless one is set) and qemu as the runner.
fn cargo(page: usize) -> Command {
    let mut c = cmd::cargo();
    if std::env::var_os(LINKER_VAR).is_none() {
        c.env(LINKER_VAR, LINKER);
    }
    c.env(RUNNER_VAR, qemu(page).join(" "));
    c
}

/// `cargo test` of [`OS_CRATES`] linked [`NO_PIE`], in a target directory of their own (the
/// flag changes every crate's fingerprint).
fn test_os_crates(page: usize) -> Result<(), String> {
    let mut c = cargo(page);
    c.env("RUSTFLAGS", format!("-C link-arg={NO_PIE}"))
        .arg("test");
    for krate in OS_CRATES {
        c.args(["-p", krate]);
    }
    c.args(["--target", TARGET, "--target-dir"])
        .arg(cmd::root().join("target").join("aarch64-no-pie"));
    cmd::run(&mut c)
}

/// Where the cross-compiled C tests go.
fn bin_dir() -> PathBuf {
    cmd::root()
        .join("target")
        .join("pagebreak-tests")
        .join("aarch64")
}

/// libpagebreak.so for aarch64 with `backend`, in the backend's target directory.
fn build_so(backend: Backend) -> Result<PathBuf, String> {
    let dir = build::target_dir(backend);
    let mut c = cargo(PAGES[0]);
    c.args([
        "build",
        "-p",
        "pagebreak-malloc",
        "--release",
        "--target",
        TARGET,
    ])
    .arg("--target-dir")
    .arg(&dir)
    .args(["--no-default-features", "--features"])
    .arg(format!("{},c-api", backend.name()));
    cmd::run(&mut c)?;
    let so = dir.join(TARGET).join("release").join("libpagebreak.so");
    if !so.is_file() {
        return Err(format!("cargo succeeded but {} is missing", so.display()));
    }
    Ok(so)
}

/// Compiles tests/c/*.c with the cross compiler; sorted by name.
fn compile_c_tests(bins: &Path) -> Result<Vec<CTest>, String> {
    std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let dir = ctests::tests_dir();
    let mut tests = Vec::new();
    for src in ctests::c_sources(&dir, "C tests")? {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let env = ctests::env_header(&text).map_err(|e| format!("{}: {e}", src.display()))?;
        let bin = bins.join(format!("c-{name}"));
        let mut c = Command::new(LINKER);
        c.args(ctests::CFLAGS)
            .arg("-I")
            .arg(&dir)
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .args(["-ldl", NO_PIE]);
        cmd::run(&mut c)?;
        tests.push(CTest { name, bin, env });
    }
    Ok(tests)
}

/// The page size an aarch64 program sees under `qemu-aarch64 -p page` (a qemu that ignores
/// `-p` would test 4 KiB pages three times).
fn guest_page_size(page: usize, bins: &Path) -> Result<usize, String> {
    let src = bins.join("page_size.c");
    let bin = bins.join("page_size");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(void) { printf(\"%ld\\n\", sysconf(_SC_PAGESIZE)); return 0; }\n",
    )
    .map_err(|e| format!("{}: {e}", src.display()))?;
    cmd::run(Command::new(LINKER).arg("-o").arg(&bin).arg(&src))?;
    let argv = qemu(page);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .arg(&bin)
        .output()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("{QEMU} -p {page}: the probe printed nothing usable"))
}

/// Runs one cross-compiled C test under qemu with `so` preloaded (in the guest only).
fn run_c_test(test: &CTest, so: &Path, page: usize) -> Result<(), String> {
    let argv = qemu(page);
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .arg("-E")
        .arg(format!("LD_PRELOAD={}", so.display()));
    // The test's `// env:` settings, for the guest (qemu passes its own environment on).
    for (k, v) in &test.env {
        c.arg("-E").arg(format!("{k}={v}"));
    }
    c.arg(&test.bin).env_remove("LD_PRELOAD");
    let r = cmd::capture(&mut c, TIMEOUT)?;
    if r.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            r.outcome(),
            cmd::tail(&[r.stdout.as_slice(), r.stderr.as_slice()].concat(), 20)
        ))
    }
}

/// The page sizes this qemu emulates; skips the others with a reason.
fn usable_pages(t: &mut Tally, bins: &Path) -> Result<Vec<usize>, Stop> {
    let mut pages = Vec::new();
    for page in PAGES {
        let mut seen = 0;
        t.check(&format!("{QEMU} -p {page}: the guest's page size"), || {
            std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
            seen = guest_page_size(page, bins)?;
            Ok(())
        })?;
        if seen == page {
            pages.push(page);
        } else if seen != 0 {
            t.skip(&format!(
                "aarch64 tests at {} KiB pages: this {QEMU} shows {seen}-byte pages for -p {page}",
                page >> 10
            ));
        }
    }
    Ok(pages)
}

/// Every aarch64 check, counted in `t`. Skipped with a reason when the tools are missing (an
/// error when `CI` is set).
pub fn all(t: &mut Tally) -> Result<(), Stop> {
    if let Some(why) = unavailable() {
        if std::env::var_os("CI").is_some() && !cfg!(target_arch = "aarch64") {
            return t.check("aarch64 tools", || {
                Err(format!("{why}; CI is set, so this is an error"))
            });
        }
        t.skip(&why);
        return Ok(());
    }
    let bins = bin_dir();
    let pages = usable_pages(t, &bins)?;

    t.check(
        &format!("cargo test -p pagebreak-core --target {TARGET} (qemu, 4 KiB pages)"),
        || cmd::run(cargo(PAGES[0]).args(["test", "-p", "pagebreak-core", "--target", TARGET])),
    )?;
    for &page in &pages {
        t.check(
            &format!(
                "cargo test (OS crates) --target {TARGET} (qemu, {} KiB pages)",
                page >> 10
            ),
            || test_os_crates(page),
        )?;
    }

    let mut tests = Vec::new();
    t.check(&format!("compile tests/c/*.c with {LINKER}"), || {
        tests = compile_c_tests(&bins)?;
        Ok(())
    })?;
    for backend in Backend::ALL {
        let name = backend.name();
        let mut so = None;
        t.check(&format!("build libpagebreak.so ({name}, {TARGET})"), || {
            so = Some(build_so(backend)?);
            Ok(())
        })?;
        let Some(so) = so else { continue };
        for &page in &pages {
            // brk at 4 KiB pages adds nothing to mmap at 4 KiB (aarch64 code) and brk on
            // x86-64 (4 KiB breaks); about a minute of CI saved.
            if backend == Backend::Brk && page == PAGES[0] {
                continue;
            }
            for test in &tests {
                if let Some((_, why)) = NOT_UNDER_QEMU.iter().find(|(n, _)| *n == test.name) {
                    if page == PAGES[0] && backend == Backend::Mmap {
                        t.skip(&format!("{} under qemu: {why}", test.name));
                    }
                    continue;
                }
                if test.name == "options" && !can_reexec() {
                    if page == PAGES[0] && backend == Backend::Mmap {
                        t.skip(
                            "options under qemu: it re-executes itself, and this kernel cannot \
                             start an aarch64 program without qemu (no binfmt_misc entry)",
                        );
                    }
                    continue;
                }
                t.check(
                    &format!("{} (aarch64, {name}, {} KiB pages)", test.name, page >> 10),
                    || run_c_test(test, &so, page),
                )?;
            }
        }
    }
    Ok(())
}

/// `cargo xtask aarch64 [--keep-going]`: only the aarch64 tests.
pub fn main(args: &[String]) -> Result<(), String> {
    crate::test::run_suite("aarch64", args, all)
}
