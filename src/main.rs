//! The `regsweep` command.

use clap::Parser;
use mimalloc::MiMalloc;

use regsweep::app::{self, EXIT_FATAL, EXIT_USAGE};
use regsweep::cli::Args;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("REGSWEEP_LOG"))
        .init();
    let cfg = match Args::parse().validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("regsweep: error: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match app::run(&cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regsweep: error: {e:#}");
            EXIT_FATAL
        }
    };
    std::process::exit(code);
}
