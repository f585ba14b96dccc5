//! The statistics table printed at exit (`PAGEBREAK_SHOW_STATS=1`) and by `malloc_stats()`.

use core::fmt::Write;

use alloc_core::size_class::{class_size, NUM_CLASSES};
use alloc_core::Stats;

use crate::report::LineBuf;

fn line(args: core::fmt::Arguments<'_>) {
    let mut buf = LineBuf::new();
    let _ = buf.write_fmt(args);
    let _ = buf.write_str("\n");
    buf.write_stderr();
}

/// Write `stats` to stderr as a table, one `write(2)` per line, allocating nothing.
pub(crate) fn print_stats(stats: &Stats, backend: &str) {
    line(format_args!("pagebreak statistics (backend {backend})"));
    let kib = |b: usize| b / 1024;
    line(format_args!(
        "  allocated      {:>12} KiB",
        kib(stats.allocated)
    ));
    line(format_args!(
        "  reserved       {:>12} KiB (peak {} KiB)",
        kib(stats.reserved),
        kib(stats.peak_reserved)
    ));
    line(format_args!(
        "  cached         {:>12} KiB resident in freed spans",
        kib(stats.cached_resident)
    ));
    line(format_args!("  segments       {:>12}", stats.segments));
    line(format_args!(
        "  huge blocks    {:>12} ({} KiB)",
        stats.huge_count,
        kib(stats.huge_bytes)
    ));
    line(format_args!(
        "  purges         {:>12} ({} KiB)",
        stats.purges,
        kib(stats.purged_bytes)
    ));
    line(format_args!("  remote frees   {:>12}", stats.remote_frees));
    line(format_args!(
        "  heaps          {:>12} live, {} parked, {} abandoned segments",
        stats.heaps, stats.parked_heaps, stats.abandoned_segments
    ));
    let g = &stats.guarded;
    if g.slots != 0 {
        line(format_args!(
            "  guarded        {:>12} blocks ({} live in {} slots, {} sampled when full)",
            g.allocated, g.live, g.slots, g.pool_full
        ));
    }
    line(format_args!(
        "  {:>10} {:>12} {:>14}",
        "class size", "live blocks", "live KiB"
    ));
    for class in 1..NUM_CLASSES {
        let live = stats.class_live[class];
        if live != 0 {
            let size = class_size(class);
            line(format_args!(
                "  {:>10} {:>12} {:>14}",
                size,
                live,
                kib(live * size)
            ));
        }
    }
}
