//! The flame graph: stacks folded outermost-first (innermost last, as flame graphs expect),
//! weighted by estimated bytes, drawn by inferno.

use crate::profile::{Profile, View};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// The folded stacks (`main;f;g BYTES`), one line per distinct stack of frame names, sorted,
/// stacks whose estimate rounds to zero bytes left out.
pub fn folded(profile: &Profile, view: View) -> Vec<String> {
    let mut merged: BTreeMap<String, f64> = BTreeMap::new();
    for stack in &profile.stacks {
        let bytes = stack.values.space(view);
        if bytes <= 0.0 {
            continue;
        }
        let mut names: Vec<String> = profile
            .frames(stack)
            .map(|f| f.function.replace(';', ":"))
            .collect();
        names.reverse();
        *merged.entry(names.join(";")).or_default() += bytes;
    }
    merged
        .into_iter()
        .filter_map(|(k, v)| {
            let v = v.round() as u64;
            (v > 0).then(|| format!("{k} {v}"))
        })
        .collect()
}

/// Writes the flame graph of `view` as SVG. A profile with nothing to show still gets a
/// small SVG that says so.
pub fn write_svg(profile: &Profile, view: View, out: impl Write) -> io::Result<()> {
    let lines = folded(profile, view);
    let title = match view {
        View::InuseSpace => "pagebreak heap profile: live heap (inuse_space)",
        View::AllocSpace => "pagebreak heap profile: allocated since start (alloc_space)",
    };
    if lines.is_empty() {
        return write_empty(title, out);
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.subtitle = Some(subtitle(profile));
    opts.count_name = "bytes".into();
    opts.colors =
        inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    // Colours from a hash of the name: the same function keeps its colour from run to run.
    opts.hash = true;
    opts.deterministic = true;
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}

fn subtitle(profile: &Profile) -> String {
    let mut s = format!("sampling interval {} bytes", profile.interval);
    if let Some(exe) = &profile.exe {
        s = format!("{exe}, {s}");
    }
    if let Some(pid) = profile.pid {
        s.push_str(&format!(", pid {pid}"));
    }
    s
}

fn write_empty(title: &str, mut out: impl Write) -> io::Result<()> {
    write!(
        out,
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="80" xmlns="http://www.w3.org/2000/svg">
<text x="600" y="24" text-anchor="middle" font-family="Verdana" font-size="17">{}</text>
<text x="600" y="56" text-anchor="middle" font-family="Verdana" font-size="12">no sampled allocations to show</text>
</svg>
"#,
        title
    )
}
