//! `pagebreak-prof`: the command line over the library.

use pagebreak_prof::{flame, pprof, text, Dump, Options, Profile, View};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: pagebreak-prof [OPTIONS] DUMP

Reads a raw heap profile written by pagebreak (PAGEBREAK_PROFILE), symbolises it with the
files on this machine, and writes what is asked. With none of --svg, --pprof, --text:
all three, to DUMP.svg, DUMP.pb.gz and standard output.

options:
  --inuse_space       the live heap: sampled blocks not yet freed (default)
  --alloc_space       everything allocated since start, freed or not
  --svg PATH          write a flame graph (SVG) of the chosen view
  --pprof PATH        write a gzipped pprof profile (all four sample types; `go tool pprof`)
  --text              print the top list (flat, flat%, sum%, cum, cum%, function)
  --top N             functions in the top list (default 20; 0: all)
  --sysroot DIR       look for the mapped files under DIR (a copy of the machine's files)
  --debug-dir DIR     look for separate debug files in DIR/.build-id (default /usr/lib/debug)
  -h, --help          this text
";

struct Args {
    dump: PathBuf,
    view: View,
    svg: Option<PathBuf>,
    pprof: Option<PathBuf>,
    text: bool,
    top: usize,
    options: Options,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut dump = None;
    let mut view = View::InuseSpace;
    let (mut svg, mut pprof, mut text) = (None, None, false);
    let mut top = 20;
    let mut options = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--inuse_space" | "--inuse-space" => view = View::InuseSpace,
            "--alloc_space" | "--alloc-space" => view = View::AllocSpace,
            "--svg" => svg = Some(PathBuf::from(value(a)?)),
            "--pprof" => pprof = Some(PathBuf::from(value(a)?)),
            "--text" => text = true,
            "--top" => {
                let v = value(a)?;
                top = v
                    .parse()
                    .map_err(|_| format!("--top takes a number, not `{v}`"))?;
            }
            "--sysroot" => options.sysroot = Some(PathBuf::from(value(a)?)),
            "--debug-dir" => options.debug_dirs.push(PathBuf::from(value(a)?)),
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown option `{s}`")),
            s => {
                if dump.replace(PathBuf::from(s)).is_some() {
                    return Err("one dump at a time".into());
                }
            }
        }
    }
    let dump = dump.ok_or("no dump given")?;
    if svg.is_none() && pprof.is_none() && !text {
        let with = |ext: &str| {
            let mut p = dump.clone().into_os_string();
            p.push(ext);
            PathBuf::from(p)
        };
        svg = Some(with(".svg"));
        pprof = Some(with(".pb.gz"));
        text = true;
    }
    Ok(Some(Args {
        dump,
        view,
        svg,
        pprof,
        text,
        top,
        options,
    }))
}

fn create(path: &PathBuf) -> Result<BufWriter<File>, String> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn run(args: Args) -> Result<(), String> {
    let raw = std::fs::read_to_string(&args.dump)
        .map_err(|e| format!("cannot read {}: {e}", args.dump.display()))?;
    let dump = Dump::parse(&raw).map_err(|e| format!("{}: {e}", args.dump.display()))?;
    let profile = Profile::build(&dump, args.options);
    for w in &profile.warnings {
        eprintln!("pagebreak-prof: warning: {w}");
    }
    if let Some(path) = &args.svg {
        let mut out = create(path)?;
        flame::write_svg(&profile, args.view, &mut out)
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!(
            "pagebreak-prof: flame graph ({}): {}",
            args.view.name(),
            path.display()
        );
    }
    if let Some(path) = &args.pprof {
        let mut out = create(path)?;
        pprof::write_gz(&pprof::build(&profile, args.view), &mut out)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("pagebreak-prof: pprof profile: {}", path.display());
    }
    if args.text {
        let stdout = io::stdout();
        text::write_text(&profile, args.view, args.top, stdout.lock())
            .map_err(|e| format!("writing the top list: {e}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(None) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(a)) => match run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pagebreak-prof: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("pagebreak-prof: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
