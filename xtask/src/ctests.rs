//! The C API tests in tests/c: compile each with `cc`, run it with the library
//! preloaded (or without, to check a test against glibc), expect exit code 0.

use crate::build::{self, Backend, Built};
use crate::cmd;
use crate::test::Tally;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A single test's time limit.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Flags for every C program: builtins off so the compiler cannot fold away
/// malloc/free pairs or a calloc's zero check.
pub const CFLAGS: &[&str] = &["-O1", "-g", "-pthread", "-fno-builtin", "-Wall", "-Wextra"];

/// What a program linked with the staticlib needs (rustc's `--print native-static-libs`).
pub const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

pub struct CTest {
    pub name: String,
    pub bin: PathBuf,
    /// Environment the program runs with, from its `// env:` line.
    pub env: Vec<(String, String)>,
}

/// The `// env: NAME=value NAME=value` line of a test program's source (none: empty), the
/// environment it must run with (e.g. `PAGEBREAK_GUARDED=1`).
pub fn env_header(text: &str) -> Result<Vec<(String, String)>, String> {
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("// env:")) else {
        return Ok(Vec::new());
    };
    line.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("`// env:` item `{kv}` is not NAME=value")),
        })
        .collect()
}

/// Compiles `src` into `bins` as `<prefix>-<name>` with its `// env:` header read.
pub fn compile_one(src: &Path, bins: &Path, prefix: &str) -> Result<CTest, String> {
    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let env = env_header(&text).map_err(|e| format!("{}: {e}", src.display()))?;
    let bin = bins.join(format!("{prefix}-{name}"));
    cc(src, &bin, &["-ldl"])?;
    Ok(CTest { name, bin, env })
}

/// Where compiled tests and programs go.
pub fn bin_dir() -> PathBuf {
    cmd::root()
        .join("target")
        .join("pagebreak-tests")
        .join("bin")
}

pub fn tests_dir() -> PathBuf {
    cmd::root().join("tests").join("c")
}

/// Compiles `src` to `out` with [`CFLAGS`], `extra` arguments going last.
pub fn cc(src: &Path, out: &Path, extra: &[&str]) -> Result<(), String> {
    let mut c = Command::new("cc");
    c.args(CFLAGS)
        .arg("-I")
        .arg(tests_dir())
        .arg("-o")
        .arg(out)
        .arg(src)
        .args(extra);
    cmd::run(&mut c)
}

/// The `*.c` files of `dir`, sorted by name; an error if there are none (`what` names them
/// in the message).
pub fn c_sources(dir: &Path, what: &str) -> Result<Vec<PathBuf>, String> {
    let mut srcs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    srcs.sort();
    if srcs.is_empty() {
        return Err(format!("no {what} in {}", dir.display()));
    }
    Ok(srcs)
}

/// Compiles every tests/c/*.c; returns them sorted by name.
pub fn compile_all(bins: &Path) -> Result<Vec<CTest>, String> {
    std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let dir = tests_dir();
    let srcs = c_sources(&dir, "C tests")?;
    let mut tests = Vec::new();
    for src in srcs {
        tests.push(compile_one(&src, bins, "c")?);
    }
    Ok(tests)
}

/// Runs one compiled program; `preload` None runs it on glibc's malloc.
pub fn run_bin(bin: &Path, args: &[&str], preload: Option<&Path>) -> Result<(), String> {
    run_bin_env(bin, args, &[], preload)
}

/// [`run_bin`] with `env` set (and no other `PAGEBREAK_*` variable of the caller's).
pub fn run_bin_env(
    bin: &Path,
    args: &[&str],
    env: &[(String, String)],
    preload: Option<&Path>,
) -> Result<(), String> {
    let mut c = Command::new(bin);
    c.args(args);
    if !env.is_empty() {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PAGEBREAK_") {
                c.env_remove(k);
            }
        }
        c.envs(env.iter().map(|(k, v)| (k, v)));
    }
    match preload {
        Some(so) => c.env("LD_PRELOAD", so),
        None => c.env_remove("LD_PRELOAD"),
    };
    let r = cmd::capture(&mut c, TIMEOUT)?;
    if r.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` ({}{}): {}\n{}",
            cmd::show(&c),
            env.iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
            preload.map_or("no preload".into(), |p| format!(
                "LD_PRELOAD={}",
                p.display()
            )),
            r.outcome(),
            cmd::tail(&[r.stdout.as_slice(), r.stderr.as_slice()].concat(), 20)
        ))
    }
}

pub fn run(test: &CTest, preload: Option<&Path>) -> Result<(), String> {
    run_bin_env(&test.bin, &[], &test.env, preload)
}

/// tests/link/link_check.c linked with libpagebreak.a: malloc must resolve to the executable.
pub fn link_static(built: &Built, bins: &Path) -> Result<(), String> {
    let out = bins.join(format!("link-static-{}", backend_of(built)));
    let mut extra = vec![built.a.to_str().ok_or("non-UTF-8 path")?];
    extra.extend_from_slice(STATIC_LIBS);
    cc(&link_src(), &out, &extra)?;
    run_bin(&out, &["static"], None)
}

/// tests/link/link_check.c linked with -lpagebreak: malloc must resolve to libpagebreak.so.
pub fn link_dynamic(built: &Built, bins: &Path) -> Result<(), String> {
    let out = bins.join(format!("link-dynamic-{}", backend_of(built)));
    let dir = built
        .so
        .parent()
        .unwrap()
        .to_str()
        .ok_or("non-UTF-8 path")?;
    let rpath = format!("-Wl,-rpath,{dir}");
    cc(
        &link_src(),
        &out,
        &["-L", dir, "-lpagebreak", &rpath, "-ldl"],
    )?;
    // The program asks for the SONAME; `cargo xtask build` links it to the library.
    let needed = crate::abi::dynamic_entries(&out, "NEEDED")?;
    if !needed.iter().any(|n| n == build::SONAME) {
        return Err(format!(
            "{} records NEEDED {needed:?}, expected {}",
            out.display(),
            build::SONAME
        ));
    }
    run_bin(&out, &["dynamic"], None)
}

fn link_src() -> PathBuf {
    cmd::root().join("tests").join("link").join("link_check.c")
}

/// "mmap" or "brk", from the target directory the library was built in.
fn backend_of(built: &Built) -> String {
    Backend::ALL
        .iter()
        .find(|b| built.so.starts_with(build::target_dir(**b)))
        .map_or("lib".into(), |b| b.name().into())
}

/// `cargo xtask ctest [--backend mmap|brk|glibc] [--keep-going] [NAME...]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut backend = Some(Backend::Mmap);
    let mut keep_going = false;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => {
                let v = it.next().ok_or("--backend needs a value")?;
                backend = match v.as_str() {
                    "glibc" => None,
                    v => Some(Backend::parse(v)?),
                };
            }
            "--keep-going" => keep_going = true,
            _ if a.starts_with('-') => return Err(format!("unexpected argument `{a}`")),
            _ => names.push(a.clone()),
        }
    }
    let so = match backend {
        Some(b) => Some(build::build(b, true, false)?.so),
        None => None,
    };
    let label = backend.map_or("glibc", |b| b.name());
    let mut tests = compile_all(&bin_dir())?;
    if !names.is_empty() {
        tests.retain(|t| names.contains(&t.name));
        if tests.is_empty() {
            return Err(format!("no C test named {names:?}"));
        }
    }
    let mut t = Tally::new(keep_going);
    let mut stopped = false;
    for test in &tests {
        let r = t.check(&format!("{} ({label})", test.name), || {
            run(test, so.as_deref())
        });
        if r.is_err() {
            stopped = true;
            break;
        }
    }
    t.finish(stopped)
}
