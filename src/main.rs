//! The `regsweep` command: parses the command line, sets up logging (regsweep's own events
//! only), resolves the configuration, runs `app`, publishes the run's metrics and exits
//! with its code. No logic of its own.

use clap::Parser;

use regsweep::app;
use regsweep::config::args::Invocation;
use regsweep::config::{Cli, Config, usage};
use regsweep::exit::Exit;
use regsweep::logging;
use regsweep::report::metrics;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    logging::set_format(logging::format_from_env());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => usage_error(&usage::message(e)),
    };
    let (task, args) = match cli.invocation() {
        Invocation::Events(opts, args) => {
            logging::init(args.log_format, logging::filter(args.verbose));
            regsweep::evidence::events::serve(&opts).exit()
        }
        Invocation::Run(task, args) => (task, args),
    };
    logging::init(args.log_format, logging::filter(args.verbose));
    let cfg = match args.resolve(task) {
        Ok(cfg) => cfg,
        Err(e) => {
            logging::error(one_line(&e.to_string()));
            Exit::Usage.exit()
        }
    };
    let exit = match app::run(&cfg) {
        Ok(exit) => exit,
        Err(e) => {
            logging::error(one_line(&format!("{e:#}")));
            Exit::Fatal
        }
    };
    publish_metrics(&cfg, exit).exit()
}

/// Prints clap's usage error on stderr (one line in JSON logs) and exits 2.
fn usage_error(msg: &str) -> ! {
    if logging::is_json() {
        logging::error(one_line(msg));
    } else {
        eprintln!("regsweep: error: {msg}");
    }
    Exit::Usage.exit()
}

/// Writes and pushes the run's metrics (a failed run's too); a run that went through but
/// whose metrics could not be delivered exits 1, each failure named on one line.
fn publish_metrics(cfg: &Config, exit: Exit) -> Exit {
    match metrics::publish(&cfg.metrics, &cfg.recorder, exit) {
        Ok(()) => exit,
        Err(errors) => {
            for e in errors {
                logging::error(e);
            }
            if exit.succeeded() { Exit::Fatal } else { exit }
        }
    }
}

/// Folds a multi-line message (a regex error, say) onto one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
