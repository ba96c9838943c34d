//! The `procward` binary: the whole command line is in the library
//! (src/commands.rs), so that the library exposes only what the binary,
//! the tests and the bench use.

fn main() -> std::process::ExitCode {
    procward::commands::main()
}
