//! Gives `libpagebreak.so` its SONAME, `libpagebreak.so.<major>` (`libpagebreak.so.0` for
//! 0.x): programs linked with `-lpagebreak` then record that name (DT_NEEDED), and
//! distributions can install the versioned file with its links (`cargo xtask install`).
//! The C ABI is what the SONAME promises: a new major version only when it breaks.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
        // For the cdylib only: the rlib and the staticlib have no SONAME.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpagebreak.so.{major}");
    }
}
