//! The deliberate-misuse programs in tests/misuse: each does one misuse (a double free, an
//! invalid pointer, a damaged free list) and must die by SIGABRT, with exactly one line on
//! stderr: `pagebreak: <call>(): <kind> 0x<pointer>`, the pointer being the one the program
//! printed on stdout just before.
//!
//! Each program's header says what it expects:
//! `// expect: free(): double free of` (the line up to the pointer) and
//! `// pointer: exact` or `// pointer: near` (the report names the same 4 MiB segment, e.g.
//! the page holding a damaged link).

use crate::build::{self, Backend};
use crate::cmd;
use crate::ctests;
use crate::test::{Stop, Tally};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// SIGABRT on Linux.
const SIGABRT: i32 = 6;

/// pagebreak's segment size: `near` pointers must share the segment.
const SEGMENT_SHIFT: u32 = 22;

pub struct Case {
    pub name: String,
    bin: PathBuf,
    /// The report up to the pointer, e.g. `free(): double free of`.
    expect: String,
    /// The reported pointer need only be in the printed pointer's segment.
    near: bool,
}

fn misuse_dir() -> PathBuf {
    cmd::root().join("tests").join("misuse")
}

/// `expect` and `near` from a program's `// expect:` and `// pointer:` lines.
fn parse_header(text: &str) -> Result<(String, bool), String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let expect = field("// expect:").ok_or("no `// expect:` line")?;
    if expect.is_empty() {
        return Err("empty `// expect:` line".into());
    }
    let near = match field("// pointer:").as_deref() {
        None | Some("exact") => false,
        Some("near") => true,
        Some(other) => return Err(format!("`// pointer: {other}` (expected exact or near)")),
    };
    Ok((expect, near))
}

/// Compiles every `tests/misuse/*.c` into `bins` as `misuse-<name>`; sorted by name.
pub fn compile_all(bins: &Path) -> Result<Vec<Case>, String> {
    std::fs::create_dir_all(bins).map_err(|e| format!("{}: {e}", bins.display()))?;
    let dir = misuse_dir();
    let srcs = ctests::c_sources(&dir, "misuse programs")?;
    let mut cases = Vec::new();
    for src in srcs {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let (expect, near) = parse_header(&text).map_err(|e| format!("{}: {e}", src.display()))?;
        let bin = bins.join(format!("misuse-{name}"));
        ctests::cc(&src, &bin, &["-ldl"])?;
        cases.push(Case {
            name,
            bin,
            expect,
            near,
        });
    }
    Ok(cases)
}

/// Compiles the programs as one counted check; an empty list if that failed.
pub fn compile(t: &mut Tally, bins: &Path) -> Result<Vec<Case>, Stop> {
    let mut cases = Vec::new();
    t.check("compile tests/misuse/*.c", || {
        cases = compile_all(bins)?;
        Ok(())
    })?;
    Ok(cases)
}

/// `0x7f...` (as printed by `%p` or in a report) to a number.
fn parse_ptr(s: &str) -> Option<usize> {
    usize::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Checks the report of a finished run of `case`; `stdout` holds the misused pointer.
fn check_report(case: &Case, stdout: &str, stderr: &str) -> Result<(), String> {
    let printed = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| parse_ptr(l.trim()))
        .ok_or_else(|| format!("no pointer on stdout: {stdout:?}"))?;
    let lines: Vec<&str> = stderr.lines().collect();
    let [line] = lines[..] else {
        return Err(format!(
            "stderr has {} lines, expected one report:\n{}",
            lines.len(),
            cmd::tail(stderr.as_bytes(), 10)
        ));
    };
    let prefix = format!("pagebreak: {} ", case.expect);
    let reported = line
        .strip_prefix(&prefix)
        .and_then(parse_ptr)
        .ok_or_else(|| format!("report {line:?}, expected \"{prefix}0x{printed:x}\""))?;
    let same = if case.near {
        reported >> SEGMENT_SHIFT == printed >> SEGMENT_SHIFT
    } else {
        reported == printed
    };
    if !same {
        return Err(format!(
            "report {line:?} names {reported:#x}, the program misused {printed:#x}{}",
            if case.near {
                " (not in its segment)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// Runs `case` with `so` preloaded: it must abort with the expected report.
pub fn run(case: &Case, so: &Path) -> Result<(), String> {
    // No core dumps from the aborts: `ulimit -c 0`, then exec the program (the same process)
    // with the library preloaded; the shell itself runs without it.
    let mut c = Command::new("sh");
    c.args(["-c", "ulimit -c 0; export LD_PRELOAD=\"$1\"; exec \"$0\""])
        .arg(&case.bin)
        .arg(so)
        .env_remove("LD_PRELOAD");
    // A PAGEBREAK_* setting of the caller's could add warnings or change behaviour.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PAGEBREAK_") {
            c.env_remove(k);
        }
    }
    let r = cmd::capture(&mut c, TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    let signal = r.status.and_then(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.signal()
    });
    let result = if signal == Some(SIGABRT) {
        check_report(case, &stdout, &stderr)
    } else {
        Err(format!("{}, expected SIGABRT", r.outcome()))
    };
    result.map_err(|e| {
        format!(
            "{e}\n  expected: pagebreak: {} 0x...\n  `{}` with LD_PRELOAD={}\n  stdout:\n{}  stderr:\n{}",
            case.expect,
            case.bin.display(),
            so.display(),
            cmd::tail(&r.stdout, 5),
            cmd::tail(&r.stderr, 10)
        )
    })
}

/// Runs every case under one backend's library, one counted check each.
pub fn check_all(t: &mut Tally, cases: &[Case], so: &Path, backend: &str) -> Result<(), Stop> {
    t.heading(&format!("misuse programs, {backend} backend"));
    for case in cases {
        t.check(&format!("misuse {} ({backend})", case.name), || {
            run(case, so)
        })?;
    }
    Ok(())
}

/// `[--backend mmap|brk(|glibc)] [--keep-going] [NAME...]`, shared with `limits`.
pub fn parse_args(
    args: &[String],
    allow_glibc: bool,
) -> Result<(Option<Backend>, bool, Vec<String>), String> {
    let mut backend = Some(Backend::Mmap);
    let mut keep_going = false;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => {
                let v = it.next().ok_or("--backend needs a value")?;
                backend = match v.as_str() {
                    "glibc" if allow_glibc => None,
                    v => Some(Backend::parse(v)?),
                };
            }
            "--keep-going" => keep_going = true,
            _ if a.starts_with('-') => return Err(format!("unexpected argument `{a}`")),
            _ => names.push(a.clone()),
        }
    }
    Ok((backend, keep_going, names))
}

/// `cargo xtask misuse [--backend mmap|brk] [--keep-going] [NAME...]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let (backend, keep_going, names) = parse_args(args, false)?;
    let backend = backend.unwrap_or(Backend::Mmap);
    let so = build::build(backend, true, false)?.so;
    let mut cases = compile_all(&ctests::bin_dir())?;
    if !names.is_empty() {
        cases.retain(|c| names.contains(&c.name));
        if cases.is_empty() {
            return Err(format!("no misuse program named {names:?}"));
        }
    }
    let mut t = Tally::new(keep_going);
    let stopped = check_all(&mut t, &cases, &so, backend.name()).is_err();
    t.finish(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(expect: &str, near: bool) -> Case {
        Case {
            name: "t".into(),
            bin: PathBuf::new(),
            expect: expect.into(),
            near,
        }
    }

    #[test]
    fn header() {
        let text = "// expect: free(): double free of\n// pointer: near\nint main;";
        assert_eq!(
            parse_header(text),
            Ok(("free(): double free of".to_string(), true))
        );
        assert_eq!(parse_header("// expect: x\n"), Ok(("x".to_string(), false)));
        assert!(parse_header("int main;").is_err());
        assert!(parse_header("// expect: x\n// pointer: close\n").is_err());
    }

    #[test]
    fn reports() {
        let c = case("free(): double free of", false);
        let ok = "pagebreak: free(): double free of 0x7f0010\n";
        assert!(check_report(&c, "0x7f0010\n", ok).is_ok());
        // Wrong pointer, wrong kind, two lines, no pointer printed.
        assert!(check_report(&c, "0x7f0020\n", ok).is_err());
        assert!(check_report(
            &c,
            "0x7f0010\n",
            "pagebreak: free(): invalid pointer (not allocated by pagebreak) 0x7f0010\n"
        )
        .is_err());
        assert!(check_report(&c, "0x7f0010\n", &format!("{ok}{ok}")).is_err());
        assert!(check_report(&c, "", ok).is_err());
        // Trailing text after the pointer is not a report.
        assert!(check_report(
            &c,
            "0x7f0010\n",
            "pagebreak: free(): double free of 0x7f0010 x"
        )
        .is_err());
        let near = case("malloc(): free list corrupted (use after free?) near", true);
        let line = "pagebreak: malloc(): free list corrupted (use after free?) near 0x7f0000400000";
        assert!(check_report(&near, "0x7f0000410200\n", line).is_ok());
        assert!(check_report(&near, "0x7f0000810200\n", line).is_err());
    }
}
