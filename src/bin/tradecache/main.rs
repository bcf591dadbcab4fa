//! `tradecache`: the operator's command-line tool (feature `cli`). The
//! code is in `cli.rs` and the modules beside it, compiled into the library
//! as its hidden `cli` module so that it can use the crate's own
//! connection, key layout and decoders without their being public.

fn main() -> std::process::ExitCode {
    tradecache::cli::main()
}
