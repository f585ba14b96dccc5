//! The plain-text top list, as `jeprof --text` prints it: per function, the bytes allocated
//! by the function itself (flat: it is the innermost frame) and by it or anything it called
//! (cum), sorted by flat.

use crate::profile::{Profile, View};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

/// One function of the top list.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub function: String,
    pub flat: f64,
    pub cum: f64,
}

/// Every function with its flat and cumulative bytes in `view`, largest flat first (then
/// largest cum, then name, so the order is stable).
pub fn top(profile: &Profile, view: View) -> Vec<Entry> {
    let mut by_name: HashMap<&str, (f64, f64)> = HashMap::new();
    for stack in &profile.stacks {
        let bytes = stack.values.space(view);
        if bytes <= 0.0 {
            continue;
        }
        let mut seen = HashSet::new();
        for (i, frame) in profile.frames(stack).enumerate() {
            let e = by_name.entry(frame.function.as_str()).or_default();
            if i == 0 {
                e.0 += bytes;
            }
            // A recursive function counts once per stack.
            if seen.insert(frame.function.as_str()) {
                e.1 += bytes;
            }
        }
    }
    let mut entries: Vec<Entry> = by_name
        .into_iter()
        .map(|(f, (flat, cum))| Entry {
            function: f.to_string(),
            flat,
            cum,
        })
        .collect();
    entries.sort_by(|a, b| {
        b.flat
            .total_cmp(&a.flat)
            .then(b.cum.total_cmp(&a.cum))
            .then_with(|| a.function.cmp(&b.function))
    });
    entries
}

/// Bytes in binary units, one decimal: `512 B`, `1.5 KiB`, `3.0 MiB`.
pub fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes.abs() < 1024.0 {
        return format!("{bytes:.0} B");
    }
    let mut v = bytes / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn percent(part: f64, total: f64) -> f64 {
    if total > 0.0 {
        100.0 * part / total
    } else {
        0.0
    }
}

/// Writes the top list: a `Total:` line, a header, then at most `limit` functions
/// (0: all) as `flat flat% sum% cum cum% function`.
pub fn write_text(
    profile: &Profile,
    view: View,
    limit: usize,
    mut out: impl Write,
) -> io::Result<()> {
    let total = profile.total().space(view);
    let entries = top(profile, view);
    let what = match view {
        View::InuseSpace => "live heap",
        View::AllocSpace => "allocated since start",
    };
    writeln!(
        out,
        "Total: {} {what} ({}), estimated from samples every {} on average",
        human(total),
        view.name(),
        human(profile.interval as f64)
    )?;
    writeln!(
        out,
        "{:>10} {:>6} {:>6} {:>10} {:>6}  function",
        "flat", "flat%", "sum%", "cum", "cum%"
    )?;
    let shown = if limit == 0 {
        entries.len()
    } else {
        limit.min(entries.len())
    };
    let mut sum = 0.0;
    for e in &entries[..shown] {
        sum += e.flat;
        writeln!(
            out,
            "{:>10} {:>5.1}% {:>5.1}% {:>10} {:>5.1}%  {}",
            human(e.flat),
            percent(e.flat, total),
            percent(sum, total),
            human(e.cum),
            percent(e.cum, total),
            e.function
        )?;
    }
    if shown < entries.len() {
        writeln!(
            out,
            "({} more functions; --top 0 shows all)",
            entries.len() - shown
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(0.0), "0 B");
        assert_eq!(human(1023.0), "1023 B");
        assert_eq!(human(1536.0), "1.5 KiB");
        assert_eq!(human(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(human(5.0 * (1u64 << 40) as f64), "5.0 TiB");
    }
}
