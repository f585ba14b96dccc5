//! Process helpers: the workspace root, running commands, timeouts, output capture.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The workspace root (the parent of the xtask crate).
pub fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// The cargo of the toolchain running xtask (`$CARGO` under `cargo run`).
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// A shell-like rendering of a command, for headings and error messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            s.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Describes an exit status as "exit code N" or "killed by signal N".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}{}", signal_name(s)),
        _ => "unknown status".into(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        14 => " (SIGALRM)",
        _ => "",
    }
}

/// Runs a command with inherited stdio; an error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {}", show(cmd));
    run_silently(cmd)
}

/// [`run`] without echoing the command (its own output still shows).
pub fn run_silently(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", show(cmd), describe(status)))
    }
}

/// What a finished command left behind.
pub struct Captured {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Captured {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "exit code N", "killed by signal N" or "timed out".
    pub fn outcome(&self) -> String {
        match self.status {
            Some(s) => describe(s),
            None => format!("timed out after {:.0} s", self.elapsed.as_secs_f64()),
        }
    }

    /// The last `n` lines of stderr, indented, for failure reports.
    pub fn stderr_tail(&self, n: usize) -> String {
        tail(&self.stderr, n)
    }
}

/// The last `n` lines of `bytes`, each indented by four spaces.
pub fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// Runs a command with stdout and stderr captured, killing its whole process
/// group once `timeout` has passed (a hung allocator must not hang the tests).
pub fn capture(cmd: &mut Command, timeout: Duration) -> Result<Captured, String> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= timeout => {
                kill_group(child.id());
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for `{}`: {e}", show(cmd))),
        }
    };
    // Leftover children of a timed-out or crashed program may hold the pipes open.
    kill_group(child.id());
    Ok(Captured {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    })
}

/// SIGKILLs the process group `pgid` (std has no kill(2); use the kill utility).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}
