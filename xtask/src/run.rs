//! `cargo xtask run [--backend mmap|brk] [--debug] -- PROGRAM ARGS...`: runs a program
//! with pagebreak preloaded.

use crate::build;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

pub fn main(args: &[String]) -> Result<(), String> {
    let split = args.iter().position(|a| a == "--");
    let (opts, program) = match split {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let opts = build::parse_options(opts)?;
    let Some((program, program_args)) = program.split_first() else {
        return Err(
            "usage: cargo xtask run [--backend mmap|brk] [--debug] -- PROGRAM ARGS...".into(),
        );
    };
    let built = build::build(opts.backend, opts.release, true)?;
    let mut cmd = Command::new(program);
    cmd.args(program_args)
        .env("LD_PRELOAD", preload_value(&built.so));
    // exec: the program's exit status (or signal) becomes ours unchanged.
    let err = cmd.exec();
    Err(format!("cannot run `{program}`: {err}"))
}

/// `so`, followed by whatever LD_PRELOAD already held.
pub fn preload_value(so: &Path) -> OsString {
    let mut v = OsString::from(so);
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}
