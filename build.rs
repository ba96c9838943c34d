//! The message IDs as Rust constants, generated from
//! message-catalog/ids.lock (the append-only register of every ID and its
//! name, which a test checks against the catalog): `PW2003
//! processDisappeared` becomes `pub const PROCESS_DISAPPEARED: &str =
//! "PW2003";`. The IDs are written in one place; the code names them.

use std::fmt::Write;

fn main() {
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
