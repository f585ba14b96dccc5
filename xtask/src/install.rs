//! `cargo xtask install --prefix DIR [--backend mmap|brk]`: the library, its header and a
//! pkg-config file, laid out as `DIR/lib`, `DIR/include`, `DIR/lib/pkgconfig`. The shared
//! library is installed as distributions do: the versioned file `libpagebreak.so.X.Y.Z`, its
//! SONAME `libpagebreak.so.X` (what linked programs ask for) and `libpagebreak.so` (what
//! `-lpagebreak` finds) as links to it.

use crate::build::{self, Backend, SONAME};
use crate::{abi, cmd};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The installed file's name: `libpagebreak.so.<version>`.
const VERSIONED: &str = concat!("libpagebreak.so.", env!("CARGO_PKG_VERSION"));

const USAGE: &str = "usage: cargo xtask install --prefix DIR [--backend mmap|brk]";

/// What a program linked with libpagebreak.a needs besides libc, from
/// `cargo rustc -p pagebreak-malloc --release -- --print native-static-libs`.
const LIBS_PRIVATE: &str = "-lpthread -ldl -lm -lrt -lutil -lgcc_s";

pub fn main(args: &[String]) -> Result<(), String> {
    let mut prefix = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--prefix" => prefix = Some(it.next().ok_or("--prefix needs a directory")?.clone()),
            _ if a.starts_with("--prefix=") => prefix = Some(a["--prefix=".len()..].to_string()),
            "--debug" => return Err(format!("install builds release only\n{USAGE}")),
            _ => rest.push(a.clone()),
        }
    }
    let prefix = prefix.ok_or(USAGE)?;
    let opts = build::parse_options(&rest).map_err(|e| format!("{e}\n{USAGE}"))?;
    for path in install(opts.backend, Path::new(&prefix))? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Builds (release) and installs under `prefix`; returns the installed files.
pub fn install(backend: Backend, prefix: &Path) -> Result<Vec<PathBuf>, String> {
    let built = build::build(backend, true, true)?;
    fs::create_dir_all(prefix).map_err(io(prefix))?;
    let prefix = fs::canonicalize(prefix).map_err(io(prefix))?;
    let lib = prefix.join("lib");
    let include = prefix.join("include");
    let pkgconfig = lib.join("pkgconfig");
    for d in [&lib, &include, &pkgconfig] {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    let header = cmd::root()
        .join("alloc-ffi")
        .join("include")
        .join("pagebreak.h");
    let files = [
        (built.so.as_path(), lib.join(VERSIONED)),
        (built.a.as_path(), lib.join("libpagebreak.a")),
        (header.as_path(), include.join("pagebreak.h")),
    ];
    let mut installed = Vec::new();
    for (from, to) in files {
        // Copy beside, then rename: a running program may have the old .so mapped.
        let tmp = to.with_extension("tmp");
        fs::copy(from, &tmp)
            .map_err(|e| format!("{} -> {}: {e}", from.display(), tmp.display()))?;
        fs::rename(&tmp, &to).map_err(io(&to))?;
        installed.push(to);
    }
    for link in [SONAME, "libpagebreak.so"] {
        let to = lib.join(link);
        build::symlink(Path::new(VERSIONED), &to)?;
        installed.push(to);
    }
    let pc = pkgconfig.join("pagebreak.pc");
    fs::write(&pc, pc_file(&prefix)).map_err(io(&pc))?;
    installed.push(pc);
    Ok(installed)
}

/// An io::Error as "path: error".
fn io(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

fn pc_file(prefix: &Path) -> String {
    format!(
        "prefix={}\n\
         exec_prefix=${{prefix}}\n\
         libdir=${{exec_prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: pagebreak\n\
         Description: A fast, hardened general-purpose malloc\n\
         Version: {}\n\
         Libs: -L${{libdir}} -lpagebreak\n\
         Libs.private: {LIBS_PRIVATE}\n\
         Cflags: -I${{includedir}}\n",
        prefix.display(),
        env!("CARGO_PKG_VERSION")
    )
}

// ---- the check in `cargo xtask test` ----

/// A program using pagebreak.h; its malloc must be pagebreak's (the statistics see it).
const USE_PAGEBREAK_C: &str = r#"#include <pagebreak.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    enum { N = 1000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) blocks[i] = malloc(100);
    void *huge = malloc(4 << 20);
    free(malloc(1)); /* a slow path refreshes the counters */
    struct pagebreak_stats s;
    if (pagebreak_stats_get(&s) != 0) return 1;
    printf("pagebreak %s: allocated %zu reserved %zu segments %zu huge %zu\n",
           pagebreak_version(), s.allocated, s.reserved, s.segments, s.huge_count);
    if (s.allocated < N * 100 + (4 << 20) || s.huge_count < 1 || s.reserved < s.allocated) {
        fprintf(stderr, "statistics do not show this program's blocks\n");
        return 1;
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    free(huge);
    return 0;
}
"#;

/// `cargo xtask install --prefix target/pagebreak-install`, then a C program built with
/// `pkg-config --cflags --libs pagebreak` (shared) and `--static` (archive) must run and see
/// its own allocations in `pagebreak_stats_get`.
pub fn test_install() -> Result<(), String> {
    let root = cmd::root();
    let prefix = root.join("target").join("pagebreak-install");
    let _ = fs::remove_dir_all(&prefix);
    let mut c = cmd::cargo();
    c.args(["xtask", "install", "--prefix"]).arg(&prefix);
    let r = cmd::capture(&mut c, Duration::from_secs(600))?;
    if !r.success() {
        return Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            r.outcome(),
            r.stderr_tail(20)
        ));
    }
    for f in [
        &format!("lib/{VERSIONED}"),
        &format!("lib/{SONAME}"),
        "lib/libpagebreak.so",
        "lib/libpagebreak.a",
        "include/pagebreak.h",
        "lib/pkgconfig/pagebreak.pc",
    ] {
        let p = prefix.join(f);
        if !p.is_file() {
            return Err(format!("{} not installed", p.display()));
        }
        if !String::from_utf8_lossy(&r.stdout).contains(&*p.to_string_lossy()) {
            return Err(format!("`{}` did not list {}", cmd::show(&c), p.display()));
        }
    }
    check_links(&prefix.join("lib"))?;

    let dir = root.join("target").join("pagebreak-tests").join("install");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("use_pagebreak.c");
    fs::write(&src, USE_PAGEBREAK_C).map_err(|e| format!("{}: {e}", src.display()))?;
    let pkgconfig = prefix.join("lib").join("pkgconfig");

    // Shared: found through LD_LIBRARY_PATH.
    let flags = pkg_config(&pkgconfig, &["--cflags", "--libs", "pagebreak"])?;
    let shared = dir.join("use_pagebreak_shared");
    compile(&src, &shared, &flags)?;
    let needed = abi::dynamic_entries(&shared, "NEEDED")?;
    if !needed.iter().any(|n| n == SONAME) || needed.iter().any(|n| n == "libpagebreak.so") {
        return Err(format!(
            "{} records NEEDED {needed:?}: expected {SONAME}, the SONAME",
            shared.display()
        ));
    }
    run_and_check(&shared, Some(&prefix.join("lib")))?;

    // Static: the archive with Libs.private, no LD_LIBRARY_PATH.
    let flags = pkg_config(&pkgconfig, &["--cflags", "--libs", "--static", "pagebreak"])?;
    let flags = flags
        .into_iter()
        .map(|f| {
            if f == "-lpagebreak" {
                "-l:libpagebreak.a".into()
            } else {
                f
            }
        })
        .collect::<Vec<_>>();
    let fixed = dir.join("use_pagebreak_static");
    compile(&src, &fixed, &flags)?;
    run_and_check(&fixed, None)
}

/// The versioned file is a file with SONAME [`SONAME`]; `libpagebreak.so.X` and
/// `libpagebreak.so` are relative links to it (the prefix can move).
fn check_links(lib: &Path) -> Result<(), String> {
    let file = lib.join(VERSIONED);
    let meta = fs::symlink_metadata(&file).map_err(io(&file))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", file.display()));
    }
    let soname = abi::dynamic_entries(&file, "SONAME")?;
    if soname != [SONAME] {
        return Err(format!(
            "{} has SONAME {soname:?}, expected [{SONAME:?}]",
            file.display()
        ));
    }
    for link in [SONAME, "libpagebreak.so"] {
        let p = lib.join(link);
        match fs::read_link(&p) {
            Ok(t) if t == Path::new(VERSIONED) => {}
            Ok(t) => {
                return Err(format!(
                    "{} -> {}, expected -> {VERSIONED}",
                    p.display(),
                    t.display()
                ))
            }
            Err(e) => return Err(format!("{} is not a link to {VERSIONED}: {e}", p.display())),
        }
    }
    Ok(())
}

fn pkg_config(dir: &Path, args: &[&str]) -> Result<Vec<String>, String> {
    let mut c = Command::new("pkg-config");
    c.args(args).env("PKG_CONFIG_PATH", dir);
    let out = c.output().map_err(|e| {
        format!("cannot run pkg-config ({e}); install it (apt-get install pkg-config)")
    })?;
    if !out.status.success() {
        return Err(format!(
            "`PKG_CONFIG_PATH={} {}`: {}\n{}",
            dir.display(),
            cmd::show(&c),
            cmd::describe(out.status),
            cmd::tail(&out.stderr, 10)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect())
}

fn compile(src: &Path, out: &Path, flags: &[String]) -> Result<(), String> {
    let mut c = Command::new("cc");
    // No builtins: the compiler may not drop the test's malloc/free pairs.
    c.args(["-O1", "-fno-builtin", "-Wall", "-Wextra", "-o"])
        .arg(out)
        .arg(src)
        .args(flags);
    cmd::run(&mut c)
}

fn run_and_check(bin: &Path, lib_dir: Option<&Path>) -> Result<(), String> {
    let mut c = Command::new(bin);
    c.env_remove("LD_PRELOAD");
    match lib_dir {
        Some(d) => c.env("LD_LIBRARY_PATH", d),
        None => c.env_remove("LD_LIBRARY_PATH"),
    };
    let r = cmd::capture(&mut c, Duration::from_secs(60))?;
    let out = String::from_utf8_lossy(&r.stdout);
    if r.success() && out.starts_with("pagebreak ") && out.contains(" allocated ") {
        return Ok(());
    }
    Err(format!(
        "`{}`: {}, stdout {out:?}\n{}",
        cmd::show(&c),
        r.outcome(),
        r.stderr_tail(10)
    ))
}
