//! The message IDs as Rust constants, generated from
//! message-catalog/ids.lock (the append-only register of every ID and its
//! name, which a test checks against the catalog): `PW2003
//! processDisappeared` becomes `pub const PROCESS_DISAPPEARED: &str =
//! "PW2003";`. The IDs are written in one place; the code names them.

use std::fmt::Write;

fn main() {
    symbol_order();
    let lock = "message-catalog/ids.lock";
    println!("cargo:rerun-if-changed={lock}");
    let text = std::fs::read_to_string(lock).expect("message-catalog/ids.lock");
    let mut out = String::new();
    for line in text.lines().filter(|l| l.starts_with("PW")) {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
            panic!("{lock}: `{line}` is not `ID name`");
        };
        let mut constant = String::new();
        for c in name.chars() {
            if c.is_ascii_uppercase() {
                constant.push('_');
            }
            constant.push(c.to_ascii_uppercase());
        }
        writeln!(out, "/// `{name}`.\npub const {constant}: &str = \"{id}\";").unwrap();
    }
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("msg.rs");
    std::fs::write(dest, out).unwrap();
}

/// The daemon's functions first in the release binary's text
/// (link/symbol-order.txt, made by scripts/symbol-order.sh): the kernel
/// maps an executable's pages in whole folios, so the functions the daemon
/// runs, together, keep far fewer of them resident than scattered over the
/// text (BENCHMARKS.md, "Where the memory goes"). rust-lld, the default
/// linker of x86_64-unknown-linux-gnu, does the ordering; a name it does
/// not find is skipped. `PROCWARD_NO_SYMBOL_ORDER=1` leaves it out (another
/// linker).
fn symbol_order() {
    let order = "link/symbol-order.txt";
    println!("cargo:rerun-if-changed={order}");
    println!("cargo:rerun-if-env-changed=PROCWARD_NO_SYMBOL_ORDER");
    let wanted = std::env::var("PROFILE").as_deref() == Ok("release")
        && std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && std::env::var_os("PROCWARD_NO_SYMBOL_ORDER").is_none()
        && std::path::Path::new(order).exists();
    if wanted {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={dir}/{order}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
