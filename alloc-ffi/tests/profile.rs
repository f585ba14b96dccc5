//! Heap profiles through the Rust global allocator: three call sites hold 60/30/10% of a
//! 256 MiB live heap; the profile written by `pagebreak::profile::dump` attributes them within
//! ±10 points, and after they are dropped none of them is live.
//!
//! Options are read from the environment at the first allocation, so the test runs itself
//! again as a child process with `PAGEBREAK_PROFILE=1`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

#[global_allocator]
static GLOBAL: pagebreak::PageBreak = pagebreak::PageBreak;

const TOTAL: usize = 256 << 20;
const CHILD: &str = "PAGEBREAK_TEST_PROFILE_DIR";

#[no_mangle]
#[inline(never)]
pub fn profile_site_a(bytes: usize, keep: &mut Vec<Vec<u8>>) {
    for _ in 0..bytes / 64 {
        keep.push(Vec::with_capacity(64));
    }
}

#[no_mangle]
#[inline(never)]
pub fn profile_site_b(bytes: usize, keep: &mut Vec<Vec<u8>>) {
    for _ in 0..bytes / 3072 {
        // Zeroed: the calloc path.
        keep.push(vec![0u8; 3072]);
    }
}

#[no_mangle]
#[inline(never)]
pub fn profile_site_c(bytes: usize, keep: &mut Vec<Vec<u8>>) {
    for _ in 0..bytes / 81920 {
        keep.push(Vec::with_capacity(81920));
    }
}

/// The child: allocate, dump, drop, dump. Does nothing unless run by the parent.
#[test]
fn child_allocates_and_dumps() {
    let Some(dir) = std::env::var_os(CHILD) else {
        return;
    };
    let dir = Path::new(&dir);
    assert_eq!(pagebreak::profile::interval(), Some(512 * 1024));
    let mut keep = Vec::with_capacity(TOTAL / 64 + 16);
    for _ in 0..16 {
        profile_site_a(TOTAL / 16 / 10 * 6, &mut keep);
        profile_site_b(TOTAL / 16 / 10 * 3, &mut keep);
        profile_site_c(TOTAL / 16 / 10, &mut keep);
    }
    pagebreak::profile::dump(dir.join("live.prof")).unwrap();
    drop(keep);
    pagebreak::profile::dump(dir.join("freed.prof")).unwrap();
    for (name, f) in [
        (
            "profile_site_a",
            profile_site_a as fn(usize, &mut Vec<Vec<u8>>),
        ),
        ("profile_site_b", profile_site_b),
        ("profile_site_c", profile_site_c),
    ] {
        println!("site {name} {:#x}", f as usize);
    }
}

struct Dump {
    interval: f64,
    stacks: HashMap<u64, Vec<u64>>,
    live: Vec<(u64, f64)>,
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

fn parse(path: &Path) -> Dump {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("pagebreak-profile 1\n"),
        "{}",
        path.display()
    );
    assert!(text.ends_with("end\n"), "{} truncated", path.display());
    let mut d = Dump {
        interval: 0.0,
        stacks: HashMap::new(),
        live: Vec::new(),
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "interval" => d.interval = num(f[1]) as f64,
            "stack" => {
                d.stacks
                    .insert(num(f[1]), f[2..].iter().map(|s| num(s)).collect());
            }
            "live" => d.live.push((num(f[1]), num(f[2]) as f64)),
            _ => {}
        }
    }
    d
}

/// Estimated live bytes per site: a stack belongs to the first site one of its frames is in.
fn shares(d: &Dump, sites: &[(u64, u64)]) -> Vec<f64> {
    let mut out = vec![0.0; sites.len()];
    for (id, size) in &d.live {
        let w = size / -(-size / d.interval).exp_m1();
        let frames = &d.stacks[id];
        if let Some(site) = frames
            .iter()
            .find_map(|&pc| sites.iter().position(|&(lo, hi)| pc > lo && pc <= hi))
        {
            out[site] += w;
        }
    }
    out
}

#[test]
fn global_allocator_profile_attributes_call_sites() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pagebreak-profile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "child_allocates_and_dumps",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &dir)
        .env("PAGEBREAK_PROFILE", "1")
        .env("PAGEBREAK_PROFILE_PATH", dir.join("exit.prof"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Function sizes from the symbol table; run-time starts from the child.
    let nm = Command::new("nm").arg("-S").arg(&exe).output().unwrap();
    let symbols = String::from_utf8_lossy(&nm.stdout).into_owned();
    let mut sites = Vec::new();
    // libtest's own output may share the first line: look for the marker anywhere.
    for line in stdout
        .lines()
        .filter_map(|l| l.find("site profile_").map(|i| &l[i..]))
    {
        let f: Vec<&str> = line.split(' ').collect();
        let start = num(f[2]);
        let size = symbols
            .lines()
            .find_map(|l| {
                let s: Vec<&str> = l.split_whitespace().collect();
                (s.len() == 4 && s[3] == f[1]).then(|| u64::from_str_radix(s[1], 16).unwrap())
            })
            .unwrap_or_else(|| panic!("no size for {} in nm -S", f[1]));
        sites.push((start, start + size));
    }
    assert_eq!(sites.len(), 3, "{stdout}");
    let live = parse(&dir.join("live.prof"));
    let got = shares(&live, &sites);
    let total: f64 = got.iter().sum();
    for (share, want) in got.iter().zip([60.0, 30.0, 10.0]) {
        let pct = 100.0 * share / total;
        assert!(
            (pct - want).abs() <= 10.0,
            "shares {got:?}: {pct:.1}% for {want}%"
        );
    }
    let mib = total / (1 << 20) as f64;
    assert!(
        (192.0..320.0).contains(&mib),
        "{mib:.0} MiB estimated, 256 held"
    );
    let freed = parse(&dir.join("freed.prof"));
    assert!(shares(&freed, &sites).iter().all(|&b| b == 0.0));
    parse(&dir.join("exit.prof"));
    let _ = std::fs::remove_dir_all(&dir);
}
