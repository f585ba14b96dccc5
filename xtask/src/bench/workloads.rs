//! The whole-program workloads: what each runs, and how it is started under each allocator.

use super::peers::{Allocator, Load};
use crate::cmd;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A macro workload: a C or C++ program from alloc-bench/workloads, the Python script, or
/// the Rust program.
pub struct Workload {
    pub name: &'static str,
    pub what: &'static str,
    pub program: Program,
    /// Arguments of a full run (about 1-5 s each on glibc on a 2-core VM) and a quick one.
    /// `{threads}` stands for 4 threads per core (the oversubscribed rows).
    pub full: &'static [&'static str],
    pub quick: &'static [&'static str],
}

pub enum Program {
    C(&'static str),
    Cxx(&'static str),
    Python(&'static str),
    /// alloc-bench/rust-workload, built once per allocator crate.
    Rust,
}

/// Threads per core in the oversubscribed rows: more runnable threads than CPUs, so
/// threads are preempted inside the allocator and heaps change hands.
const OVERSUBSCRIBE: usize = 4;

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson",
        what: "server threads replace random blocks (16-512 B), hand some to the next thread, and retire to fresh threads",
        program: Program::C("larson"),
        full: &["12000", "4"],
        quick: &["2000", "4"],
    },
    Workload {
        name: "xmalloc",
        what: "2 producer threads allocate (16-256 B), 2 consumer threads free",
        program: Program::C("xmalloc"),
        full: &["20000", "2", "2"],
        quick: &["4000", "2", "2"],
    },
    Workload {
        name: "cache-scratch",
        what: "threads free a block from the main thread, then allocate and write 8-byte objects (false sharing)",
        program: Program::C("cache_scratch"),
        full: &["10000"],
        quick: &["4000"],
    },
    Workload {
        name: "binary-trees",
        what: "complete binary trees of 16-byte nodes built and dropped, one long-lived (1 thread)",
        program: Program::C("binary_trees"),
        full: &["19"],
        quick: &["17"],
    },
    Workload {
        name: "large",
        what: "2 threads replace blocks of 64 KiB-8 MiB and write every page",
        program: Program::C("large"),
        full: &["12000", "2"],
        quick: &["2000", "2"],
    },
    Workload {
        name: "realloc",
        what: "2 threads grow 1000 strings each by small appends (exact-size realloc), shrink or drop them",
        program: Program::C("realloc"),
        full: &["4000", "2"],
        quick: &["800", "2"],
    },
    Workload {
        name: "python",
        what: "CPython with PYTHONMALLOC=malloc: dicts, JSON, strings, sorting",
        program: Program::Python("py_alloc.py"),
        full: &["10"],
        quick: &["2"],
    },
    Workload {
        name: "rust",
        what: "a Rust program through #[global_allocator] (each allocator's crate): 3 threads build, query and replace HashMap/BTreeMap/Vec<String> records (a few hundred MB), pass serde_json text around the ring and check every record",
        program: Program::Rust,
        full: &["80000", "3", "2"],
        quick: &["50000", "3", "1"],
    },
    Workload {
        name: "cpp",
        what: "a C++ program (g++): std::string documents indexed in unordered_map/map, edited, and shared_ptr messages passed between 3 threads and checked",
        program: Program::Cxx("cpp_objects"),
        full: &["60", "3"],
        quick: &["10", "3"],
    },
    Workload {
        name: "larson-oversub",
        what: "larson with 4 threads per core (same total work)",
        program: Program::C("larson"),
        full: &["6000", "{threads}"],
        quick: &["1000", "{threads}"],
    },
    Workload {
        name: "xmalloc-oversub",
        what: "xmalloc with 2 producers and 2 consumers per core (4 threads per core, same total work)",
        program: Program::C("xmalloc"),
        full: &["20000", "{half}", "{half}"],
        quick: &["4000", "{half}", "{half}"],
    },
    Workload {
        name: "cache-scratch-oversub",
        what: "cache-scratch with 4 threads per core (a quarter of the iterations each)",
        program: Program::C("cache_scratch"),
        full: &["2500", "{threads}"],
        quick: &["1000", "{threads}"],
    },
];

/// A workload's arguments with `{threads}` (4 per core) and `{half}` (half as many) filled in.
pub fn workload_args(args: &[&str], cores: usize) -> Vec<String> {
    let threads = (OVERSUBSCRIBE * cores).max(2);
    args.iter()
        .map(|a| match *a {
            "{threads}" => threads.to_string(),
            "{half}" => (threads / 2).to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// How one workload starts under one allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub argv: Vec<String>,
    /// LD_PRELOAD.
    pub preload: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

/// rust-workload's cargo feature for an allocator with a Rust crate; glibc is `System`,
/// the build without features. Debian's mimalloc has no crate of its own version.
pub fn rust_feature(allocator: &str) -> Option<Option<&'static str>> {
    Some(match allocator {
        "pagebreak-mmap" => Some("pagebreak-mmap"),
        "pagebreak-brk" => Some("pagebreak-brk"),
        "glibc" => None,
        "mimalloc-2" => Some("mimalloc-2"),
        "mimalloc-3" => Some("mimalloc-3"),
        "jemalloc" => Some("jemalloc"),
        "snmalloc" => Some("snmalloc"),
        _ => return None,
    })
}

/// The command line of `w` under each of `allocators` (an error where it cannot run
/// under that one), with its size arguments. An error for the whole workload when its
/// program cannot be had at all (no compiler, no python3).
pub fn prepare(
    root: &Path,
    bin: &Path,
    w: &Workload,
    allocators: &[Allocator],
    args: &[String],
) -> Result<Vec<Result<Invocation, String>>, String> {
    let preloaded =
        |argv: Vec<String>, env: Vec<(String, String)>| -> Vec<Result<Invocation, String>> {
            allocators
                .iter()
                .map(|a| match &a.load {
                    Load::Preload(so) => Ok(Invocation {
                        argv: argv.clone(),
                        preload: Some(so.clone()),
                        env: env.clone(),
                    }),
                    Load::Native => Ok(Invocation {
                        argv: argv.clone(),
                        preload: None,
                        env: env.clone(),
                    }),
                    Load::Broken(e) => Err(e.clone()),
                })
                .collect()
        };
    let with_args = |mut v: Vec<String>| {
        v.extend(args.iter().cloned());
        v
    };
    match w.program {
        Program::C(stem) => Ok(preloaded(
            with_args(vec![compile(root, bin, stem, Lang::C)?
                .display()
                .to_string()]),
            vec![],
        )),
        Program::Cxx(stem) => Ok(preloaded(
            with_args(vec![compile(root, bin, stem, Lang::Cxx)?
                .display()
                .to_string()]),
            vec![],
        )),
        Program::Python(script) => {
            let py = find_python().ok_or("no python3 found")?;
            let script = root.join("alloc-bench").join("workloads").join(script);
            Ok(preloaded(
                with_args(vec![py.display().to_string(), script.display().to_string()]),
                vec![("PYTHONMALLOC".into(), "malloc".into())],
            ))
        }
        Program::Rust => {
            // The System build runs glibc, and any allocator without a crate preloaded.
            let system = build_rust_workload(bin, "glibc", None)?;
            Ok(allocators
                .iter()
                .map(|a| {
                    let own = match rust_feature(&a.name) {
                        Some(Some(feature)) => {
                            Some(build_rust_workload(bin, &a.name, Some(feature))?)
                        }
                        Some(None) => Some(system.clone()),
                        None => None,
                    };
                    match (own, &a.load) {
                        (Some(exe), _) => Ok(Invocation {
                            argv: with_args(vec![exe.display().to_string()]),
                            preload: None,
                            env: vec![],
                        }),
                        (None, Load::Preload(so)) => Ok(Invocation {
                            argv: with_args(vec![system.display().to_string()]),
                            preload: Some(so.clone()),
                            env: vec![],
                        }),
                        (None, Load::Native) => Err("no Rust build".to_string()),
                        (None, Load::Broken(e)) => Err(e.clone()),
                    }
                })
                .collect())
        }
    }
}

/// Builds alloc-bench/rust-workload with one allocator feature (None: `System`) and copies
/// the binary to `bin/rust-workload-<allocator>`. Cargo keeps each feature set's build, so
/// after the first run this is a few seconds.
fn build_rust_workload(
    bin: &Path,
    allocator: &str,
    feature: Option<&str>,
) -> Result<PathBuf, String> {
    eprintln!("bench: building rust-workload for {allocator}");
    let mut c = cmd::cargo();
    c.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "rust-workload",
        "--no-default-features",
    ]);
    if let Some(f) = feature {
        c.args(["--features", f]);
    }
    cmd::run(&mut c).map_err(|e| format!("build failed: {e}"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::root().join("target"));
    let built = target.join("release").join("rust-workload");
    fs::create_dir_all(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let out = bin.join(format!("rust-workload-{allocator}"));
    fs::copy(&built, &out).map_err(|e| format!("{} to {}: {e}", built.display(), out.display()))?;
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cxx,
}

/// Compiles `alloc-bench/workloads/<stem>.c` (or `.cc`) into `bin`, when the source is newer.
pub fn compile(root: &Path, bin: &Path, stem: &str, lang: Lang) -> Result<PathBuf, String> {
    let dir = root.join("alloc-bench").join("workloads");
    let src = dir.join(match lang {
        Lang::C => format!("{stem}.c"),
        Lang::Cxx => format!("{stem}.cc"),
    });
    let out = bin.join(stem);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_src = [src.clone(), dir.join("common.h")]
        .iter()
        .filter_map(|p| mtime(p))
        .max();
    if mtime(&out).is_some_and(|o| newest_src.is_some_and(|s| o >= s)) {
        return Ok(out);
    }
    fs::create_dir_all(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut c = match lang {
        Lang::C => Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into())),
        Lang::Cxx => {
            let mut c = Command::new(std::env::var_os("CXX").unwrap_or_else(|| "g++".into()));
            c.arg("-std=c++17");
            c
        }
    };
    c.args(["-O2", "-pthread", "-o"]).arg(&out).arg(&src);
    cmd::run(&mut c)?;
    Ok(out)
}

/// The real interpreter, not a shim script (pyenv's would be timed and preloaded too).
fn find_python() -> Option<PathBuf> {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).is_file() {
            return Some(p.into());
        }
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && p.is_file()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_source_exists() {
        let dir = cmd::root().join("alloc-bench").join("workloads");
        for w in WORKLOADS {
            let f = match w.program {
                Program::C(stem) => dir.join(format!("{stem}.c")),
                Program::Cxx(stem) => dir.join(format!("{stem}.cc")),
                Program::Python(s) => dir.join(s),
                Program::Rust => cmd::root().join("alloc-bench/rust-workload/src/main.rs"),
            };
            assert!(f.is_file(), "{}", f.display());
            assert!(
                !w.full.is_empty() && w.full.len() == w.quick.len(),
                "{}",
                w.name
            );
        }
        assert!(dir.join("runner.c").is_file());
        let mut names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKLOADS.len(), "workload names are unique");
    }

    #[test]
    fn oversubscribed_rows_get_four_threads_per_core() {
        assert_eq!(workload_args(&["1000", "{threads}"], 2), ["1000", "8"]);
        assert_eq!(
            workload_args(&["4000", "{half}", "{half}"], 2),
            ["4000", "4", "4"]
        );
        assert_eq!(workload_args(&["12", "{threads}"], 1), ["12", "4"]);
        let over = WORKLOADS.iter().filter(|w| w.name.ends_with("-oversub"));
        for w in over {
            assert!(
                w.full.iter().chain(w.quick).any(|a| a.starts_with('{')),
                "{} has a {{threads}} or {{half}} argument (a thread count from the core count)",
                w.name
            );
        }
    }

    fn alloc(name: &str, load: Load) -> Allocator {
        Allocator {
            name: name.into(),
            load,
            what: String::new(),
        }
    }

    #[test]
    fn preloaded_programs_get_each_library() {
        let bin = std::env::temp_dir().join(format!("xtask-bench-prep-{}", std::process::id()));
        let w = Workload {
            name: "python",
            what: "",
            program: Program::Python("py_alloc.py"),
            full: &["1"],
            quick: &["1"],
        };
        let allocators = [
            alloc("glibc", Load::Native),
            alloc(
                "mimalloc-deb",
                Load::Preload("/lib/libmimalloc.so.2".into()),
            ),
            alloc("snmalloc", Load::Broken("build failed".into())),
        ];
        let Ok(inv) = prepare(&cmd::root(), &bin, &w, &allocators, &["3".into()]) else {
            return; // no python3 here: nothing to check
        };
        let ok = inv[0].as_ref().unwrap();
        assert_eq!(ok.preload, None);
        assert_eq!(ok.argv.last().map(String::as_str), Some("3"));
        assert_eq!(ok.env, [("PYTHONMALLOC".to_string(), "malloc".to_string())]);
        let pre = inv[1].as_ref().unwrap();
        assert_eq!(
            pre.preload.as_deref(),
            Some(Path::new("/lib/libmimalloc.so.2"))
        );
        assert_eq!(inv[2], Err("build failed".to_string()));
    }

    #[test]
    fn every_allocator_but_debians_mimalloc_has_a_rust_build() {
        for a in super::super::ALL_ALLOCATORS {
            assert_eq!(rust_feature(a).is_none(), a == "mimalloc-deb", "{a}");
        }
        let manifest =
            fs::read_to_string(cmd::root().join("alloc-bench/rust-workload/Cargo.toml")).unwrap();
        for f in super::super::ALL_ALLOCATORS
            .iter()
            .filter_map(|a| rust_feature(a).flatten())
        {
            assert!(
                manifest.contains(&format!("\n{f} = [")),
                "feature {f} in Cargo.toml"
            );
        }
    }
}
