//! The `coffer` command; everything lives in the library's `cli` module.

fn main() {
    std::process::exit(coffer::cli::main());
}
