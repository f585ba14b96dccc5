//! Reads pagebreak's raw heap-profile dumps (FORMAT.md) and turns them into a flame graph
//! (SVG), a gzipped pprof profile and a `jeprof --text`-style top list, symbolising the
//! addresses offline against the files on this machine.
//!
//! ```no_run
//! use pagebreak_prof::{Dump, Profile, View};
//! let dump = Dump::parse(&std::fs::read_to_string("heap.prof").unwrap()).unwrap();
//! let profile = Profile::build(&dump, Default::default());
//! pagebreak_prof::text::write_text(&profile, View::InuseSpace, 20, std::io::stdout()).unwrap();
//! ```

pub mod dump;
pub mod flame;
pub mod maps;
pub mod pprof;
pub mod profile;
pub mod symbolize;
pub mod text;

pub use dump::{Dump, ParseError};
pub use profile::{Profile, View};
pub use symbolize::Options;
