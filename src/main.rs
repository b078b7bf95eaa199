//! The `regsweep` command: parses the command line, sets up logging (regsweep's own events
//! only), runs `app`, publishes the run's metrics and exits with its code. No logic of its own.

use clap::Parser;

use regsweep::app::{self, EXIT_FATAL, EXIT_USAGE};
use regsweep::cli::{Cli, Config};
use regsweep::logging;
use regsweep::report::metrics;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let started = logging::format_from_env();
    logging::set_format(started);
    let cli = match Cli::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's whole message (what is missing, the tip), without the usage dump.
            let msg = without_usage(&e.to_string());
            if logging::is_json() {
                let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
                logging::error(one_line(msg));
            } else {
                eprintln!("regsweep: {msg}");
            }
            std::process::exit(EXIT_USAGE);
        }
    };
    if let Some(opts) = cli.events() {
        logging::init(cli.args.log_format, logging::filter(cli.args.verbose));
        std::process::exit(regsweep::evidence::events::run(&opts));
    }
    let (mode, args) = cli.split();
    logging::init(args.log_format, logging::filter(args.verbose));
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            logging::error(one_line(&e));
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match app::run_mode(&cfg, &mode) {
        Ok(code) => code,
        Err(e) => {
            logging::error(one_line(&format!("{e:#}")));
            EXIT_FATAL
        }
    };
    std::process::exit(publish_metrics(&cfg, code));
}

/// Writes and pushes the run's metrics (a failed run's too); a run that went through but
/// whose metrics could not be delivered exits 1, each failure named on one line.
fn publish_metrics(cfg: &Config, code: i32) -> i32 {
    match metrics::publish(&cfg.metrics, &cfg.recorder, code) {
        Ok(()) => code,
        Err(errors) => {
            for e in errors {
                logging::error(e);
            }
            if metrics::success(code) {
                EXIT_FATAL
            } else {
                code
            }
        }
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
