//! The reader against a real program: a PIE executable and a shared library built here with
//! debug info, whose three call sites hold 60/30/10% of the live heap; the program writes a
//! FORMAT.md dump itself (real return addresses, maps, build ids).

mod common;

use pagebreak_prof::pprof::{self, proto};
use pagebreak_prof::{flame, text, Dump, Profile, View};
use std::collections::HashMap;

const SITES: [(&str, &str, &str, f64, f64); 3] = [
    // function, source, marker, share of the live heap, share of the allocated total
    (
        "alloc_sixty",
        "three_sites.c",
        "site:sixty",
        0.6,
        60.0 / 190.0,
    ),
    (
        "alloc_thirty",
        "three_sites.c",
        "site:thirty",
        0.3,
        30.0 / 190.0,
    ),
    ("alloc_ten", "libthree.c", "site:ten", 0.1, 100.0 / 190.0),
];

fn profile(name: &str) -> Profile {
    let (_, text) = common::dump(name);
    let dump = Dump::parse(&text).unwrap();
    Profile::build(&dump, Default::default())
}

#[test]
fn symbolises_pie_and_shared_library_with_lines() {
    let p = profile("symbols");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.stacks.len(), 3);
    for (function, file, marker, _, _) in SITES {
        let stack = p
            .stacks
            .iter()
            .find(|s| p.frames(s).next().unwrap().function == function)
            .unwrap_or_else(|| panic!("no stack starts in {function}"));
        let frames: Vec<_> = p.frames(stack).collect();
        // The sampler's frames (pagebreak_sample_record, pagebreak_fixture_malloc) were
        // trimmed from the leaf; the call site is the innermost frame, at its line.
        let leaf = frames[0];
        assert!(
            leaf.file.as_deref().unwrap().ends_with(file),
            "{function}: {leaf:?}"
        );
        assert_eq!(leaf.line, Some(common::line_of(file, marker)), "{function}");
        assert_eq!(frames[1].function, "main", "{frames:?}");
        assert!(!frames.iter().any(|f| f.function.starts_with("pagebreak_")));
        // The library's frame resolved through libthree.so's own mapping.
        let r = &p.resolved[&stack.addresses[0]];
        let mapped = &p.maps[r.mapping.unwrap()];
        let want = if file == "libthree.c" {
            "libthree.so"
        } else {
            "three_sites"
        };
        assert_eq!(mapped.short_name(), want);
    }
}

#[test]
fn top_list_attributes_the_shares() {
    let p = profile("top");
    for view in [View::InuseSpace, View::AllocSpace] {
        let total = p.total().space(view);
        let entries = text::top(&p, view);
        for (function, _, _, live, alloc) in SITES {
            let share = if view == View::InuseSpace {
                live
            } else {
                alloc
            };
            let e = entries.iter().find(|e| e.function == function).unwrap();
            assert!(
                (e.flat / total - share).abs() < 1e-6,
                "{function} {view:?}: {} of {total}",
                e.flat
            );
        }
        let main = entries.iter().find(|e| e.function == "main").unwrap();
        assert_eq!(main.flat, 0.0);
        assert!((main.cum - total).abs() < 1e-6);
    }
    // Every block is 64 KiB at a 512 KiB interval: each stands for 1/(1-e^-1/8) blocks.
    let w = 1.0 / -f64::exp_m1(-1.0 / 8.0);
    assert!((p.total().inuse_space - 100.0 * 65536.0 * w).abs() < 1.0);
    assert!((p.total().inuse_objects - 100.0 * w).abs() < 1e-6);

    let mut out = Vec::new();
    text::write_text(&p, View::InuseSpace, 3, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Total: 53.2 MiB live heap (inuse_space)"),
        "{out}"
    );
    assert!(
        lines[2].contains(" 60.0%  60.0% ") && lines[2].ends_with("  alloc_sixty"),
        "{out}"
    );
    assert!(
        lines[3].contains(" 30.0%  90.0% ") && lines[3].ends_with("  alloc_thirty"),
        "{out}"
    );
    assert!(
        lines[4].contains(" 10.0% 100.0% ") && lines[4].ends_with("  alloc_ten"),
        "{out}"
    );
    assert!(lines[5].starts_with("(4 more functions"), "{out}");
}

/// `title` texts of the SVG's frames: "name (N bytes, P%)".
fn frame_titles(svg: &str) -> HashMap<String, f64> {
    // inferno writes a DOCTYPE (the SVG 1.1 DTD), which roxmltree refuses unless told.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(svg, options)
        .expect("the flame graph is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut out = HashMap::new();
    for t in doc.descendants().filter(|n| n.has_tag_name("title")) {
        let text = t.text().unwrap_or_default();
        if let Some((name, rest)) = text.rsplit_once(" (") {
            let pct = rest
                .rsplit_once(", ")
                .and_then(|(_, p)| p.strip_suffix("%)"))
                .and_then(|p| p.parse::<f64>().ok());
            if let Some(pct) = pct {
                out.insert(name.to_string(), pct);
            }
        }
    }
    out
}

#[test]
fn flame_graph_is_well_formed_and_names_the_sites() {
    let p = profile("flame");
    for view in [View::InuseSpace, View::AllocSpace] {
        let mut svg = Vec::new();
        flame::write_svg(&p, view, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        let titles = frame_titles(&svg);
        for (function, _, _, live, alloc) in SITES {
            let share = if view == View::InuseSpace {
                live
            } else {
                alloc
            };
            let pct = titles
                .get(function)
                .unwrap_or_else(|| panic!("{function} not in the {view:?} SVG: {titles:?}"));
            assert!((pct - 100.0 * share).abs() < 0.01, "{function}: {pct}%");
        }
        assert_eq!(titles.get("main"), Some(&100.0));
        assert!(
            !titles.keys().any(|k| k.starts_with("pagebreak_")),
            "{titles:?}"
        );
        assert!(svg.contains(view.name()));
    }
    // Folded innermost-last: main calls each site.
    let folded = flame::folded(&p, View::InuseSpace);
    for (function, ..) in SITES {
        assert!(
            folded
                .iter()
                .any(|l| l.contains(&format!(";main;{function} "))),
            "{folded:?}"
        );
    }
}

fn string(p: &proto::Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

#[test]
fn pprof_round_trip() {
    let p = profile("pprof");
    let mut gz = Vec::new();
    pprof::write_gz(&pprof::build(&p, View::InuseSpace), &mut gz).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let d = pprof::read(&gz).unwrap();

    assert_eq!(string(&d, 0), "");
    let types: Vec<(&str, &str)> = d
        .sample_type
        .iter()
        .map(|t| (string(&d, t.r#type), string(&d, t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    assert_eq!(string(&d, d.default_sample_type), "inuse_space");
    let period = d.period_type.as_ref().unwrap();
    assert_eq!(
        (string(&d, period.r#type), string(&d, period.unit)),
        ("space", "bytes")
    );
    assert_eq!(d.period, 524288);
    assert_eq!(d.time_nanos, 1_764_650_000_000_000_000);

    let functions: HashMap<u64, &proto::Function> = d.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &proto::Location> = d.location.iter().map(|l| (l.id, l)).collect();
    let mappings: HashMap<u64, &proto::Mapping> = d.mapping.iter().map(|m| (m.id, m)).collect();
    assert!(
        string(&d, d.mapping[0].filename).ends_with("/three_sites"),
        "main binary first"
    );
    assert_eq!(d.sample.len(), 3);
    let w = 1.0 / -f64::exp_m1(-1.0 / 8.0);
    let mut seen = 0;
    for s in &d.sample {
        assert_eq!(s.value.len(), 4);
        let leaf = locations[&s.location_id[0]];
        let f = functions[&leaf.line[0].function_id];
        let name = string(&d, f.name);
        let (_, file, marker, live, alloc) = SITES.iter().find(|x| x.0 == name).unwrap();
        seen += 1;
        assert!(string(&d, f.filename).ends_with(file));
        assert_eq!(leaf.line[0].line, i64::from(common::line_of(file, marker)));
        let m = mappings[&leaf.mapping_id];
        assert!(m.memory_start <= leaf.address && leaf.address < m.memory_limit);
        assert!(m.has_functions && m.has_line_numbers);
        assert_eq!(
            string(&d, m.build_id).len(),
            40,
            "a 160-bit GNU build id in hex"
        );
        // Values: the blocks held live (100 in all, 60/30/10) and allocated (190 in all).
        let inuse_blocks = (live * 100.0).round();
        let alloc_blocks = (alloc * 190.0).round();
        assert_eq!(
            s.value[2],
            (inuse_blocks * w).round() as i64,
            "{name} inuse_objects"
        );
        assert_eq!(
            s.value[3],
            (inuse_blocks * w * 65536.0).round() as i64,
            "{name} inuse_space"
        );
        assert!(
            (s.value[0] as f64 - alloc_blocks * w).abs() <= 1.0,
            "{name} alloc_objects"
        );
        assert!(
            (s.value[1] as f64 - alloc_blocks * w * 65536.0).abs() <= 1.0,
            "{name} alloc_space"
        );
        // The stack goes on to main.
        let names: Vec<&str> = s
            .location_id
            .iter()
            .flat_map(|id| locations[id].line.iter())
            .map(|l| string(&d, functions[&l.function_id].name))
            .collect();
        assert_eq!(names[1], "main", "{names:?}");
    }
    assert_eq!(seen, 3);
}

#[test]
fn build_id_mismatch_warns_and_falls_back() {
    let (_, text) = common::dump("buildid");
    let exe = common::program().to_str().unwrap().to_string();
    let prefix = format!("buildid {exe} ");
    let changed: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{prefix}{}\n", "0".repeat(40))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(changed, text, "the fixture writes its build id");
    let p = Profile::build(&Dump::parse(&changed).unwrap(), Default::default());
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("differs from the dump's"),
        "{}",
        p.warnings[0]
    );
    let names: Vec<&str> = p
        .stacks
        .iter()
        .flat_map(|s| p.frames(s))
        .map(|f| f.function.as_str())
        .collect();
    // The program's frames are offsets now (its sampler frames too: nothing says they are
    // the allocator's, so none is trimmed); the library keeps its names.
    assert!(names.contains(&"alloc_ten"), "{names:?}");
    assert!(
        !names.contains(&"alloc_sixty") && !names.contains(&"main"),
        "{names:?}"
    );
    let exe_frames = names
        .iter()
        .filter(|l| l.starts_with("three_sites+0x"))
        .count();
    // sampler, wrapper, site, main, _start twice; sampler, wrapper, main, _start once.
    assert_eq!(exe_frames, 5 + 5 + 4, "{names:?}");
}

#[test]
fn command_line_writes_all_three() {
    let (dump, _) = common::dump("cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagebreak-prof"))
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("alloc_sixty"), "{stdout}");
    let svg = dump.with_extension("prof.svg");
    let pb = dump.with_extension("prof.pb.gz");
    assert!(stderr.contains(&svg.display().to_string()), "{stderr}");
    assert!(stderr.contains(&pb.display().to_string()), "{stderr}");
    assert!(frame_titles(&std::fs::read_to_string(&svg).unwrap()).contains_key("alloc_ten"));
    assert_eq!(
        pprof::read(&std::fs::read(&pb).unwrap())
            .unwrap()
            .sample
            .len(),
        3
    );

    // A truncated dump: exit 1 and one clear line.
    let cut = dump.with_file_name("cut.prof");
    let text = std::fs::read_to_string(&dump).unwrap();
    std::fs::write(&cut, &text[..text.len() - 4]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagebreak-prof"))
        .arg(&cut)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("truncated dump"), "{stderr}");
}

/// The dump read elsewhere: the files under a sysroot, stripped of everything, their debug
/// info in a separate `.build-id` tree (as distributions ship it).
#[test]
fn sysroot_and_separate_debug_files() {
    let (_, text) = common::dump("sysroot");
    let exe = common::program();
    let dir = exe.parent().unwrap();
    let root = dir.join("sysroot");
    let debug = dir.join("debug");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&debug);
    // The dump names /opt/three/...; only the sysroot has them.
    let fake = "/opt/pagebreak-prof-test-three";
    let text = text.replace(&dir.display().to_string(), fake);
    let under = root.join(fake.trim_start_matches('/'));
    std::fs::create_dir_all(&under).unwrap();
    let p = Profile::build(&Dump::parse(&text).unwrap(), Default::default());
    assert!(
        p.warnings.iter().any(|w| w.contains(fake)),
        "without a sysroot the files are missing: {:?}",
        p.warnings
    );
    for name in ["three_sites", "libthree.so"] {
        let original = dir.join(name);
        let stripped = under.join(name);
        let id = build_id_in_dump(&text, &format!("{fake}/{name}"));
        let debug_file = debug
            .join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..]));
        std::fs::create_dir_all(debug_file.parent().unwrap()).unwrap();
        let run = |args: &[&std::ffi::OsStr]| {
            let ok = std::process::Command::new("objcopy")
                .args(args)
                .status()
                .expect("objcopy (binutils) is needed")
                .success();
            assert!(ok, "objcopy {args:?}");
        };
        run(&[
            "--only-keep-debug".as_ref(),
            original.as_os_str(),
            debug_file.as_os_str(),
        ]);
        run(&[
            "--strip-all".as_ref(),
            original.as_os_str(),
            stripped.as_os_str(),
        ]);
    }
    let options = pagebreak_prof::Options {
        sysroot: Some(root.clone()),
        debug_dirs: vec![debug.clone()],
    };
    let p = Profile::build(&Dump::parse(&text).unwrap(), options);
    // (libc is not in the sysroot: only its frames may be missing.)
    assert!(
        !p.warnings.iter().any(|w| w.contains(fake)),
        "{:?}",
        p.warnings
    );
    for (function, file, marker, _, _) in SITES {
        let stack = p
            .stacks
            .iter()
            .find(|s| p.frames(s).next().unwrap().function == function)
            .unwrap_or_else(|| panic!("no stack starts in {function}"));
        let leaf = p.frames(stack).next().unwrap();
        assert_eq!(leaf.line, Some(common::line_of(file, marker)), "{function}");
    }
    // Stripped and without the debug tree: names from the dynamic symbol table only (the
    // program is linked -rdynamic), no lines.
    let options = pagebreak_prof::Options {
        sysroot: Some(root),
        debug_dirs: vec![dir.join("no-such-dir")],
    };
    let p = Profile::build(&Dump::parse(&text).unwrap(), options);
    let leaves: Vec<_> = p
        .stacks
        .iter()
        .map(|s| p.frames(s).next().unwrap())
        .collect();
    for (function, ..) in SITES {
        let leaf = leaves.iter().find(|f| f.function == function).unwrap();
        assert_eq!((leaf.file.as_deref(), leaf.line), (None, None), "{leaf:?}");
    }
}

fn build_id_in_dump(text: &str, path: &str) -> String {
    let prefix = format!("buildid {path} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no build id for {path}"))
        .to_string()
}
