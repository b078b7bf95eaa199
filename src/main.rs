//! The `regsweep` command: parses the command line, sets up logging (regsweep's own events
//! only), runs `app` and exits with its code. No logic of its own.

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
            // clap's whole message (what is missing, the tip), without the usage dump.
            eprintln!("regsweep: {}", without_usage(&e.to_string()));
            std::process::exit(EXIT_USAGE);
        }
    };
    let (mode, args) = cli.split();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter(args.verbose))
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

/// The log filter: only regsweep's own events, ever. HTTP and AWS libraries' debug output
/// can carry headers (credentials, tokens), so `REGSWEEP_LOG` sets regsweep's level only.
fn log_filter(verbose: bool) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::filter::LevelFilter;
    let level = if verbose {
        Some(LevelFilter::DEBUG)
    } else {
        std::env::var("REGSWEEP_LOG").ok().and_then(|v| {
            let v = v.trim().to_ascii_lowercase();
            let level = v.strip_prefix("regsweep=").unwrap_or(&v);
            let parsed = level.parse::<LevelFilter>().ok();
            if parsed.is_none() {
                eprintln!(
                    "warning: REGSWEEP_LOG={v:?}: give a level (error, warn, info, debug, trace); \
                     other crates' logs are never enabled"
                );
            }
            parsed
        })
    };
    match level {
        Some(l) => tracing_subscriber::EnvFilter::new(format!("warn,regsweep={l}")),
        None => tracing_subscriber::EnvFilter::new("warn"),
    }
}

/// A clap error without its `Usage:` block and blank lines.
fn without_usage(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_usage = false;
    for line in text.lines() {
        if line.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if in_usage && (line.starts_with(' ') || line.is_empty()) {
            continue;
        }
        in_usage = false;
        if !line.trim().is_empty() && !line.starts_with("For more information") {
            out.push(line.trim_end());
        }
    }
    out.join("\n")
}

/// Folds a multi-line message (a regex error, say) onto one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
