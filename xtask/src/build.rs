//! `cargo xtask build`: libpagebreak.so and .a for one backend, each backend in its
//! own target directory (both produce the same file names).

use crate::cmd;
use std::path::{Path, PathBuf};

/// The SONAME alloc-ffi/build.rs gives libpagebreak.so: `libpagebreak.so.<major>`
/// (the workspace version is alloc-ffi's too).
pub const SONAME: &str = concat!("libpagebreak.so.", env!("CARGO_PKG_VERSION_MAJOR"));

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Mmap,
    Brk,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Mmap, Backend::Brk];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Mmap => "mmap",
            Backend::Brk => "brk",
        }
    }

    pub fn parse(s: &str) -> Result<Backend, String> {
        match s {
            "mmap" => Ok(Backend::Mmap),
            "brk" => Ok(Backend::Brk),
            _ => Err(format!("unknown backend `{s}` (expected mmap or brk)")),
        }
    }
}

/// Paths of a built library.
pub struct Built {
    pub so: PathBuf,
    pub a: PathBuf,
}

/// `target/pagebreak-<backend>`.
pub fn target_dir(backend: Backend) -> PathBuf {
    cmd::root()
        .join("target")
        .join(format!("pagebreak-{}", backend.name()))
}

/// Builds alloc-ffi with the C API and `backend`; returns absolute paths.
/// `quiet` hides cargo's progress unless the build fails.
pub fn build(backend: Backend, release: bool, quiet: bool) -> Result<Built, String> {
    let dir = target_dir(backend);
    let mut c = cmd::cargo();
    c.args(["build", "-p", "pagebreak-malloc", "--target-dir"])
        .arg(&dir);
    if release {
        c.arg("--release");
    }
    c.args(["--no-default-features", "--features"])
        .arg(format!("{},c-api", backend.name()));
    if quiet {
        c.arg("--quiet");
        cmd::run_silently(&mut c)?;
    } else {
        cmd::run(&mut c)?;
    }
    let out = dir.join(if release { "release" } else { "debug" });
    let built = Built {
        so: out.join("libpagebreak.so"),
        a: out.join("libpagebreak.a"),
    };
    for p in [&built.so, &built.a] {
        if !p.is_file() {
            return Err(format!("cargo succeeded but {} is missing", p.display()));
        }
    }
    // A program linked with -lpagebreak asks the loader for the SONAME, not libpagebreak.so.
    symlink(Path::new("libpagebreak.so"), &out.join(SONAME))?;
    Ok(built)
}

/// Makes `link` a symbolic link to `target` (relative to the link's directory), replacing
/// whatever is there in one rename, so a program starting meanwhile sees the old or the new.
pub fn symlink(target: &Path, link: &Path) -> Result<(), String> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, link))
        .map_err(|e| format!("{} -> {}: {e}", link.display(), target.display()))
}

/// Parsed `[--backend mmap|brk] [--debug]`; unknown options are errors.
pub struct Options {
    pub backend: Backend,
    pub release: bool,
}

pub fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        backend: Backend::Mmap,
        release: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => {
                let v = it.next().ok_or("--backend needs a value (mmap or brk)")?;
                opts.backend = Backend::parse(v)?;
            }
            _ if a.starts_with("--backend=") => {
                opts.backend = Backend::parse(&a["--backend=".len()..])?;
            }
            "--debug" => opts.release = false,
            _ => return Err(format!("unexpected argument `{a}`")),
        }
    }
    Ok(opts)
}

/// `cargo xtask build [--backend mmap|brk] [--debug]`: prints the .so path, then the .a path.
pub fn main(args: &[String]) -> Result<(), String> {
    let opts = parse_options(args)?;
    let built = build(opts.backend, opts.release, false)?;
    println!("{}", built.so.display());
    println!("{}", built.a.display());
    Ok(())
}
