//! `tradecache`: the operator's command-line tool (feature `cli`), in
//! `cli.rs` beside this file.

fn main() -> std::process::ExitCode {
    tradecache::cli::main()
}
