//! Builds and runs the C fixture (fixtures/three_sites.c with fixtures/libthree.c): a PIE
//! program and a shared library that write a dump of their own, with real addresses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The line of the source file holding `marker` (1-based).
pub fn line_of(file: &str, marker: &str) -> u32 {
    let src = std::fs::read_to_string(fixture_dir().join(file)).unwrap();
    let i = src
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not in {file}"));
    i as u32 + 1
}

fn cc(args: &[&str]) {
    let status = Command::new("cc")
        .args(args)
        .status()
        .expect("cannot run cc (a C compiler is needed: .ci/run installs build-essential)");
    assert!(status.success(), "cc {args:?} failed");
}

/// Compiles the fixture once per test binary into its own directory; returns the program.
pub fn program() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("three-sites-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = fixture_dir();
        let lib = dir.join("libthree.so");
        let exe = dir.join("three_sites");
        // -O1 with frame pointers: optimised like real code, calls kept (noinline).
        let flags = ["-g", "-O1", "-fno-omit-frame-pointer"];
        let mut a: Vec<&str> = flags.to_vec();
        let lib_src = src.join("libthree.c");
        a.extend([
            "-fPIC",
            "-shared",
            "-o",
            lib.to_str().unwrap(),
            lib_src.to_str().unwrap(),
        ]);
        cc(&a);
        let exe_src = src.join("three_sites.c");
        let rpath = format!("-Wl,-rpath,{}", dir.display());
        let libdir = format!("-L{}", dir.display());
        let mut a: Vec<&str> = flags.to_vec();
        // -rdynamic: libthree.so calls the program's pagebreak_fixture_malloc.
        a.extend([
            "-rdynamic",
            "-o",
            exe.to_str().unwrap(),
            exe_src.to_str().unwrap(),
            &libdir,
            "-lthree",
            &rpath,
        ]);
        cc(&a);
        exe
    })
}

/// Runs the fixture; returns the dump it wrote, read back as text.
pub fn dump(name: &str) -> (PathBuf, String) {
    let exe = program();
    let out = exe.with_file_name(format!("{name}.prof"));
    let status = Command::new(exe).arg(&out).status().unwrap();
    assert!(status.success(), "{} failed", exe.display());
    let text = std::fs::read_to_string(&out).unwrap();
    (out, text)
}
