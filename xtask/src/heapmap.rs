//! `cargo xtask heapmap`: run a program with pagebreak preloaded and `PAGEBREAK_HEAPMAP` set,
//! then render the snapshot it writes at exit (format: alloc-ffi/src/heapmap.rs) as an SVG:
//! one strip per segment, one cell per slot, pages coloured by size class and filled by
//! occupancy.

use crate::build::{self, Backend};
use crate::cmd;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask heapmap [--backend mmap|brk] [--debug] [-o OUT.svg] -- PROGRAM ARGS...
       cargo xtask heapmap --render SNAPSHOT [-o OUT.svg]

Runs PROGRAM with pagebreak preloaded and PAGEBREAK_HEAPMAP=target/pagebreak-heapmap.txt
(written at exit, and rewritten on the next allocation after SIGUSR2), then renders it to
target/pagebreak-heapmap.svg. --render only renders an existing snapshot.";

/// Where the snapshot and the picture go by default.
pub fn default_paths() -> (PathBuf, PathBuf) {
    let target = cmd::root().join("target");
    (
        target.join("pagebreak-heapmap.txt"),
        target.join("pagebreak-heapmap.svg"),
    )
}

pub fn main(args: &[String]) -> Result<(), String> {
    let split = args.iter().position(|a| a == "--");
    let (opts, program) = match split {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let (mut snapshot, mut out) = default_paths();
    let mut render_only = None;
    let mut rest = Vec::new();
    let mut it = opts.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "--out" => out = it.next().ok_or("-o needs a file name")?.into(),
            "--render" => render_only = Some(it.next().ok_or("--render needs a snapshot")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(a.clone()),
        }
    }
    if let Some(input) = render_only {
        if !rest.is_empty() || !program.is_empty() {
            return Err(format!("--render takes no program\n\n{USAGE}"));
        }
        return render_file(Path::new(input), &out);
    }
    let opts = build::parse_options(&rest).map_err(|e| format!("{e}\n\n{USAGE}"))?;
    let Some((program, program_args)) = program.split_first() else {
        return Err(USAGE.into());
    };
    let built = build::build(opts.backend, opts.release, true)?;
    if out != default_paths().1 {
        snapshot = out.with_extension("txt");
    }
    let _ = fs::remove_file(&snapshot);
    let mut c = Command::new(program);
    c.args(program_args)
        .env("LD_PRELOAD", crate::run::preload_value(&built.so))
        .env("PAGEBREAK_HEAPMAP", &snapshot);
    let status = c
        .status()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if !snapshot.is_file() {
        return Err(format!(
            "`{}` ({}) wrote no snapshot to {} (a program killed by a signal never reaches exit)",
            cmd::show(&c),
            cmd::describe(status),
            snapshot.display()
        ));
    }
    render_file(&snapshot, &out)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}`: {}", cmd::show(&c), cmd::describe(status)))
    }
}

/// Renders `input` to `out`; prints the picture's path on stdout.
fn render_file(input: &Path, out: &Path) -> Result<(), String> {
    let text = fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let snap = parse(&text).map_err(|e| format!("{}: {e}", input.display()))?;
    fs::write(out, render(&snap)).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "heapmap: {} segment(s), {} reserved, {} allocated",
        snap.segments.len(),
        bytes(snap.reserved),
        bytes(snap.allocated)
    );
    println!("{}", out.display());
    Ok(())
}

// ---- the snapshot ----

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Header,
    Resident,
    Purged,
    Page {
        block: u64,
        used: u64,
        capacity: u64,
        slots: usize,
    },
    Continued,
}

#[derive(Debug)]
struct Segment {
    addr: String,
    slot_bytes: u64,
    abandoned: bool,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Snapshot {
    backend: String,
    reserved: u64,
    allocated: u64,
    huge: u64,
    segments: Vec<Segment>,
}

fn parse(text: &str) -> Result<Snapshot, String> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or("empty snapshot")?;
    let mut words = first.split_whitespace();
    if words.next() != Some("pagebreak-heapmap") || words.next() != Some("1") {
        return Err("not a pagebreak-heapmap 1 snapshot".into());
    }
    let mut snap = Snapshot {
        backend: String::new(),
        reserved: 0,
        allocated: 0,
        huge: 0,
        segments: Vec::new(),
    };
    for w in words {
        let (k, v) = w.split_once('=').ok_or(format!("line 1: `{w}`"))?;
        let num = || v.parse::<u64>().map_err(|_| format!("line 1: `{w}`"));
        match k {
            "backend" => snap.backend = v.to_string(),
            "reserved" => snap.reserved = num()?,
            "allocated" => snap.allocated = num()?,
            "huge" => snap.huge = num()?,
            _ => {} // later versions may add fields
        }
    }
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let err = |what: &str| format!("line {}: {what}", i + 1);
        let mut w = line.split_whitespace();
        if w.next() != Some("segment") {
            return Err(err("expected `segment`"));
        }
        let mut field = |name: &str| w.next().ok_or_else(|| err(&format!("no {name}")));
        let addr = field("address")?.to_string();
        let slot_bytes: u64 = field("slot size")?.parse().map_err(|_| err("slot size"))?;
        let count: usize = field("slot count")?
            .parse()
            .map_err(|_| err("slot count"))?;
        let abandoned = field("abandoned flag")? == "1";
        let slots = w
            .map(|t| parse_slot(t).ok_or_else(|| err(&format!("bad slot `{t}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        if slots.len() != count {
            return Err(err(&format!("{} slots, header says {count}", slots.len())));
        }
        snap.segments.push(Segment {
            addr,
            slot_bytes,
            abandoned,
            slots,
        });
    }
    Ok(snap)
}

fn parse_slot(t: &str) -> Option<Slot> {
    Some(match t {
        "H" => Slot::Header,
        "R" => Slot::Resident,
        "P" => Slot::Purged,
        "C" => Slot::Continued,
        _ => {
            let mut f = t.strip_prefix("B:")?.split(':').map(|v| v.parse::<u64>());
            let mut next = || f.next()?.ok();
            Slot::Page {
                block: next()?,
                used: next()?,
                capacity: next()?,
                slots: next()?.max(1) as usize,
            }
        }
    })
}

// ---- the picture ----

const MARGIN: f64 = 16.0;
const LABEL_W: f64 = 150.0;
const STRIP_W: f64 = 768.0;
const INFO_W: f64 = 150.0;
const ROW_H: f64 = 18.0;
const ROW_GAP: f64 = 6.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const MONO: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
const HEADER_FILL: &str = "#8c8c8c";
const PURGED_STROKE: &str = "#b8b8b8";
const ABANDONED: &str = "#d62728";
/// Size classes are coloured by log2 of the block size, from 2^3 to 2^20 and above.
const LOG_MIN: u32 = 3;
const LOG_MAX: u32 = 20;

/// The turbo colormap (Google's polynomial fit) at `x` in 0..=1.
fn turbo(x: f64) -> (f64, f64, f64) {
    let poly = |c: [f64; 6]| {
        let v = c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * (c[4] + x * c[5]))));
        v.clamp(0.0, 1.0)
    };
    (
        poly([0.1357, 4.6154, -42.6603, 132.1311, -152.9424, 59.2864]),
        poly([0.0914, 2.1942, 4.8430, -14.1850, 4.2773, 2.8296]),
        poly([0.1067, 12.6419, -60.5820, 110.3628, -89.9031, 27.3482]),
    )
}

fn hex((r, g, b): (f64, f64, f64)) -> String {
    let c = |v: f64| (v * 255.0).round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(r), c(g), c(b))
}

/// The colour of a size-class bucket and its tint (the empty part of a page).
fn class_colours(log: u32) -> (String, String) {
    let i = log.clamp(LOG_MIN, LOG_MAX) - LOG_MIN;
    let x = 0.06 + 0.88 * f64::from(i) / f64::from(LOG_MAX - LOG_MIN);
    let (r, g, b) = turbo(x);
    let tint = |v: f64| v * 0.28 + 0.72;
    (hex((r, g, b)), hex((tint(r), tint(g), tint(b))))
}

fn log2(size: u64) -> u32 {
    63 - size.max(1).leading_zeros()
}

fn short_size(b: u64) -> String {
    match b {
        _ if b >= 1 << 20 && b & ((1 << 20) - 1) == 0 => format!("{}M", b >> 20),
        _ if b >= 1 << 10 && b & ((1 << 10) - 1) == 0 => format!("{}K", b >> 10),
        _ => b.to_string(),
    }
}

fn bytes(b: u64) -> String {
    match b {
        _ if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        _ if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        _ if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{b} B"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn render(snap: &Snapshot) -> String {
    let width = MARGIN * 2.0 + LABEL_W + STRIP_W + INFO_W;
    let strips_y = 112.0;
    let height = strips_y + snap.segments.len() as f64 * (ROW_H + ROW_GAP) + MARGIN;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"{FONT}\" font-size=\"11\">"
    );
    let _ = writeln!(
        w,
        "<defs><pattern id=\"resident\" width=\"5\" height=\"5\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"5\" height=\"5\" fill=\"#f1f3f5\"/>\
         <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"5\" stroke=\"#a0a8b0\" stroke-width=\"2\"/>\
         </pattern></defs>"
    );
    let _ = writeln!(w, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");

    // Title line.
    let abandoned = snap.segments.iter().filter(|g| g.abandoned).count();
    let pct = if snap.reserved > 0 {
        format!(
            " ({:.0}%)",
            100.0 * snap.allocated as f64 / snap.reserved as f64
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        w,
        "<text x=\"{MARGIN}\" y=\"26\" font-size=\"15\"><tspan font-weight=\"bold\">pagebreak \
         heap, {} backend</tspan>  ·  reserved {}  ·  allocated {}{pct}  ·  {} segments, {} \
         abandoned  ·  {} huge blocks</text>",
        esc(&snap.backend),
        bytes(snap.reserved),
        bytes(snap.allocated),
        snap.segments.len(),
        abandoned,
        snap.huge
    );

    // Legend: size classes, then slot states.
    let mut x = MARGIN;
    let _ = writeln!(
        w,
        "<text x=\"{x}\" y=\"50\">block size, bytes (fill height = blocks in use / page \
         capacity):</text>"
    );
    for log in LOG_MIN..=LOG_MAX {
        let (full, _) = class_colours(log);
        let label = short_size(1 << log) + if log == LOG_MAX { "+" } else { "" };
        let _ = writeln!(
            w,
            "<rect x=\"{x}\" y=\"57\" width=\"14\" height=\"12\" fill=\"{full}\"/>\
             <text x=\"{}\" y=\"67\">{label}</text>",
            x + 17.0
        );
        x += 17.0 + 7.0 * label.len() as f64 + 8.0;
    }
    let mut x = MARGIN;
    let (full, tint) = class_colours(6);
    let mut item = |w: &mut String, swatch: String, label: &str| {
        let _ = writeln!(
            w,
            "<g transform=\"translate({x} 78)\">{swatch}<text x=\"26\" y=\"12\">{label}</text></g>"
        );
        x += 26.0 + 6.3 * label.len() as f64 + 18.0;
    };
    item(
        w,
        format!("<rect width=\"22\" height=\"14\" fill=\"{HEADER_FILL}\"/>"),
        "segment header",
    );
    item(
        w,
        format!(
            "<rect width=\"22\" height=\"14\" fill=\"{tint}\"/>\
             <rect y=\"5\" width=\"22\" height=\"9\" fill=\"{full}\"/>"
        ),
        "page, 64% in use",
    );
    item(
        w,
        "<rect width=\"22\" height=\"14\" fill=\"url(#resident)\"/>".into(),
        "free, resident",
    );
    item(
        w,
        format!(
            "<rect x=\"0.5\" y=\"0.5\" width=\"21\" height=\"13\" fill=\"white\" \
             stroke=\"{PURGED_STROKE}\"/>"
        ),
        "free, returned to the OS",
    );
    item(
        w,
        format!(
            "<rect x=\"1\" y=\"1\" width=\"20\" height=\"12\" fill=\"none\" stroke=\"{ABANDONED}\" \
             stroke-width=\"2\" stroke-dasharray=\"4 2\"/>"
        ),
        "abandoned (its thread exited)",
    );

    for (i, seg) in snap.segments.iter().enumerate() {
        let y = strips_y + i as f64 * (ROW_H + ROW_GAP);
        segment(w, i, seg, y);
    }
    let _ = writeln!(w, "</svg>");
    s
}

/// One strip: label, slots, and the share of the segment in use.
fn segment(w: &mut String, index: usize, seg: &Segment, y: f64) {
    let x0 = MARGIN + LABEL_W;
    let cell = STRIP_W / seg.slots.len().max(1) as f64;
    let ty = y + 13.0;
    let _ = writeln!(
        w,
        "<g class=\"segment\"><title>segment {} ({} slots of {}){}</title>",
        esc(&seg.addr),
        seg.slots.len(),
        bytes(seg.slot_bytes),
        if seg.abandoned { ", abandoned" } else { "" }
    );
    let _ = writeln!(
        w,
        "<text x=\"{}\" y=\"{ty}\" fill=\"#888\" text-anchor=\"end\">{index}</text>\
         <text x=\"{}\" y=\"{ty}\" font-family=\"{MONO}\">{}</text>",
        MARGIN + 20.0,
        MARGIN + 26.0,
        esc(&seg.addr)
    );
    let mut used_bytes = 0;
    let mut slot = 0;
    while slot < seg.slots.len() {
        let x = x0 + slot as f64 * cell;
        match &seg.slots[slot] {
            Slot::Header => {
                let _ = writeln!(
                    w,
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{ROW_H}\" \
                     fill=\"{HEADER_FILL}\"/>",
                    cell - 1.0
                );
                slot += 1;
            }
            state @ (Slot::Resident | Slot::Purged) => {
                // One box for a run of free slots in the same state.
                let run = seg.slots[slot..].iter().take_while(|s| *s == state).count();
                let wd = run as f64 * cell - 1.0;
                let (fill, title) = if *state == Slot::Resident {
                    ("url(#resident)", "resident")
                } else {
                    ("white", "returned to the OS")
                };
                let _ = writeln!(
                    w,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                     fill=\"{fill}\" stroke=\"{PURGED_STROKE}\" stroke-width=\"0.8\">\
                     <title>{run} free slot(s), {title}</title></rect>",
                    x + 0.4,
                    y + 0.4,
                    wd - 0.8,
                    ROW_H - 0.8
                );
                slot += run;
            }
            Slot::Page {
                block,
                used,
                capacity,
                slots,
            } => {
                let (full, tint) = class_colours(log2(*block));
                let span = (*slots).min(seg.slots.len() - slot);
                let wd = span as f64 * cell - 1.0;
                let occ = if *capacity > 0 {
                    (*used as f64 / *capacity as f64).min(1.0)
                } else {
                    0.0
                };
                let fh = ROW_H * occ;
                used_bytes += used * block;
                let _ = writeln!(
                    w,
                    "<g><title>{} B blocks: {used} of {capacity} in use ({:.0}%), {span} \
                     slot(s)</title><rect x=\"{x:.1}\" y=\"{y}\" width=\"{wd:.1}\" \
                     height=\"{ROW_H}\" fill=\"{tint}\"/><rect x=\"{x:.1}\" y=\"{:.1}\" \
                     width=\"{wd:.1}\" height=\"{fh:.1}\" fill=\"{full}\"/></g>",
                    block,
                    occ * 100.0,
                    y + ROW_H - fh
                );
                slot += span;
            }
            Slot::Continued => slot += 1, // drawn with its page; orphans stay blank
        }
    }
    let seg_bytes = seg.slot_bytes * seg.slots.len() as u64;
    let (stroke, extra) = if seg.abandoned {
        (ABANDONED, " stroke-width=\"2\" stroke-dasharray=\"6 3\"")
    } else {
        ("#666", " stroke-width=\"0.6\"")
    };
    let _ = writeln!(
        w,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{stroke}\"{extra}/>",
        x0 - 1.5,
        y - 1.5,
        STRIP_W + 2.0,
        ROW_H + 3.0
    );
    let pct = 100.0 * used_bytes as f64 / seg_bytes.max(1) as f64;
    let _ = writeln!(
        w,
        "<text x=\"{}\" y=\"{}\">{pct:.0}% in use{}</text>",
        x0 + STRIP_W + 10.0,
        y + 13.0,
        if seg.abandoned {
            format!(", <tspan fill=\"{ABANDONED}\" font-weight=\"bold\">abandoned</tspan>")
        } else {
            String::new()
        }
    );
    let _ = writeln!(w, "</g>");
}

// ---- checks for `cargo xtask test` ----

/// Checks that `svg` is well-formed as far as tags go: every element closed in order, one
/// `svg` root, nothing outside it. Returns the number of `<g class="segment">` strips.
pub fn check_svg(svg: &str) -> Result<usize, String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut strips = 0;
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        if stack.is_empty() && !rest[..open].trim().is_empty() {
            return Err("text outside the root element".into());
        }
        rest = &rest[open..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").ok_or("unterminated comment")?;
            rest = &body[end + 3..];
            continue;
        }
        let close = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if tag.contains('<') {
            return Err(format!("`<` inside a tag: `{tag}`"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                Some(open) => return Err(format!("</{}> closes <{open}>", name.trim())),
                None => return Err(format!("</{}> without an open element", name.trim())),
            }
            continue;
        }
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        if name.is_empty() {
            return Err(format!("bad tag `<{tag}>`"));
        }
        if tag.matches('"').count() & 1 == 1 {
            return Err(format!("unbalanced quotes in `<{tag}>`"));
        }
        if stack.is_empty() {
            roots += 1;
            if name != "svg" {
                return Err(format!("root element <{name}>, expected <svg>"));
            }
        }
        if name == "g" && tag.contains("class=\"segment\"") {
            strips += 1;
        }
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    if !rest.trim().is_empty() {
        return Err("text after the root element".into());
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> never closed"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(strips)
}

/// `cargo xtask heapmap --backend B -- heapmap_demo`, as the README says; the SVG must be
/// well-formed with one strip per `segment` line of the snapshot.
pub fn test_demo(backend: Backend, bins: &Path) -> Result<(), String> {
    let demo = bins.join("prog-heapmap_demo");
    let mut c = cmd::cargo();
    c.args(["xtask", "heapmap", "--backend", backend.name(), "--"])
        .arg(&demo)
        .arg("2");
    let r = cmd::capture(&mut c, Duration::from_secs(600))?;
    if !r.success() {
        return Err(format!(
            "`{}`: {}\n{}",
            cmd::show(&c),
            r.outcome(),
            r.stderr_tail(20)
        ));
    }
    let (txt, svg) = default_paths();
    let text = fs::read_to_string(&txt).map_err(|e| format!("{}: {e}", txt.display()))?;
    let first = text.lines().next().unwrap_or("");
    let want = format!("pagebreak-heapmap 1 backend={} ", backend.name());
    if !first.starts_with(&want) {
        return Err(format!("{}: first line `{first}`", txt.display()));
    }
    let lines = text.lines().filter(|l| l.starts_with("segment ")).count();
    if lines == 0 {
        return Err(format!("{}: no segment lines", txt.display()));
    }
    let picture = fs::read_to_string(&svg).map_err(|e| format!("{}: {e}", svg.display()))?;
    let strips = check_svg(&picture).map_err(|e| format!("{}: {e}", svg.display()))?;
    if strips != lines {
        return Err(format!(
            "{}: {strips} strips for {lines} segments",
            svg.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = "pagebreak-heapmap 1 backend=mmap reserved=8388608 allocated=1000 huge=1\n\
        segment 0x7f0000000000 65536 4 0 H B:48:10:1365:1 R P\n\
        segment 0x7f0000400000 524288 4 1 H B:917504:1:1:2 C P\n";

    #[test]
    fn parses_and_renders() {
        let snap = parse(SNAP).unwrap();
        assert_eq!(snap.segments.len(), 2);
        assert!(snap.segments[1].abandoned);
        assert_eq!(
            snap.segments[0].slots[1],
            Slot::Page {
                block: 48,
                used: 10,
                capacity: 1365,
                slots: 1
            }
        );
        let svg = render(&snap);
        assert_eq!(check_svg(&svg), Ok(2));
        assert!(svg.contains("abandoned"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("hello\n").is_err());
        assert!(parse("pagebreak-heapmap 1 backend=x\nsegment 0x0 65536 2 0 H\n").is_err());
        assert!(parse("pagebreak-heapmap 1\nsegment 0x0 65536 1 0 X\n").is_err());
    }

    #[test]
    fn tag_balance() {
        assert_eq!(
            check_svg("<svg><g class=\"segment\"><rect/></g></svg>"),
            Ok(1)
        );
        assert!(check_svg("<svg><g></svg>").is_err());
        assert!(check_svg("<svg></svg><svg></svg>").is_err());
        assert!(check_svg("<svg><rect></svg>").is_err());
        assert!(check_svg("<svg>").is_err());
    }
}
