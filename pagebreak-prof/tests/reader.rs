//! The dump parser against FORMAT.md-conformant fixtures written by hand, and the ways a
//! dump can be broken.

use pagebreak_prof::dump::{Reason, Total};
use pagebreak_prof::{Dump, Profile, View};

const BASIC: &str = include_str!("fixtures/basic.prof");

#[test]
fn parses_every_record_of_format_md() {
    let d = Dump::parse(BASIC).unwrap();
    assert_eq!(d.interval, 524288);
    assert_eq!(d.pid, Some(4242));
    assert_eq!(d.reason, Some(Reason::Oom));
    assert_eq!(d.time, Some(1764650000));
    assert_eq!(d.exe.as_deref(), Some("/usr/bin/prog with space"));
    assert_eq!(d.samples, Some(3));
    assert_eq!(
        d.stacks,
        vec![(7, vec![0x55d0c0001234, 0x55d0c0005678]), (8, vec![])]
    );
    assert_eq!(
        d.totals[&7],
        Total {
            count: 2,
            requested_bytes: 2097152,
            estimated_bytes: 2352640
        }
    );
    assert_eq!(d.live.len(), 2);
    assert_eq!(d.live[1].align, 4096);
    assert_eq!(d.live[1].thread, 4244);
    assert_eq!(d.live[1].address, 0x7f3a00101000);
    assert_eq!(d.maps.len(), 2);
    assert_eq!(d.maps[0].file(), Some("/usr/bin/prog with space"));
    assert_eq!(d.maps[1].path, "[vdso]");
    assert_eq!(d.build_ids["/usr/bin/prog with space"], "3f2a9c0b");
}

#[test]
fn truncated_dump_is_a_clear_error() {
    let e = Dump::parse(include_str!("fixtures/truncated.prof")).unwrap_err();
    assert!(
        e.to_string().contains("truncated dump: no `end` line"),
        "{e}"
    );
    // Cut anywhere, even mid-line: still reported as truncated, never half-read.
    for cut in [BASIC.len() / 3, BASIC.len() / 2, BASIC.len() - 5] {
        let e = Dump::parse(&BASIC[..cut]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}");
    }
}

fn with_line(after: &str, line: &str) -> String {
    BASIC.replacen(after, &format!("{after}{line}\n"), 1)
}

#[test]
fn malformed_dumps_name_the_line() {
    let cases = [
        (
            BASIC.replace("pagebreak-profile 1", "pagebreak-profile 2"),
            1,
            "version 2",
        ),
        (
            BASIC.replace("pagebreak-profile 1", "heap v2/1"),
            1,
            "not a pagebreak heap profile",
        ),
        (
            with_line("stack 8\n", "live 7 1 16 1"),
            11,
            "`live` takes 5 fields",
        ),
        (
            with_line("stack 8\n", "total 7 1 x 1"),
            11,
            "`x` is not a number",
        ),
        (
            with_line("stack 8\n", "stack 8 0x1"),
            11,
            "stack 8 defined twice",
        ),
        (
            with_line("stack 8\n", "stack 9 0xzz"),
            11,
            "`0xzz` is not an address",
        ),
        (
            with_line("stack 8\n", "map nonsense"),
            11,
            "not a /proc/self/maps line",
        ),
        (
            format!("{BASIC}live 7 1 16 1 0x10\n"),
            19,
            "text after `end`",
        ),
        (
            BASIC.replace("interval 524288\n", ""),
            0,
            "no `interval` line",
        ),
        (String::new(), 0, "empty dump"),
    ];
    for (text, line, message) in cases {
        let e = Dump::parse(&text).unwrap_err();
        assert_eq!(e.line, line, "{message}: {e}");
        assert!(
            e.message.contains(message),
            "expected `{message}`, got `{e}`"
        );
    }
}

#[test]
fn weights_live_blocks_and_totals() {
    let d = Dump::parse(BASIC).unwrap();
    // The files are not on this machine: every frame falls back to module+offset.
    let p = Profile::build(&d, Default::default());
    let s7 = p.stacks.iter().find(|s| s.id == 7).unwrap();
    let w = 1.0 / (1.0 - (-2.0f64).exp()); // 1 MiB blocks at a 512 KiB interval
    assert!((s7.values.inuse_objects - 2.0 * w).abs() < 1e-9);
    assert!((s7.values.inuse_space - 2.0 * w * 1048576.0).abs() < 1e-6);
    assert_eq!(s7.values.alloc_space, 2352640.0);
    assert!((s7.values.alloc_objects - 2.0 * 2352640.0 / 2097152.0).abs() < 1e-9);
    let frames: Vec<_> = p.frames(s7).map(|f| f.function.as_str()).collect();
    assert_eq!(
        frames,
        ["prog with space+0x2234", "prog with space+0x6678"],
        "file offset = address - start + mapping offset"
    );
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("/usr/bin/prog with space")));
    // The empty stack has no live blocks: only alloc_space shows it.
    assert!(d.unknown_stacks.is_empty());
    let s8 = p.stacks.iter().find(|s| s.id == 8).unwrap();
    assert_eq!(s8.values.inuse_space, 0.0);
    let alloc = pagebreak_prof::flame::folded(&p, View::AllocSpace);
    assert!(
        alloc.contains(&"[unknown stack] 524296".to_string()),
        "{alloc:?}"
    );
    let inuse = pagebreak_prof::flame::folded(&p, View::InuseSpace);
    assert_eq!(inuse.len(), 1, "{inuse:?}");
    assert!(inuse[0].starts_with("prog with space+0x6678;prog with space+0x2234 "));
}

#[test]
fn stacks_named_without_a_stack_line_count_as_unknown() {
    // Id 0: the writer's stack table was full. Id 9: interned while the dump was written
    // (its `live` record was read after the stack lines).
    let text = with_line(
        "stack 8\n",
        "total 0 1 65536 560000\nlive 0 65536 16 1 0x10",
    );
    let text = text.replace("map 55d0", "live 9 1048576 16 1 0x20\nmap 55d0");
    let d = Dump::parse(&text).unwrap();
    assert_eq!(d.unknown_stacks, vec![0, 9]);
    assert!(d.stacks.contains(&(0, vec![])) && d.stacks.contains(&(9, vec![])));
    let p = Profile::build(&d, Default::default());
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("2 stack id(s) named without")));
    let top = pagebreak_prof::text::top(&p, View::InuseSpace);
    let unknown = top
        .iter()
        .find(|e| e.function == "[unknown stack]")
        .unwrap();
    let w = |size: f64| size / -f64::exp_m1(-size / 524288.0);
    assert!(
        (unknown.flat - w(65536.0) - w(1048576.0)).abs() < 1e-6,
        "{unknown:?}"
    );
    let pb = pagebreak_prof::pprof::build(&p, View::InuseSpace);
    let unknown_samples = pb
        .sample
        .iter()
        .filter(|s| {
            let loc = pb
                .location
                .iter()
                .find(|l| l.id == s.location_id[0])
                .unwrap();
            let f = pb
                .function
                .iter()
                .find(|f| f.id == loc.line[0].function_id)
                .unwrap();
            pb.string_table[f.name as usize] == "[unknown stack]"
        })
        .count();
    assert_eq!(unknown_samples, 2 + 1, "ids 0 and 9, and the empty stack 8");
}
