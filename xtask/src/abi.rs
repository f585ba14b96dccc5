//! What libpagebreak.so shows the dynamic linker: its SONAME and NEEDED entries
//! (`readelf -d`) and the symbols it exports (`nm -D`), which must be exactly those listed in
//! tests/link/exports.txt: an accidental export (a `#[no_mangle]` helper, a dependency's C
//! symbol) would interpose on the same name in every program that preloads the library.
//!
//! `cargo xtask exports [--backend mmap|brk]` checks the list alone.

use crate::build::{self, Backend};
use crate::cmd;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The expected export list: one symbol a line, `#` starts a comment.
pub fn exports_file() -> PathBuf {
    cmd::root().join("tests").join("link").join("exports.txt")
}

/// Runs a binutils tool on `file`; its stdout.
fn binutils(tool: &str, args: &[&str], file: &Path) -> Result<String, String> {
    let mut c = Command::new(tool);
    c.args(args).arg(file);
    let out = c
        .output()
        .map_err(|e| format!("cannot run {tool} ({e}); install binutils"))?;
    if !out.status.success() {
        return Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            cmd::describe(out.status),
            cmd::tail(&out.stderr, 10)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The values of the dynamic section's `tag` entries (`NEEDED`, `SONAME`, ...) of `file`,
/// from `readelf -d` lines such as `0x...01 (NEEDED)  Shared library: [libc.so.6]`.
pub fn dynamic_entries(file: &Path, tag: &str) -> Result<Vec<String>, String> {
    let text = binutils("readelf", &["-d", "-W"], file)?;
    let tag = format!("({tag})");
    Ok(text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(tag.as_str()))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l.rfind(']')?;
            Some(l[start..end].to_string())
        })
        .collect())
}

/// The symbols `so` defines in its dynamic symbol table (what it exports), without versions.
pub fn exported_symbols(so: &Path) -> Result<BTreeSet<String>, String> {
    let text = binutils("nm", &["-D", "--defined-only", "--format=posix"], so)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect())
}

/// The symbols listed in `text` (the format of tests/link/exports.txt).
pub fn parse_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// What differs between `exported` and `expected`, as a message naming each symbol; None
/// when they are the same set.
pub fn compare(exported: &BTreeSet<String>, expected: &BTreeSet<String>) -> Option<String> {
    let extra: Vec<&str> = exported.difference(expected).map(String::as_str).collect();
    let missing: Vec<&str> = expected.difference(exported).map(String::as_str).collect();
    let mut msg = Vec::new();
    if !extra.is_empty() {
        msg.push(format!(
            "exported but not listed: {} (add to tests/link/exports.txt if public API, else \
             stop exporting)",
            extra.join(", ")
        ));
    }
    if !missing.is_empty() {
        msg.push(format!("listed but not exported: {}", missing.join(", ")));
    }
    (!msg.is_empty()).then(|| msg.join("; "))
}

/// `so` exports exactly the symbols of tests/link/exports.txt.
pub fn check_exports(so: &Path) -> Result<(), String> {
    let file = exports_file();
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let expected = parse_list(&text);
    let exported = exported_symbols(so)?;
    match compare(&exported, &expected) {
        None => Ok(()),
        Some(diff) => Err(format!(
            "{} exports {} symbols, {} lists {}: {diff}",
            so.display(),
            exported.len(),
            file.display(),
            expected.len()
        )),
    }
}

/// The shared libraries libpagebreak.so may need: the C library, the dynamic loader, and
/// libgcc_s (Rust's std links its unwinder). Every other one is mapped into each program
/// that preloads pagebreak: libm.so.6, needed once for one `exp_m1`, cost 300 KiB of RSS.
pub fn needed_allowed(lib: &str) -> bool {
    lib == "libc.so.6" || lib == "libgcc_s.so.1" || lib.starts_with("ld-linux")
}

/// libpagebreak.so needs no shared library beyond [`needed_allowed`].
pub fn check_needed(so: &Path) -> Result<(), String> {
    let extra: Vec<String> = dynamic_entries(so, "NEEDED")?
        .into_iter()
        .filter(|lib| !needed_allowed(lib))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} needs {} (every program that preloads it maps them): only libc, the loader \
             and libgcc_s are expected",
            so.display(),
            extra.join(", ")
        ))
    }
}

/// `cargo xtask exports [--backend mmap|brk]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let opts = build::parse_options(args)?;
    let built = build::build(opts.backend, opts.release, true)?;
    check_exports(&built.so)?;
    check_needed(&built.so)?;
    let n = exported_symbols(&built.so)?.len();
    println!(
        "{}: {n} exported symbols, as {} lists ({} backend)",
        built.so.display(),
        exports_file().display(),
        Backend::name(opts.backend)
    );
    Ok(())
}

/// `cargo xtask link [--backend mmap|brk] [--keep-going]`: the library as programs link it:
/// the export list, C programs linked with the `.a` and with `-lpagebreak` (SONAME), and
/// `cargo xtask install` used through pkg-config (that one with the mmap backend).
pub fn link_main(args: &[String]) -> Result<(), String> {
    let (backend, keep_going, names) = crate::misuse::parse_args(args, false)?;
    if let Some(n) = names.first() {
        return Err(format!("unexpected argument `{n}`"));
    }
    let backend = backend.unwrap_or(Backend::Mmap);
    let name = backend.name();
    let built = build::build(backend, true, false)?;
    let bins = crate::ctests::bin_dir();
    std::fs::create_dir_all(&bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let mut t = crate::test::Tally::new(keep_going);
    let stopped = (|| {
        t.check(
            &format!("libpagebreak.so exports tests/link/exports.txt ({name})"),
            || check_exports(&built.so),
        )?;
        t.check(&format!("link with libpagebreak.a ({name})"), || {
            crate::ctests::link_static(&built, &bins)
        })?;
        t.check(&format!("link with -lpagebreak ({name})"), || {
            crate::ctests::link_dynamic(&built, &bins)
        })?;
        t.check(
            "cargo xtask install, then a C program built with pkg-config",
            crate::install::test_install,
        )
    })()
    .is_err();
    t.finish(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_libc_the_loader_and_libgcc_s_are_needed() {
        for lib in [
            "libc.so.6",
            "ld-linux-x86-64.so.2",
            "ld-linux-aarch64.so.1",
            "libgcc_s.so.1",
        ] {
            assert!(needed_allowed(lib), "{lib}");
        }
        for lib in [
            "libm.so.6",
            "libstdc++.so.6",
            "libpthread.so.0",
            "libdl.so.2",
        ] {
            assert!(!needed_allowed(lib), "{lib}");
        }
    }

    #[test]
    fn list_ignores_comments_and_blank_lines() {
        let text = "# the C API\nmalloc\n\n  free  # glibc's\n#calloc\n";
        assert_eq!(parse_list(text), set(&["malloc", "free"]));
    }

    #[test]
    fn compare_names_each_differing_symbol() {
        let expected = set(&["malloc", "free", "pagebreak_version"]);
        assert_eq!(
            compare(&set(&["free", "malloc", "pagebreak_version"]), &expected),
            None
        );
        let msg = compare(&set(&["malloc", "free", "helper"]), &expected).unwrap();
        assert!(msg.contains("exported but not listed: helper"), "{msg}");
        assert!(
            msg.contains("listed but not exported: pagebreak_version"),
            "{msg}"
        );
    }
}
