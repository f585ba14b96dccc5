//! The limits tests in tests/limits: address-space limits, RSS after frees, the number of
//! mappings. Each is a C program run with the library preloaded (and the environment of its
//! `// env:` line), expected to exit 0.

use crate::build;
use crate::cmd;
use crate::ctests::{self, CTest};
use crate::misuse;
use crate::test::{Stop, Tally};
use std::path::{Path, PathBuf};

fn limits_dir() -> PathBuf {
    cmd::root().join("tests").join("limits")
}

/// Compiles every `tests/limits/*.c` into `bins` as `limits-<name>`; sorted by name.
pub fn compile_all(bins: &Path) -> Result<Vec<CTest>, String> {
    std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let dir = limits_dir();
    let srcs = ctests::c_sources(&dir, "limits tests")?;
    let mut tests = Vec::new();
    for src in srcs {
        tests.push(ctests::compile_one(&src, bins, "limits")?);
    }
    Ok(tests)
}

/// Compiles the tests as one counted check; an empty list if that failed.
pub fn compile(t: &mut Tally, bins: &Path) -> Result<Vec<CTest>, Stop> {
    let mut tests = Vec::new();
    t.check("compile tests/limits/*.c", || {
        tests = compile_all(bins)?;
        Ok(())
    })?;
    Ok(tests)
}

/// Runs every test under one backend's library (None: glibc), one counted check each.
pub fn check_all(
    t: &mut Tally,
    tests: &[CTest],
    so: Option<&Path>,
    backend: &str,
) -> Result<(), Stop> {
    t.heading(&format!("limits, {backend} backend"));
    for test in tests {
        t.check(&format!("limits {} ({backend})", test.name), || {
            ctests::run(test, so)
        })?;
    }
    Ok(())
}

/// `cargo xtask limits [--backend mmap|brk|glibc] [--keep-going] [NAME...]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let (backend, keep_going, names) = misuse::parse_args(args, true)?;
    let so = match backend {
        Some(b) => Some(build::build(b, true, false)?.so),
        None => None,
    };
    let mut tests = compile_all(&ctests::bin_dir())?;
    if !names.is_empty() {
        tests.retain(|t| names.contains(&t.name));
        if tests.is_empty() {
            return Err(format!("no limits test named {names:?}"));
        }
    }
    let mut t = Tally::new(keep_going);
    let label = backend.map_or("glibc", |b| b.name());
    let stopped = check_all(&mut t, &tests, so.as_deref(), label).is_err();
    t.finish(stopped)
}
