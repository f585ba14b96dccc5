//! The fast path, counted: instructions per malloc and per free, measured with callgrind
//! (exact and repeatable, unlike time on a shared machine) and checked against a golden file,
//! as tcmalloc does, so a change that slows the fast path fails loudly.
//!
//! Each count is (Ir(N2) - Ir(N1)) / (N2 - N1) with callgrind collecting only inside
//! `malloc` or only inside `free`: set-up and warm-up cancel out exactly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench::peers::{self, MiLine};
use crate::build::{self, Backend};
use crate::cmd;

const N1: u64 = 10_000;
const N2: u64 = 30_000;
/// Instructions a count may exceed its golden value by before the check fails (compiler
/// updates move code by an instruction or two).
const SLACK: u64 = 2;

fn golden_path() -> PathBuf {
    cmd::root().join("tests/fastpath/golden.txt")
}

fn compile() -> Result<PathBuf, String> {
    let root = cmd::root();
    let out = root.join("target/pagebreak-tests/bin/fastpath-pairs");
    std::fs::create_dir_all(out.parent().unwrap()).map_err(|e| e.to_string())?;
    cmd::run(
        Command::new("cc")
            .args(["-O2", "-fno-builtin", "-o"])
            .arg(&out)
            .arg(root.join("tests/fastpath/pairs.c")),
    )?;
    Ok(out)
}

/// Instructions collected inside `functions` for one run of the workload with `n` pairs.
fn collected(
    bin: &Path,
    preload: Option<&Path>,
    functions: &[&str],
    n: u64,
) -> Result<u64, String> {
    let out = std::env::temp_dir().join(format!("pagebreak-callgrind-{}-{n}", std::process::id()));
    let mut c = Command::new("valgrind");
    c.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()));
    for f in functions {
        c.arg(format!("--toggle-collect={f}"));
    }
    c.arg(bin).arg(n.to_string());
    if let Some(lib) = preload {
        c.env("LD_PRELOAD", lib);
    }
    let run = cmd::capture(&mut c, std::time::Duration::from_secs(300))?;
    if !run.success() {
        return Err(format!(
            "callgrind failed: {}\n{}",
            run.outcome(),
            run.stderr_tail(20)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    // callgrind writes `summary: <Ir>` (or `totals:`) with the collected instruction count.
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no summary line in callgrind output".to_string())
}

/// Instructions per call of the functions, by differencing two run lengths.
pub fn per_call(bin: &Path, preload: Option<&Path>, functions: &[&str]) -> Result<f64, String> {
    let a = collected(bin, preload, functions, N1)?;
    let b = collected(bin, preload, functions, N2)?;
    Ok(b.saturating_sub(a) as f64 / (N2 - N1) as f64)
}

/// Both counts for the library `preload` (None: glibc).
pub fn measure(preload: Option<&Path>) -> Result<(f64, f64), String> {
    let bin = compile()?;
    let malloc = per_call(&bin, preload, &["malloc"])?;
    // glibc and pagebreak both export `free`; pagebreak's shares its address with `cfree`,
    // which valgrind may name instead.
    let free = per_call(&bin, preload, &["free", "cfree"])?;
    Ok((malloc, free))
}

/// One allocator's counts (malloc, free), or why there are none.
struct Counted {
    name: String,
    counts: Result<(f64, f64), String>,
    remark: &'static str,
}

/// The counts side by side: `| allocator | malloc | free | |` in markdown.
fn table(rows: &[Counted]) -> String {
    let mut out = String::from("| allocator | malloc | free | |\n| :-- | --: | --: | :-- |\n");
    for Counted {
        name,
        counts,
        remark,
    } in rows
    {
        match counts {
            Ok((m, f)) => out += &format!("| {name} | {m:.1} | {f:.1} | {remark} |\n"),
            Err(e) => out += &format!("| {name} | - | - | not counted: {e} |\n"),
        }
    }
    out
}

fn read_golden() -> Result<(u64, u64), String> {
    let text = std::fs::read_to_string(golden_path()).map_err(|e| e.to_string())?;
    let get = |key: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .ok_or_else(|| format!("golden file lacks `{key}`"))
    };
    Ok((get("malloc ")?, get("free ")?))
}

fn write_golden(malloc: u64, free: u64) -> Result<(), String> {
    let text = std::fs::read_to_string(golden_path()).map_err(|e| e.to_string())?;
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(String::from)
        .collect();
    out.push(format!("malloc {malloc}"));
    out.push(format!("free {free}"));
    std::fs::write(golden_path(), out.join("\n") + "\n").map_err(|e| e.to_string())
}

/// The check `cargo xtask test` runs: the mmap build's counts against the golden file.
pub fn check(so: &Path) -> Result<(), String> {
    let (malloc, free) = measure(Some(so))?;
    let (g_malloc, g_free) = read_golden()?;
    println!("    fast path: malloc {malloc:.1} (golden {g_malloc}), free {free:.1} (golden {g_free}) instructions");
    let mut bad = Vec::new();
    for (name, got, want) in [("malloc", malloc, g_malloc), ("free", free, g_free)] {
        if got.round() as u64 > want + SLACK {
            bad.push(format!(
                "{name}: {got:.1} instructions, golden {want} (+{SLACK} allowed)"
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the fast path got slower: {}\n(if intended, run `cargo xtask fastpath --update` and commit tests/fastpath/golden.txt)",
            bad.join("; ")
        ))
    }
}

/// Another allocator to count: its library (None: glibc, nothing preloaded), or why
/// there is none.
struct Peer {
    name: &'static str,
    lib: Result<Option<PathBuf>, String>,
    remark: &'static str,
}

/// The other allocators, counted the same way: glibc, Debian's mimalloc and jemalloc when
/// installed, and mimalloc 2.x, 3.x and snmalloc built from their crates' sources.
fn others() -> Vec<Peer> {
    let mut v = vec![Peer {
        name: "glibc",
        lib: Ok(None),
        remark: "",
    }];
    for (name, env, stem) in [
        ("mimalloc-deb", "ALLOC_BENCH_MIMALLOC", "libmimalloc.so"),
        ("jemalloc", "ALLOC_BENCH_JEMALLOC", "libjemalloc.so"),
    ] {
        let lib = peers::find_library(env, stem)
            .map(Some)
            .ok_or_else(|| format!("no {stem}* installed"));
        v.push(Peer {
            name,
            lib,
            remark: "Debian's",
        });
    }
    for (name, line) in [("mimalloc-2", MiLine::V2), ("mimalloc-3", MiLine::V3)] {
        v.push(Peer {
            name,
            lib: peers::mimalloc(line).map(|b| Some(b.so)),
            remark: "",
        });
    }
    v.push(Peer {
        name: "snmalloc",
        lib: peers::snmalloc_for_valgrind().map(|b| Some(b.so)),
        remark: "built with SNMALLOC_QEMU_WORKAROUND (valgrind cannot reserve its pagemap)",
    });
    v
}

/// `cargo xtask fastpath [--update] [--no-peers] [--compare LIB.so ...]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let update = args.iter().any(|a| a == "--update");
    let built = build::build(Backend::Mmap, true, false)?;
    let (malloc, free) = measure(Some(&built.so))?;
    println!("pagebreak (mmap): malloc {malloc:.1}, free {free:.1} instructions per call");
    let mut rows = vec![Counted {
        name: "pagebreak-mmap".into(),
        counts: Ok((malloc, free)),
        remark: "",
    }];
    if !args.iter().any(|a| a == "--no-peers") {
        for p in others() {
            let counts = p.lib.and_then(|l| measure(l.as_deref()));
            if let Ok((m, f)) = &counts {
                println!(
                    "{}: malloc {m:.1}, free {f:.1} instructions per call",
                    p.name
                );
            }
            rows.push(Counted {
                name: p.name.into(),
                counts,
                remark: p.remark,
            });
        }
    }
    let mut rest = args
        .iter()
        .skip_while(|a| *a != "--compare")
        .skip(1)
        .filter(|a| !a.starts_with("--"));
    for lib in rest.by_ref() {
        let (m, f) = measure(Some(Path::new(lib)))?;
        println!("{lib}: malloc {m:.1}, free {f:.1} instructions per call");
        rows.push(Counted {
            name: lib.clone(),
            counts: Ok((m, f)),
            remark: "",
        });
    }
    println!("\n{}", table(&rows));
    if update {
        write_golden(malloc.round() as u64, free.round() as u64)?;
        println!("updated {}", golden_path().display());
        Ok(())
    } else {
        check(&built.so)
    }
}

#[cfg(test)]
mod tests {
    use super::Counted;

    #[test]
    fn the_table_lists_counts_and_reasons() {
        let row = |name: &str, counts, remark| Counted {
            name: name.into(),
            counts,
            remark,
        };
        let rows = [
            row("pagebreak-mmap", Ok((30.0, 59.04)), ""),
            row("snmalloc", Ok((16.0, 21.0)), "valgrind build"),
            row(
                "jemalloc",
                Err("no libjemalloc.so* installed".into()),
                "Debian's",
            ),
        ];
        let t = super::table(&rows);
        assert!(t.contains("| pagebreak-mmap | 30.0 | 59.0 |  |"), "{t}");
        assert!(
            t.contains("| snmalloc | 16.0 | 21.0 | valgrind build |"),
            "{t}"
        );
        assert!(
            t.contains("| jemalloc | - | - | not counted: no libjemalloc.so* installed |"),
            "{t}"
        );
    }
}
