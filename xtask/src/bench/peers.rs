//! The allocators pagebreak is measured against, built from what crates.io serves.
//!
//! `libmimalloc-sys` carries mimalloc's 2.x and 3.x sources, `snmalloc-sys` snmalloc's.
//! The crates link them statically into Rust programs (the micro-benchmarks and the Rust
//! workload use them that way); for preloading into C, C++ and Python programs this module
//! compiles the same sources into shared libraries under `target/pagebreak-bench/peers/`,
//! with the flags the projects' own CMake builds use for their shared, malloc-overriding
//! library. Needs only `cc` and `g++` (C++20), no cmake.

use crate::cmd;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A crate's version as the workspace's Cargo.lock pins it.
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("name = \"{name}\"") {
            let v = lines.next()?.trim();
            return Some(
                v.strip_prefix("version = \"")?
                    .strip_suffix('"')?
                    .to_string(),
            );
        }
    }
    None
}

/// `MI_MALLOC_VERSION 30302` in mimalloc.h as "3.3.2".
pub fn mimalloc_version(header: &str) -> Option<String> {
    let n: u32 = header.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("#define MI_MALLOC_VERSION")?;
        rest.split_whitespace().next()?.parse().ok()
    })?;
    Some(format!("{}.{}.{}", n / 10000, n / 100 % 100, n % 100))
}

/// The source directory of a registry crate the workspace depends on (cargo unpacks it
/// under `$CARGO_HOME/registry/src/<index>/<name>-<version>/`); `cargo fetch` first when
/// it is not there yet.
pub fn crate_source(name: &str) -> Result<(String, PathBuf), String> {
    let root = cmd::root();
    let lock_path = root.join("Cargo.lock");
    let lock =
        fs::read_to_string(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let version = locked_version(&lock, name)
        .ok_or_else(|| format!("{name} is not in Cargo.lock (alloc-bench depends on it)"))?;
    let find = || -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let src = home.join("registry").join("src");
        let mut dirs: Vec<PathBuf> = fs::read_dir(&src)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(format!("{name}-{version}")))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    if let Some(d) = find() {
        return Ok((version, d));
    }
    // Downloads and unpacks every crate of the lock file (one call, then all are there).
    cmd::run(cmd::cargo().args(["fetch", "--quiet"]))?;
    find().map(|d| (version.clone(), d)).ok_or_else(|| {
        format!("{name}-{version}: not found under $CARGO_HOME/registry/src after `cargo fetch`")
    })
}

/// A peer built for preloading.
pub struct Built {
    pub so: PathBuf,
    /// What it is, for the report: "mimalloc 3.3.2 (libmimalloc-sys 0.1.49's sources)".
    pub what: String,
}

/// The line of mimalloc: 2 or 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MiLine {
    V2,
    V3,
}

fn out_dir() -> PathBuf {
    cmd::root()
        .join("target")
        .join("pagebreak-bench")
        .join("peers")
}

/// Compiles `cmd` into `out` unless `out` already exists (the registry's sources of one
/// crate version never change, and the file name carries the version).
fn build_once(out: &Path, cmd: &mut Command) -> Result<(), String> {
    if out.is_file() {
        return Ok(());
    }
    fs::create_dir_all(out.parent().expect("peers dir")).map_err(|e| e.to_string())?;
    // Build under a temporary name, so an interrupted compile leaves no half library.
    let tmp = out.with_extension("so.tmp");
    cmd.arg("-o").arg(&tmp);
    cmd::run(cmd)?;
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
}

/// mimalloc of one line as `libmimalloc-<version>.so`, overriding malloc and operator new
/// (its CMake shared build: MI_SHARED_LIB, MI_MALLOC_OVERRIDE, initial-exec TLS, -O3).
pub fn mimalloc(line: MiLine) -> Result<Built, String> {
    let (crate_version, dir) = crate_source("libmimalloc-sys")?;
    let src = dir.join("c_src").join("mimalloc").join(match line {
        MiLine::V2 => "v2",
        MiLine::V3 => "v3",
    });
    let header = src.join("include").join("mimalloc.h");
    let text = fs::read_to_string(&header).map_err(|e| format!("{}: {e}", header.display()))?;
    let version = mimalloc_version(&text)
        .ok_or_else(|| format!("{}: no MI_MALLOC_VERSION", header.display()))?;
    let so = out_dir().join(format!("libmimalloc-{version}.so"));
    let mut c = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    c.args([
        "-O3",
        "-fPIC",
        "-shared",
        "-pthread",
        "-fvisibility=hidden",
        "-ftls-model=initial-exec",
        "-fno-builtin-malloc",
        "-Wno-unknown-pragmas",
        "-DMI_SHARED_LIB",
        "-DMI_SHARED_LIB_EXPORT",
        "-DMI_MALLOC_OVERRIDE",
        "-DMI_BUILD_RELEASE",
        "-DNDEBUG",
    ])
    .arg("-I")
    .arg(src.join("include"))
    .arg(src.join("src").join("static.c"));
    build_once(&so, &mut c)?;
    Ok(Built {
        so,
        what: format!(
            "mimalloc {version}, built from the sources in libmimalloc-sys {crate_version}"
        ),
    })
}

/// snmalloc's `libsnmallocshim.so` (malloc.cc + new.cc, as its CMake target: C++20, -O3,
/// hidden visibility, initial-exec TLS, static libstdc++).
pub fn snmalloc() -> Result<Built, String> {
    snmalloc_variant(false)
}

/// The same for valgrind, which cannot reserve the 256 GiB of address space snmalloc's
/// pagemap takes ("Failed to initialise snmalloc."): built with snmalloc's own
/// SNMALLOC_QEMU_WORKAROUND, whose 128 KiB chunks shrink the pagemap to 32 GiB. The malloc
/// and free fast paths are the same code (a size-class table, a free-list pop or push).
pub fn snmalloc_for_valgrind() -> Result<Built, String> {
    snmalloc_variant(true)
}

fn snmalloc_variant(valgrind: bool) -> Result<Built, String> {
    let (crate_version, dir) = crate_source("snmalloc-sys")?;
    let up = dir.join("upstream");
    let commit = fs::read_to_string(dir.join(".cargo_vcs_info.json"))
        .ok()
        .and_then(|j| {
            let i = j.find("\"sha1\"")?;
            let rest = &j[i + 6..];
            let start = rest.find('"')? + 1;
            Some(rest[start..start + 9.min(rest.len() - start)].to_string())
        });
    let suffix = if valgrind { "-valgrind" } else { "" };
    let so = out_dir().join(format!("libsnmallocshim-{crate_version}{suffix}.so"));
    let over = up.join("src").join("snmalloc").join("override");
    let mut c = Command::new(std::env::var_os("CXX").unwrap_or_else(|| "g++".into()));
    c.args([
        "-std=c++20",
        "-O3",
        "-fPIC",
        "-shared",
        "-pthread",
        "-mcx16",
        "-fno-rtti",
        "-fomit-frame-pointer",
        "-ftls-model=initial-exec",
        "-ffunction-sections",
        "-fvisibility=hidden",
        "-DSNMALLOC_EXPORT=__attribute__((visibility(\"default\")))",
        "-DSNMALLOC_USE_CXX11_THREAD_ATEXIT_DIRECT",
        "-DSNMALLOC_CHECK_LOADS=false",
        "-DSNMALLOC_PAGEID=false",
        "-DSNMALLOC_USE_WAIT_ON_ADDRESS=1",
        "-DSNMALLOC_PLATFORM_HAS_GETENTROPY",
        "-DSNMALLOC_PTHREAD_ATFORK_WORKS",
        "-DSNMALLOC_HAS_LINUX_RANDOM_H",
        "-DSNMALLOC_HAS_LINUX_FUTEX_H",
        "-DNDEBUG",
        "-static-libstdc++",
        "-Wl,--no-undefined",
    ])
    .args(if valgrind {
        // x86-64's AAL defines SNMALLOC_VA_BITS_64 too, but after the size-class
        // configuration that the workaround keys on has been read.
        &[
            "-DSNMALLOC_QEMU_WORKAROUND",
            "-DSNMALLOC_VA_BITS_64",
            "-Wno-error",
        ][..]
    } else {
        &[]
    })
    .arg("-I")
    .arg(up.join("src"))
    .arg(over.join("malloc.cc"))
    .arg(over.join("new.cc"));
    build_once(&so, &mut c)?;
    let from = match commit {
        Some(c) => format!("snmalloc-sys {crate_version} (microsoft/snmalloc@{c})"),
        None => format!("snmalloc-sys {crate_version}"),
    };
    Ok(Built {
        so,
        what: format!("snmalloc, built from the sources in {from}"),
    })
}

/// How an allocator is brought into a workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Load {
    /// LD_PRELOAD this library.
    Preload(PathBuf),
    /// glibc: the program as it is.
    Native,
    /// Could not be built or found: every cell becomes this failure.
    Broken(String),
}

pub struct Allocator {
    pub name: String,
    pub load: Load,
    /// Its version and where it came from, for the report.
    pub what: String,
}

fn shown(p: &Path) -> String {
    let root = format!("{}/", cmd::root().display());
    let s = p.display().to_string();
    s.strip_prefix(&root).map(String::from).unwrap_or(s)
}

/// glibc, Debian's mimalloc and jemalloc when installed (skipped with a note when not),
/// and mimalloc 2.x, 3.x and snmalloc built from their crates' sources (a failed build
/// is reported in every cell, not fatal). Only those in `wanted`, when given.
pub fn find_allocators(wanted: Option<&Vec<String>>, notes: &mut Vec<String>) -> Vec<Allocator> {
    let want = |n: &str| wanted.is_none_or(|l| l.iter().any(|w| w == n));
    let mut v = Vec::new();
    if want("glibc") {
        let libc = debian_package(Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
            .or_else(|| debian_package(Path::new("/lib/aarch64-linux-gnu/libc.so.6")))
            .map_or_else(String::new, |p| format!(" (Debian {p})"));
        v.push(Allocator {
            name: "glibc".into(),
            load: Load::Native,
            what: format!("the system's malloc{libc}, no preload; Rust: `System`"),
        });
    }
    let debian = [
        (
            "mimalloc-deb",
            "ALLOC_BENCH_MIMALLOC",
            "libmimalloc.so",
            "libmimalloc2.0",
            "the System build preloaded with it (no crate carries this version)",
        ),
        (
            "jemalloc",
            "ALLOC_BENCH_JEMALLOC",
            "libjemalloc.so",
            "libjemalloc2",
            "",
        ),
    ];
    for (name, env, stem, pkg, rust) in debian {
        if !want(name) {
            continue;
        }
        match find_library(env, stem) {
            Some(p) => {
                let from = debian_package(&p).map_or_else(String::new, |d| format!("Debian {d}, "));
                let rust = if name == "jemalloc" {
                    let tikv = tikv_jemalloc_version().unwrap_or_else(|| "?".into());
                    format!(
                        "the `tikv-jemallocator` crate (jemalloc {tikv}), also in the micro-benchmarks"
                    )
                } else {
                    rust.to_string()
                };
                v.push(Allocator {
                    name: name.into(),
                    what: format!("{from}`LD_PRELOAD={}`; Rust: {rust}", shown(&p)),
                    load: Load::Preload(p),
                })
            }
            None => {
                let msg = format!(
                    "{name} skipped: no {stem}* found (apt-get install {pkg}, or set {env})"
                );
                eprintln!("bench: {msg}");
                notes.push(msg);
            }
        }
    }
    let mimalloc_crate = fs::read_to_string(cmd::root().join("Cargo.lock"))
        .ok()
        .and_then(|l| locked_version(&l, "mimalloc"))
        .unwrap_or_else(|| "?".into());
    for (name, line) in [("mimalloc-2", MiLine::V2), ("mimalloc-3", MiLine::V3)] {
        if !want(name) {
            continue;
        }
        let rust = match line {
            MiLine::V2 => format!("the `mimalloc` crate {mimalloc_crate} with feature `v2`"),
            MiLine::V3 => format!(
                "the `mimalloc` crate {mimalloc_crate} (default: 3.x), also in the micro-benchmarks"
            ),
        };
        v.push(built(name, mimalloc(line), &rust));
    }
    if want("snmalloc") {
        let rs = fs::read_to_string(cmd::root().join("Cargo.lock"))
            .ok()
            .and_then(|l| locked_version(&l, "snmalloc-rs"))
            .unwrap_or_else(|| "?".into());
        let rust = format!(
            "the `snmalloc-rs` crate {rs} (feature `build_cc`), also in the micro-benchmarks"
        );
        v.push(built("snmalloc", snmalloc(), &rust));
    }
    v
}

fn built(name: &str, b: Result<Built, String>, rust: &str) -> Allocator {
    match b {
        Ok(b) => Allocator {
            name: name.into(),
            what: format!("{}, `LD_PRELOAD={}`; Rust: {rust}", b.what, shown(&b.so)),
            load: Load::Preload(b.so),
        },
        Err(e) => {
            eprintln!("bench: {name}: build failed: {e}");
            Allocator {
                name: name.into(),
                load: Load::Broken(format!("build failed: {e}")),
                what: format!("not measured: build failed: {e}"),
            }
        }
    }
}

/// A system library by name prefix, or the one `env` names.
pub fn find_library(env: &str, stem: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/local/lib",
        "/usr/lib64",
        "/usr/lib",
    ];
    for d in dirs {
        let Ok(rd) = fs::read_dir(d) else { continue };
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(stem))
            })
            .collect();
        // The shortest name is the soname link (libmimalloc.so.2 over libmimalloc.so.2.0).
        found.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
        if let Some(p) = found.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// "package version" of the Debian package that installed `lib`, if dpkg knows it.
pub fn debian_package(lib: &Path) -> Option<String> {
    // dpkg knows a file by the path its package installed (/lib/... on merged-/usr
    // systems), which may be the given path or the one the links lead to.
    let real = fs::canonicalize(lib).ok()?;
    let out = [lib, real.as_path()].iter().find_map(|p| {
        let out = Command::new("dpkg-query").arg("-S").arg(p).output().ok()?;
        out.status.success().then_some(out)
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pkg = text.lines().next()?.split(':').next()?.trim().to_string();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", &pkg])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then(|| format!("{pkg} {version}"))
}

/// jemalloc's version as tikv-jemalloc-sys names it ("0.6.1+5.3.0-1-ge13ca99..." gives
/// "5.3.0-1-ge13ca99").
pub fn tikv_jemalloc_version() -> Option<String> {
    let lock = fs::read_to_string(cmd::root().join("Cargo.lock")).ok()?;
    let v = locked_version(&lock, "tikv-jemalloc-sys")?;
    let (_, upstream) = v.split_once('+')?;
    Some(match upstream.rsplit_once("-g") {
        Some((head, hash)) => format!("{head}-g{}", &hash[..hash.len().min(7)]),
        None => upstream.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions() {
        let lock =
            "[[package]]\nname = \"libmimalloc-sys\"\nversion = \"0.1.49\"\nsource = \"x\"\n\n\
                    [[package]]\nname = \"mimalloc\"\nversion = \"0.1.52\"\n";
        assert_eq!(locked_version(lock, "mimalloc").as_deref(), Some("0.1.52"));
        assert_eq!(
            locked_version(lock, "libmimalloc-sys").as_deref(),
            Some("0.1.49")
        );
        assert_eq!(locked_version(lock, "snmalloc-sys"), None);
        let h = "#define MI_MALLOC_H\n#define MI_MALLOC_VERSION 30302   // major + 2 digits\n";
        assert_eq!(mimalloc_version(h).as_deref(), Some("3.3.2"));
        assert_eq!(
            mimalloc_version("#define MI_MALLOC_VERSION 20302").as_deref(),
            Some("2.3.2")
        );
        assert_eq!(mimalloc_version("nothing"), None);
    }
}
