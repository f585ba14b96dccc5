//! The deliberate-misuse programs in tests/misuse: each does one misuse (a double free, an
//! invalid pointer, a damaged free list) and must die by SIGABRT, with exactly one line on
//! stderr: `pagebreak: <call>(): <kind> 0x<pointer>`, the pointer being the one the program
//! printed on stdout just before.
//!
//! Each program's header says what it expects:
//! `// expect: free(): double free of` (the line up to the pointer) and
//! `// pointer: exact` or `// pointer: near` (the report names the same 4 MiB segment, e.g.
//! the page holding a damaged link).
//!
//! Guarded-block programs add:
//! * `// env: PAGEBREAK_GUARDED=1` (the environment to run with);
//! * `// rest: : 16 bytes into the freed 24-byte block at {block}`: the first line goes on
//!   after the pointer with this text, `{block}` standing for the first pointer the program
//!   printed (the block; the last one printed is the misused address);
//! * `// stacks: allocated at | freed at`: the report's first line is followed by exactly
//!   these sections, in order, each `pagebreak: <title>:` (`allocated by thread <id> at:`,
//!   `freed by thread <id> at:`, the id a kernel thread id) and one or more frame lines
//!   `pagebreak:   #N 0x<16 hex digits> <module>+0x<hex>`, at least one of them in the
//!   program itself (`misuse-<name>+0x...`). `faulting instruction` has exactly one frame.

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
    /// Environment to run with (`// env:`).
    env: Vec<(String, String)>,
    /// Text after the pointer on the report's first line (`// rest:`), `{block}` standing
    /// for the first pointer printed.
    rest: String,
    /// Stack sections that follow the first line (`// stacks:`), by title.
    stacks: Vec<String>,
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
        let env = ctests::env_header(&text).map_err(|e| format!("{}: {e}", src.display()))?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim_end().to_string())
        };
        let rest = field("// rest: ").unwrap_or_default();
        let stacks = field("// stacks:")
            .map(|v| v.split('|').map(|t| t.trim().to_string()).collect())
            .unwrap_or_default();
        let bin = bins.join(format!("misuse-{name}"));
        ctests::cc(&src, &bin, &["-ldl"])?;
        cases.push(Case {
            name,
            bin,
            expect,
            near,
            env,
            rest,
            stacks,
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
    let pointers: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let printed = pointers
        .last()
        .and_then(|l| parse_ptr(l))
        .ok_or_else(|| format!("no pointer on stdout: {stdout:?}"))?;
    let lines: Vec<&str> = stderr.lines().collect();
    if case.stacks.is_empty() && lines.len() != 1 {
        return Err(format!(
            "stderr has {} lines, expected one report:\n{}",
            lines.len(),
            cmd::tail(stderr.as_bytes(), 10)
        ));
    }
    let Some(&line) = lines.first() else {
        return Err("stderr is empty, expected a report".into());
    };
    let rest = case.rest.replace("{block}", pointers[0]);
    let prefix = format!("pagebreak: {} ", case.expect);
    let reported = line
        .strip_prefix(&prefix)
        .and_then(|l| l.strip_suffix(rest.as_str()))
        .and_then(parse_ptr)
        .ok_or_else(|| format!("report {line:?}, expected \"{prefix}0x{printed:x}{rest}\""))?;
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
    check_stacks(case, &lines[1..])
}

/// The stack sections after the first line: exactly `case.stacks`, in order.
fn check_stacks(case: &Case, mut lines: &[&str]) -> Result<(), String> {
    let program = format!(" misuse-{}+0x", case.name);
    for title in &case.stacks {
        match lines.first() {
            Some(l) if is_stack_head(title, l) => lines = &lines[1..],
            other => return Err(format!("expected the {title:?} section, found {other:?}")),
        }
        let frames = lines
            .iter()
            .take_while(|l| l.starts_with("pagebreak:   #"))
            .count();
        if frames == 0 {
            return Err(format!("no frames under {title:?}"));
        }
        for (i, frame) in lines[..frames].iter().enumerate() {
            check_frame(frame, i)?;
        }
        if !lines[..frames].iter().any(|l| l.contains(&program)) {
            return Err(format!(
                "no frame of the program ({program:?}) under {title:?}"
            ));
        }
        if title == "faulting instruction" && frames != 1 {
            return Err(format!("{frames} frames under {title:?}, expected one"));
        }
        lines = &lines[frames..];
    }
    match lines.first() {
        None => Ok(()),
        Some(l) => Err(format!("unexpected line after the report: {l:?}")),
    }
}

/// Whether `line` opens the stack section `title`: `pagebreak: faulting instruction:`, or for
/// `allocated at` / `freed at` with the thread's id: `pagebreak: freed by thread 1234 at:`.
fn is_stack_head(title: &str, line: &str) -> bool {
    match title.strip_suffix(" at") {
        None => line == format!("pagebreak: {title}:"),
        Some(verb) => line
            .strip_prefix(&format!("pagebreak: {verb} by thread "))
            .and_then(|l| l.strip_suffix(" at:"))
            .is_some_and(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && id != "0"
            }),
    }
}

/// `pagebreak:   #i 0x<16 hex> [module+0x<hex>]`.
fn check_frame(line: &str, i: usize) -> Result<(), String> {
    let bad = || format!("frame line {line:?} (frame #{i})");
    let rest = line
        .strip_prefix(&format!("pagebreak:   #{i} 0x"))
        .ok_or_else(bad)?;
    let (addr, module) = rest.split_at(16.min(rest.len()));
    if addr.len() != 16 || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    if module.is_empty() {
        return Ok(());
    }
    let (name, offset) = module
        .strip_prefix(' ')
        .and_then(|m| m.rsplit_once("+0x"))
        .ok_or_else(bad)?;
    if name.is_empty() || offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
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
    c.envs(case.env.iter().map(|(k, v)| (k, v)));
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
            "{e}\n  expected: pagebreak: {} 0x...\n  `{}` with {}LD_PRELOAD={}\n  stdout:\n{}  stderr:\n{}",
            case.expect,
            case.bin.display(),
            case.env
                .iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
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
            env: Vec::new(),
            rest: String::new(),
            stacks: Vec::new(),
        }
    }

    #[test]
    fn guarded_reports() {
        let mut c = case("use-after-free write at", false);
        c.rest = ": 16 bytes into the freed 24-byte block at {block}".into();
        c.stacks = vec!["allocated at".into(), "freed at".into()];
        let stdout = "0x7f00\n0x7f10\n";
        let frames = "pagebreak:   #0 0x000055d5c0a011a9 misuse-t+0x11a9\n\
                      pagebreak:   #1 0x00007f0000000001 libc.so.6+0x2724a\n";
        let first = "pagebreak: use-after-free write at 0x7f10: 16 bytes into the freed \
                     24-byte block at 0x7f00\n";
        let good = format!(
            "{first}pagebreak: allocated by thread 4242 at:\n{frames}\
             pagebreak: freed by thread 4243 at:\n{frames}"
        );
        assert_eq!(check_report(&c, stdout, &good), Ok(()));
        // The thread must be named, by a non-zero number.
        for bad in ["by thread  at", "by thread 0 at", "by thread x1 at", "at"] {
            let t = good.replace("by thread 4243 at", bad);
            assert!(check_report(&c, stdout, &t).is_err(), "{bad}");
        }
        // The block named wrong, a section missing, a frame outside the program, a stray line.
        let wrong_block = good.replace("block at 0x7f00", "block at 0x7f20");
        assert!(check_report(&c, stdout, &wrong_block).is_err());
        let no_free = format!("{first}pagebreak: allocated by thread 4242 at:\n{frames}");
        assert!(check_report(&c, stdout, &no_free).is_err());
        let foreign = good.replace("misuse-t+0x11a9", "libc.so.6+0x11a9");
        assert!(check_report(&c, stdout, &foreign).is_err());
        assert!(check_report(&c, stdout, &format!("{good}extra\n")).is_err());
        let bad_frame = good.replace("#1 0x00007f0000000001", "#1 0x7f01");
        assert!(check_report(&c, stdout, &bad_frame).is_err());
        // One-line cases still want exactly one line.
        let one = case("free(): double free of", false);
        assert!(check_report(
            &one,
            "0x7f10\n",
            &format!("pagebreak: free(): double free of 0x7f10\n{frames}")
        )
        .is_err());
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
