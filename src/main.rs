//! The `regsweep` command.

use clap::Parser;

use regsweep::app::{self, EXIT_FATAL, EXIT_USAGE};
use regsweep::cli::Cli;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line naming what is wrong, like every other usage error.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("regsweep: {first}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let (mode, args) = cli.split();
    // Only regsweep's own events: HTTP libraries' debug output could carry headers.
    let filter = if args.verbose {
        tracing_subscriber::EnvFilter::new("regsweep=debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_env("REGSWEEP_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("regsweep: error: {}", one_line(&e));
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match app::run_mode(&cfg, &mode) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regsweep: error: {}", one_line(&format!("{e:#}")));
            EXIT_FATAL
        }
    };
    std::process::exit(code);
}

/// Folds a multi-line message (a regex error, say) onto one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
