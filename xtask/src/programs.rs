//! Real programs run with and without pagebreak; their output must be identical.
//! Also the README's commands: the quick start and the Rust example.

use crate::build::Backend;
use crate::cmd::{self, Captured};
use crate::ctests;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Lines in the generated input of `sort` (about 70 MB).
const SORT_LINES: u64 = 2_500_000;

pub struct Program {
    pub name: String,
    make: Box<dyn Fn() -> Command>,
    timeout: Duration,
}

fn work_dir() -> PathBuf {
    cmd::root().join("target").join("pagebreak-tests")
}

fn programs_dir() -> PathBuf {
    cmd::root().join("tests").join("programs")
}

fn sort_input() -> PathBuf {
    work_dir().join("sort-input.txt")
}

/// Compiles `tests/programs/*.c` into `bins` as `prog-<name>`.
pub fn compile(bins: &Path) -> Result<(), String> {
    fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let dir = programs_dir();
    for entry in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let src = entry.map_err(|e| e.to_string())?.path();
        if src.extension().is_some_and(|x| x == "c") {
            let name = src.file_stem().unwrap().to_string_lossy().into_owned();
            ctests::cc(&src, &bins.join(format!("prog-{name}")), &[])?;
        }
    }
    Ok(())
}

/// The real programs: python3, sort, and a multi-threaded C program.
pub fn all(bins: &Path) -> Vec<Program> {
    let script = programs_dir().join("alloc_heavy.py");
    let wc = bins.join("prog-mt_wordcount");
    let tmp = work_dir().join("sort-tmp");
    vec![
        Program {
            name: "python3 tests/programs/alloc_heavy.py".into(),
            make: Box::new(move || {
                let mut c = Command::new("python3");
                // Every object through malloc, not Python's own small-object arenas.
                c.arg(&script)
                    .env("PYTHONMALLOC", "malloc")
                    .env("PYTHONHASHSEED", "0");
                c
            }),
            timeout: Duration::from_secs(300),
        },
        Program {
            name: format!("sort -S 128K --parallel=2 ({SORT_LINES} lines)"),
            make: Box::new(move || {
                let _ = fs::create_dir_all(&tmp);
                let mut c = Command::new("sort");
                c.env("LC_ALL", "C")
                    .args(["-S", "128K", "--parallel=2", "-T"])
                    .arg(&tmp)
                    .arg(sort_input());
                c
            }),
            timeout: Duration::from_secs(600),
        },
        Program {
            name: "mt_wordcount, 8 threads".into(),
            make: Box::new(move || {
                let mut c = Command::new(&wc);
                c.args(["8", "42"]);
                c
            }),
            timeout: Duration::from_secs(300),
        },
    ]
}

/// Writes the input of `sort` (deterministic, so outputs can be compared).
pub fn make_sort_input() -> Result<PathBuf, String> {
    let path = sort_input();
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    fs::create_dir_all(work_dir()).map_err(err)?;
    let mut out = BufWriter::new(fs::File::create(&path).map_err(err)?);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "vu", "ze", "bar", "qux", "ing", "est",
        "ion", "a",
    ];
    for _ in 0..SORT_LINES {
        let r = next();
        // Words of 1-6 syllables, then a number: many shared prefixes, some duplicates.
        let words = 1 + (r % 5);
        let mut line = String::new();
        for w in 0..words {
            if w > 0 {
                line.push(' ');
            }
            let s = next();
            for i in 0..(1 + s % 6) {
                line.push_str(SYLLABLES[((s >> (8 + 4 * i)) & 15) as usize]);
            }
        }
        line.push_str(&format!(" {}\n", (r >> 20) % 100_000));
        out.write_all(line.as_bytes()).map_err(err)?;
    }
    out.flush().map_err(err)?;
    Ok(path)
}

fn exec(p: &Program, preload: Option<&Path>) -> Result<Captured, String> {
    let mut c = (p.make)();
    match preload {
        Some(so) => c.env("LD_PRELOAD", so),
        None => c.env_remove("LD_PRELOAD"),
    };
    let r = cmd::capture(&mut c, p.timeout)?;
    if r.success() {
        Ok(r)
    } else {
        Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            r.outcome(),
            r.stderr_tail(20)
        ))
    }
}

/// Runs a program without pagebreak; returns its stdout.
pub fn reference(p: &Program) -> Result<Vec<u8>, String> {
    let r = exec(p, None)?;
    if r.stdout.is_empty() {
        return Err("the program printed nothing".into());
    }
    Ok(r.stdout)
}

/// Runs a program with `so` preloaded; its stdout must equal `want` byte for byte.
pub fn compare(p: &Program, so: &Path, want: &[u8]) -> Result<(), String> {
    let r = exec(p, Some(so))?;
    if r.stdout == want {
        return Ok(());
    }
    Err(format!(
        "output differs from the run without pagebreak ({} bytes, expected {}): {}",
        r.stdout.len(),
        want.len(),
        first_difference(&r.stdout, want)
    ))
}

fn first_difference(got: &[u8], want: &[u8]) -> String {
    let mut got_lines = got.split(|&b| b == b'\n');
    let mut want_lines = want.split(|&b| b == b'\n');
    let mut n = 1;
    loop {
        match (got_lines.next(), want_lines.next()) {
            (Some(g), Some(w)) if g == w => n += 1,
            (g, w) => {
                let show = |l: Option<&[u8]>| {
                    l.map_or("<end of output>".into(), |l| {
                        let s = String::from_utf8_lossy(l);
                        format!("`{}`", s.chars().take(200).collect::<String>())
                    })
                };
                return format!("line {n}: got {}, expected {}", show(g), show(w));
            }
        }
    }
}

/// The README's first command; then proof that the library really was loaded.
pub fn quick_start() -> Result<(), String> {
    let mut c = cmd::cargo();
    c.args([
        "xtask",
        "run",
        "--",
        "python3",
        "-c",
        "print(sum(range(10**6)))",
    ]);
    expect_stdout(&mut c, "499999500000\n")?;
    let mut c = cmd::cargo();
    c.args([
        "xtask",
        "run",
        "--",
        "grep",
        "-c",
        "libpagebreak.so",
        "/proc/self/maps",
    ]);
    let r = cmd::capture(&mut c, Duration::from_secs(600))?;
    let maps: u32 = String::from_utf8_lossy(&r.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if !r.success() || maps == 0 {
        return Err(format!(
            "`{}`: libpagebreak.so is not mapped into the program ({})\n{}",
            cmd::show(&c),
            r.outcome(),
            r.stderr_tail(10)
        ));
    }
    Ok(())
}

/// `cargo xtask run` must hand back the program's exit status.
pub fn exit_status() -> Result<(), String> {
    let mut c = cmd::cargo();
    c.args(["xtask", "run", "--", "sh", "-c", "exit 7"]);
    let r = cmd::capture(&mut c, Duration::from_secs(600))?;
    match r.status.and_then(|s| s.code()) {
        Some(7) => Ok(()),
        _ => Err(format!(
            "`{}`: {}, expected exit code 7\n{}",
            cmd::show(&c),
            r.outcome(),
            r.stderr_tail(10)
        )),
    }
}

fn expect_stdout(c: &mut Command, want: &str) -> Result<(), String> {
    let r = cmd::capture(c, Duration::from_secs(600))?;
    if r.success() && r.stdout == want.as_bytes() {
        return Ok(());
    }
    Err(format!(
        "`{}`: {}, stdout {:?}, expected {want:?}\n{}",
        cmd::show(c),
        r.outcome(),
        String::from_utf8_lossy(&r.stdout),
        r.stderr_tail(10)
    ))
}

/// Builds and runs the first ```rust block of the README's "Using it from Rust"
/// section as a program of its own, depending on alloc-ffi as the README says.
pub fn readme_rust_example(backend: Backend) -> Result<(), String> {
    let root = cmd::root();
    let readme =
        fs::read_to_string(root.join("README.md")).map_err(|e| format!("README.md: {e}"))?;
    let code = rust_block(&readme, "## Using it from Rust")
        .ok_or("README.md: no ```rust block under \"## Using it from Rust\"")?;
    let dir = work_dir().join(format!("readme-{}", backend.name()));
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    fs::create_dir_all(dir.join("src")).map_err(err)?;
    let manifest = format!(
        "[package]\nname = \"readme-example\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\npagebreak-malloc = {{ path = {:?}, default-features = false, features = [\"{}\"] }}\n\n\
         [workspace]\n",
        root.join("alloc-ffi").to_string_lossy(),
        backend.name()
    );
    fs::write(dir.join("Cargo.toml"), manifest).map_err(err)?;
    fs::write(dir.join("src").join("main.rs"), code).map_err(err)?;
    // Start from the workspace's pinned versions.
    let lock = root.join("Cargo.lock");
    if lock.is_file() && !dir.join("Cargo.lock").is_file() {
        fs::copy(&lock, dir.join("Cargo.lock")).map_err(err)?;
    }
    let mut c = cmd::cargo();
    c.args(["run", "--release", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(work_dir().join("readme-target"));
    let r = cmd::capture(&mut c, Duration::from_secs(900))?;
    if r.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            r.outcome(),
            r.stderr_tail(30)
        ))
    }
}

/// The body of the first ```rust block after `heading`, before the next `## ` heading.
fn rust_block(text: &str, heading: &str) -> Option<String> {
    let section = text.split(heading).nth(1)?;
    let section = section.split("\n## ").next()?;
    let start = section.find("```rust\n")? + "```rust\n".len();
    let len = section[start..].find("```")?;
    Some(section[start..start + len].to_string())
}
