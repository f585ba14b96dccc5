//! Project tasks: `cargo xtask <command>` (the alias lives in .cargo/config.toml).

mod aarch64;
mod abi;
mod bench;
mod build;
mod cmd;
mod cpp;
mod ctests;
mod fastpath;
mod heapmap;
mod install;
mod limits;
mod misuse;
mod profile;
mod proftests;
mod programs;
mod run;
mod soak;
mod test;
mod threads;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build [--backend mmap|brk] [--debug]
        build libpagebreak.so and .a; prints their absolute paths
  run [--backend mmap|brk] [--debug] -- PROGRAM ARGS...
        build, then run PROGRAM with libpagebreak.so in LD_PRELOAD
  test [--keep-going]
        everything: cargo test, Miri on alloc-core, the C tests and real
        programs under both backends, the aarch64 tests under qemu
  aarch64 [--keep-going]
        only the aarch64 tests: cross-built, run under qemu-aarch64 at 4, 16 and
        64 KiB pages (needs qemu-user, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
  ctest [--backend mmap|brk|glibc] [NAME...]
        only the C tests in tests/c (glibc: without preload, to check the tests)
  cpp [--backend mmap|brk|glibc] [NAME...]
        only the C++ tests in tests/cpp, each preloaded, linked with -lpagebreak and with .a
  install --prefix DIR [--backend mmap|brk]
        install lib/libpagebreak.so.X.Y.Z (with links libpagebreak.so.X, libpagebreak.so),
        lib/libpagebreak.a, include/pagebreak.h, lib/pkgconfig/pagebreak.pc
  exports [--backend mmap|brk]
        check that libpagebreak.so exports exactly the symbols of tests/link/exports.txt
  link [--backend mmap|brk]
        the export list, C programs linked with the .a and -lpagebreak (SONAME), and
        `install` used through pkg-config
  heapmap [--backend mmap|brk] -- PROGRAM ARGS...
        run PROGRAM preloaded; draw its heap at exit to target/pagebreak-heapmap.svg
  profile [--backend mmap|brk] [--interval BYTES] [--alloc_space] [-o DIR] -- PROGRAM ARGS...
        run PROGRAM preloaded with heap profiling on; write a flame graph (SVG) and a
        pprof profile of it with pagebreak-prof, print the top list and both paths
  misuse [--backend mmap|brk] [NAME...]
        only the deliberate-misuse programs in tests/misuse (each must abort with its report)
  limits [--backend mmap|brk|glibc] [NAME...]
        only the limits tests in tests/limits (RLIMIT_AS, RSS after frees, mappings)
  proftest [--backend mmap|brk]
        only the heap-profile tests in tests/profile (PAGEBREAK_PROFILE on)
  fastpath [--update] [--no-peers] [--compare LIB.so...]
        count the malloc/free fast path in instructions (callgrind) against tests/fastpath/golden.txt,
        and the other allocators' (glibc, mimalloc 2.0.9/2.x/3.x, jemalloc, snmalloc)
  soak --minutes N [--backend mmap|brk] [--cycle-secs S]
        a server-like workload for N minutes, preloaded; RSS and throughput each minute,
        a verdict on the RSS curve at the end (target/pagebreak-soak/*.svg)
  threads [--ops N] [--counts 1,2,8,32,128] [--runs N]
        throughput and single-malloc latency per thread count, pagebreak next to mimalloc
  bench ...
        benchmarks (see `cargo xtask bench --help`)
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    let result = match command.as_str() {
        "build" => build::main(rest),
        "run" => run::main(rest),
        "test" => test::main(rest),
        "ctest" => ctests::main(rest),
        "cpp" => cpp::main(rest),
        "aarch64" => aarch64::main(rest),
        "bench" => bench::main(rest),
        "fastpath" => fastpath::main(rest),
        "misuse" => misuse::main(rest),
        "limits" => limits::main(rest),
        "proftest" => proftests::main(rest),
        "install" => install::main(rest),
        "exports" => abi::main(rest),
        "link" => abi::link_main(rest),
        "heapmap" => heapmap::main(rest),
        "soak" => soak::main(rest),
        "threads" => threads::main(rest),
        "profile" => profile::main(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
