//! Lays out the `sinew` binary's code by use.
//!
//! One binary holds the sidecar, the control plane, the broker and the demo apps: about
//! 12 MB of machine code, of which a sidecar runs about 2 MB. Left where the compiler puts
//! it, that code is spread over most of the text, and the kernel maps a file-backed page
//! together with its neighbours (fault-around, 64 KiB): an idle sidecar kept 4.6 MB of the
//! binary resident. `link/text-order.txt` lists the functions that ran, in first-run order:
//! a static sidecar's, then a sidecar's under the control plane, then the control plane's
//! (made by `bench/orderfile.sh` under callgrind). This script turns the list into a linker
//! script that places those functions first and together, in `.text.ordered`.
//!
//! The list names functions without the hashes that symbol mangling adds (a `*` stands
//! for them), so it survives code changes, dependency updates and toolchains; a function
//! renamed or removed since is simply not placed, which costs memory, never correctness.
//! A function the compiler deems cold (`#[cold]`, say a table's rehash) has its section
//! named `.text.unlikely.NAME`, so both names are matched.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

const LIST: &str = "link/text-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-env-changed=SINEW_TEXT_ORDER");
    let applied =
        links_with_lld() && !env::var("SINEW_TEXT_ORDER").is_ok_and(|v| v == "0") && apply_order();
    // Tells the tests (suite::code_layout) whether to expect the layout.
    println!("cargo:rustc-env=SINEW_TEXT_ORDERED={}", u8::from(applied));
}

/// Writes the linker script and passes it to the link of the binary; false if it cannot.
fn apply_order() -> bool {
    let list = fs::read_to_string(LIST).expect("crates/sinew/link/text-order.txt is readable");
    let mut script = String::from("SECTIONS {\n  .text.ordered : {\n");
    for name in list.lines().map(str::trim) {
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b)),
            "{LIST}: {name:?} is not a symbol name or pattern"
        );
        writeln!(script, "    *(.text.{name} .text.unlikely.{name})").expect("writing to a String");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let path = Path::new(&out).join("text-order.ld");
    fs::write(&path, script).expect("OUT_DIR is writable");
    let path = path.display().to_string();
    // `-Wl,` splits its argument at commas.
    if path.contains(',') {
        return false;
    }
    println!("cargo:rustc-link-arg-bin=sinew=-Wl,-T,{path}");
    true
}

/// Whether the link uses LLD, whose linker scripts can add an output section to the
/// default layout (`INSERT`): Rust's default linker for this target since 1.90 (the
/// workspace's `rust-version`), unless a linker was chosen in the configuration or flags.
fn links_with_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    if env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    !["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|chosen| flags.contains(chosen))
}
