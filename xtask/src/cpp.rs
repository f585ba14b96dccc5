//! The C++ tests in tests/cpp, compiled with `g++` and run with each backend three ways:
//! preloaded (LD_PRELOAD), linked with `-lpagebreak`, and linked with `libpagebreak.a`.
//! Each program checks its malloc comes from where the way says, then exercises operator
//! new/delete in all its forms, out-of-memory semantics and STL containers across threads.

use crate::build::{self, Backend, Built};
use crate::cmd;
use crate::ctests;
use crate::misuse;
use crate::test::{Stop, Tally};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags for every C++ test. `-fno-allocation-dce`: GCC may otherwise delete a new/delete
/// pair whose block is unused, and the test would not reach the allocator.
const CXXFLAGS: &[&str] = &[
    "-std=c++17",
    "-O1",
    "-g",
    "-pthread",
    "-fno-builtin",
    "-fno-allocation-dce",
    "-Wall",
    "-Wextra",
];

/// A C++ test: its build for preloading (the same for every backend) and its object for
/// linking with pagebreak (linked per backend and way; compiling is the slow part).
pub struct CppTest {
    pub name: String,
    preload_bin: PathBuf,
    linked_obj: PathBuf,
}

/// How a test program gets pagebreak; the program's argument names it.
#[derive(Clone, Copy)]
enum Way {
    Preload,
    Dynamic,
    Static,
}

impl Way {
    const ALL: [Way; 3] = [Way::Preload, Way::Dynamic, Way::Static];

    fn arg(self) -> &'static str {
        match self {
            Way::Preload => "preload",
            Way::Dynamic => "dynamic",
            Way::Static => "static",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Way::Preload => "LD_PRELOAD",
            Way::Dynamic => "-lpagebreak",
            Way::Static => "libpagebreak.a",
        }
    }
}

fn tests_dir() -> PathBuf {
    cmd::root().join("tests").join("cpp")
}

/// Runs `g++` with [`CXXFLAGS`] and the include paths, `-o out`, then `args`.
fn cxx(out: &Path, args: &[&str]) -> Result<(), String> {
    let mut c = Command::new("g++");
    c.args(CXXFLAGS)
        .arg("-I")
        .arg(tests_dir())
        .arg("-I")
        .arg(cmd::root().join("alloc-ffi").join("include"))
        .arg("-o")
        .arg(out)
        .args(args);
    cmd::run(&mut c).map_err(|e| format!("{e} (is g++ installed? apt-get install g++)"))
}

fn utf8(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}

/// The `*.cpp` files of tests/cpp, each compiled for preloading into `bins` as
/// `cpp-<name>` and for linking as `cpp-<name>-linked.o`; sorted by name.
pub fn compile_all(bins: &Path) -> Result<Vec<CppTest>, String> {
    std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let dir = tests_dir();
    let mut srcs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    srcs.sort();
    if srcs.is_empty() {
        return Err(format!("no C++ tests in {}", dir.display()));
    }
    let mut tests = Vec::new();
    for src in srcs {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        let preload_bin = bins.join(format!("cpp-{name}"));
        cxx(&preload_bin, &[utf8(&src)?, "-ldl"])?;
        let linked_obj = bins.join(format!("cpp-{name}-linked.o"));
        cxx(&linked_obj, &["-DPAGEBREAK_LINKED", "-c", utf8(&src)?])?;
        tests.push(CppTest {
            name,
            preload_bin,
            linked_obj,
        });
    }
    Ok(tests)
}

/// Compiles the tests as one counted check; an empty list if that failed.
pub fn compile(t: &mut Tally, bins: &Path) -> Result<Vec<CppTest>, Stop> {
    let mut tests = Vec::new();
    t.check("compile tests/cpp/*.cpp (g++)", || {
        tests = compile_all(bins)?;
        Ok(())
    })?;
    Ok(tests)
}

/// Links `test` the way `way` needs against `built` (linked ways only) and runs it.
fn run_one(
    test: &CppTest,
    way: Way,
    built: &Built,
    backend: Backend,
    bins: &Path,
) -> Result<(), String> {
    let bin = match way {
        Way::Preload => test.preload_bin.clone(),
        Way::Dynamic => {
            let bin = bins.join(format!("cpp-{}-dynamic-{}", test.name, backend.name()));
            let dir = utf8(built.so.parent().unwrap())?;
            let rpath = format!("-Wl,-rpath,{dir}");
            let obj = utf8(&test.linked_obj)?;
            cxx(&bin, &[obj, "-L", dir, "-lpagebreak", &rpath, "-ldl"])?;
            bin
        }
        Way::Static => {
            let bin = bins.join(format!("cpp-{}-static-{}", test.name, backend.name()));
            let mut args = vec![utf8(&test.linked_obj)?, utf8(&built.a)?];
            args.extend_from_slice(ctests::STATIC_LIBS);
            cxx(&bin, &args)?;
            bin
        }
    };
    let preload = matches!(way, Way::Preload).then_some(built.so.as_path());
    ctests::run_bin(&bin, &[way.arg()], preload)
}

/// Runs every test every way under one backend's library, one counted check each.
pub fn check_all(
    t: &mut Tally,
    tests: &[CppTest],
    built: &Built,
    backend: Backend,
    bins: &Path,
) -> Result<(), Stop> {
    t.heading(&format!("C++ tests, {} backend", backend.name()));
    for test in tests {
        for way in Way::ALL {
            t.check(
                &format!("C++ {} ({}, {})", test.name, way.label(), backend.name()),
                || run_one(test, way, built, backend, bins),
            )?;
        }
    }
    Ok(())
}

/// `cargo xtask cpp [--backend mmap|brk|glibc] [--keep-going] [NAME...]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let (backend, keep_going, names) = misuse::parse_args(args, true)?;
    let bins = ctests::bin_dir();
    let mut tests = compile_all(&bins)?;
    if !names.is_empty() {
        tests.retain(|t| names.contains(&t.name));
        if tests.is_empty() {
            return Err(format!("no C++ test named {names:?}"));
        }
    }
    let mut t = Tally::new(keep_going);
    let stopped = match backend {
        Some(b) => {
            let built = build::build(b, true, false)?;
            check_all(&mut t, &tests, &built, b, &bins).is_err()
        }
        None => {
            // Without pagebreak: checks the tests themselves on glibc's malloc.
            let mut stopped = false;
            for test in &tests {
                let r = t.check(&format!("C++ {} (glibc)", test.name), || {
                    ctests::run_bin(&test.preload_bin, &["glibc"], None)
                });
                if r.is_err() {
                    stopped = true;
                    break;
                }
            }
            stopped
        }
    };
    t.finish(stopped)
}
