//! One run: validate, scan and plan, report, and (unless dry-run) delete.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};

use crate::cli::StorageConfig;
use crate::cli::{Config, DeleteVia, Mode, Output};
use crate::delete::journal::{self, Journal, Record, Unfinished};
use crate::delete::verify::StorageReverify;
use crate::delete::{self, Missed, Outcome, Progress, RegistryClient, Target};
use crate::pipeline::{Planned, plan_storage_counted};
use crate::plan::Policies;
use crate::planfile;
use crate::report::progress::{Quiet, TextProgress};
use crate::report::status::{Counting, Status};
use crate::report::{json, text};
use crate::s3::S3Store;
use crate::scan::Storage;
use crate::scan::fs::FsStorage;
use crate::scan::s3::S3Storage;

/// Exit code: everything done.
pub const EXIT_OK: i32 = 0;
/// Exit code: fatal error before deleting (or a stop that makes every further delete fail).
pub const EXIT_FATAL: i32 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: finished, some deletions failed.
pub const EXIT_PARTIAL: i32 = 3;
/// Exit code: finished, but something was skipped (a repository failed closed, a warning,
/// a deletion skipped because storage changed).
pub const EXIT_SKIPPED: i32 = 4;
/// Exit code: stopped by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The policies a configuration asks for, as of now.
pub fn policies(cfg: &Config) -> Policies {
    let mut p = cfg.policies.clone();
    p.set_now(chrono::Utc::now().timestamp());
    p
}

/// Prints every warning, failed-closed repository and note on stderr, one line each.
fn warn_all(planned: &Planned) {
    let mut err = io::stderr().lock();
    for w in &planned.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    for p in &planned.plans {
        for problem in &p.problems {
            let _ = writeln!(
                err,
                "warning: repository {} fails closed (nothing in it is deleted): {problem}",
                p.name
            );
        }
        for note in &p.notes {
            let _ = writeln!(err, "warning: repository {}: {note}", p.name);
        }
    }
}

fn print_json(
    cfg: &Config,
    planned: &Planned,
    outcome: Option<&Outcome>,
    requests: Option<serde_json::Value>,
) -> Result<()> {
    let mut report = json::build(
        &planned.plans,
        &planned.warnings,
        cfg.dry_run,
        json::PolicyView {
            hash_tag_pattern: cfg.hash_tag_patterns.first().map_or("", String::as_str),
            hash_tag_patterns: &cfg.hash_tag_patterns,
            keep_tags: cfg.policies.base.keep_tags.as_ref().map(|r| r.as_str()),
            older_than_seconds: cfg.policies.base.older_than_secs,
            rules: cfg
                .policies
                .rules
                .iter()
                .map(|r| r.patterns.clone())
                .collect(),
            hash_tag_keep: cfg.keep,
            min_age_seconds: cfg.min_age_secs,
        },
        &cfg.policies,
        outcome,
    );
    report.s3_requests = requests;
    report.totals.bytes_freed = planned.bytes_freed;
    report.totals.unsized_blobs = planned.unsized_blobs;
    // Buffered: stdout is line-buffered, and a report has lines by the million.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &report).context("writing the JSON report")?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The garbage-collect estimate of a plan.
fn estimate(planned: &Planned) -> text::Freed {
    text::Freed {
        bytes: planned.bytes_freed,
        unsized_blobs: planned.unsized_blobs,
        upper_bound_of: None,
    }
}

/// `--delete-via storage` needs the registry stopped or read-only: say so when
/// `REGISTRY_URL` answers (a read-only registry answers too, so this only warns).
fn warn_if_registry_answers(rt: &tokio::runtime::Runtime, url: Option<&str>) {
    let Some(url) = url else { return };
    let probe = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .danger_accept_invalid_certs(true)
            .build()
            .ok()?;
        client.get(format!("{url}/v2/")).send().await.ok()
    };
    if let Some(r) = rt.block_on(probe) {
        eprintln!(
            "warning: --delete-via storage, but the registry at {url} answers ({}): it must be stopped or \
             read-only while regsweep removes links under it",
            r.status()
        );
    }
}

/// Checks a policy time read from a file: a time in the future would turn the grace
/// period off, one before 1970 is no time regsweep wrote.
fn policy_time(what: &str, now: i64) -> Result<i64> {
    let real = chrono::Utc::now().timestamp();
    if now < 0 || now > real.saturating_add(300) {
        return Err(anyhow!(
            "{what}: its time {now} is not a past time (now is {real}): refusing a grace period measured from it"
        ));
    }
    Ok(now)
}

/// Loads an unfinished journal, if the configuration names one and a run is to delete.
fn unfinished(cfg: &Config) -> Result<Option<Unfinished>> {
    match &cfg.journal {
        Some(path) if !cfg.dry_run => {
            let u = journal::load(path).map_err(|e| anyhow!(e))?;
            if let Some(u) = &u {
                let remaining = u.remaining().len();
                eprintln!(
                    "regsweep: resuming the run recorded in {}: {remaining} of {} planned deletions remain",
                    path.display(),
                    u.planned.len()
                );
                if !u.unreadable_lines.is_empty() {
                    eprintln!(
                        "warning: journal {}: torn lines {:?} ignored (that can only mean fewer deletes)",
                        path.display(),
                        u.unreadable_lines
                    );
                }
            }
            Ok(u)
        }
        _ => Ok(None),
    }
}

/// What a SIGINT/SIGTERM does: before deletes start, exit 130 at once (nothing was
/// deleted); once they run, the first stops scheduling deletes, the second exits.
struct Signals {
    /// Set by the first signal while deleting: no new deletes.
    cancel: Arc<AtomicBool>,
    /// Deletes have started.
    deleting: Arc<AtomicBool>,
}

/// Installs the SIGINT / SIGTERM handling, before the scan starts.
fn install_signals(rt: &tokio::runtime::Runtime) -> Result<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = Arc::new(AtomicBool::new(false));
    let deleting = Arc::new(AtomicBool::new(false));
    let (flag, phase) = (cancel.clone(), deleting.clone());
    let _guard = rt.enter();
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if !phase.load(Ordering::SeqCst) {
                eprintln!("regsweep: interrupted before any delete: nothing was deleted");
                std::process::exit(EXIT_INTERRUPTED);
            }
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("regsweep: interrupted again: exiting now");
                std::process::exit(EXIT_INTERRUPTED);
            }
            eprintln!("regsweep: interrupted: no new deletes; finishing those in flight (again to exit now)");
        }
    });
    Ok(Signals { cancel, deleting })
}

/// The exit code for a run that finished without fatal errors or failed deletes.
fn clean_exit(planned: &Planned, outcome: Option<&Outcome>) -> i32 {
    let skipped = outcome.is_some_and(|o| !o.skipped.is_empty());
    let closed = planned.plans.iter().any(|p| !p.problems.is_empty());
    if skipped || closed || !planned.warnings.is_empty() {
        EXIT_SKIPPED
    } else {
        EXIT_OK
    }
}

/// Restricts the fresh plans to the plan file's entries that still hold; returns the others.
fn restrict_to_plan_file(planned: &mut Planned, file: &planfile::PlanFile) -> Vec<Missed> {
    let mut refused = Vec::new();
    let mut plans = Vec::with_capacity(planned.plans.len());
    for entry in &file.repositories {
        let Some(fresh) = planned.plans.iter().find(|p| *p.name == *entry.name) else {
            refused.extend(entry.delete.iter().map(|e| Missed {
                repository: entry.name.clone(),
                digest: e.digest,
                why: "the repository is gone since the plan".to_owned(),
            }));
            continue;
        };
        let (ok, no) = planfile::admit(entry, fresh);
        let ok: crate::digest::DigestSet = ok.into_iter().collect();
        refused.extend(no.into_iter().map(|(digest, why)| Missed {
            repository: entry.name.clone(),
            digest,
            why,
        }));
        plans.push(Arc::new(fresh.restrict_to(|d| ok.contains(d))));
    }
    planned.plans = plans;
    refused
}

/// Runs regsweep with a validated configuration; returns the process exit code.
pub fn run(cfg: &Config) -> Result<i32> {
    run_mode(cfg, &Mode::Run)
}

/// Runs regsweep in `mode` (plain run, `plan`, `apply`); returns the process exit code.
pub fn run_mode(cfg: &Config, mode: &Mode) -> Result<i32> {
    let mut policy = policies(cfg);
    let plan_file = match mode {
        Mode::Apply(path) => Some(planfile::read(path).map_err(|e| anyhow!(e))?),
        _ => None,
    };
    let mut filter = cfg.filter.clone();
    if let (Mode::Apply(path), Some(f)) = (mode, &plan_file) {
        policy_time(&format!("plan file {}", path.display()), f.now)?;
    }
    if let Some(f) = &plan_file {
        // Plan as of the plan's time (same grace-period verdicts), only its repositories.
        policy.set_now(f.now);
        filter.names = Some(f.repositories.iter().map(|r| r.name.clone()).collect());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signals = install_signals(&rt)?;
    // Check the registry before a long scan: a wrong URL or password fails fast.
    let client = match &cfg.client {
        Some(opts) => {
            if opts.insecure {
                eprintln!("warning: SELF_SIGNED_CERT: TLS certificate verification is off");
            }
            Some(
                rt.block_on(RegistryClient::connect(opts.clone()))
                    .map_err(|e| anyhow!(e))?,
            )
        }
        None => None,
    };
    if cfg.delete_via == DeleteVia::Storage && !cfg.dry_run {
        warn_if_registry_answers(&rt, cfg.registry_url.as_deref());
    }
    let resume = unfinished(cfg)?;
    if let (Some(u), Some(path)) = (&resume, &cfg.journal) {
        policy_time(&format!("journal {}", path.display()), u.now)?;
    }
    if let Some(u) = &resume {
        // The same policy time as the interrupted run: the same grace-period verdicts.
        policy.set_now(u.now);
    }
    let started = std::time::Instant::now();
    let links = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let storage: Arc<dyn Storage> = match &cfg.storage {
        StorageConfig::Fs(root) => {
            Arc::new(FsStorage::new(root, cfg.threads).with_progress(links.clone()))
        }
        StorageConfig::S3(o) => {
            let store = rt.block_on(S3Store::connect(o)).map_err(|e| anyhow!(e))?;
            Arc::new(
                S3Storage::new(Arc::new(store), rt.handle().clone()).with_progress(links.clone()),
            )
        }
    };
    // Started once storage answers: a connection error stays one line.
    let status = Status::start_counting(cfg.progress, links);
    if let (Mode::Apply(path), Some(f)) = (mode, &plan_file)
        && f.storage != storage.kind()
    {
        return Err(anyhow!(
            "plan file {}: made on {} storage, this run reads {} storage",
            path.display(),
            f.storage,
            storage.kind()
        ));
    }
    let mut planned = plan_storage_counted(
        &*storage,
        &filter,
        &policy,
        cfg.threads,
        Some(&status.counters),
    );
    status.counters.scan_done();
    if let Some(name) = &cfg.filter.exact
        && planned.plans.is_empty()
    {
        eprintln!(
            "regsweep: error: REPO_FILTER: repository {name:?} not found in the {} storage",
            storage.kind()
        );
        return Ok(EXIT_USAGE);
    }
    if cfg.filter.globs.is_some() && planned.plans.is_empty() {
        planned.warnings.push(format!(
            "REPO_GLOB/--repo {:?} selects no repository in the {} storage: nothing to do",
            cfg.repo_globs,
            storage.kind()
        ));
    }
    if let Some(r) = storage.requests() {
        tracing::debug!(requests = %r, "S3 requests for the scan");
    }
    tracing::debug!(
        repositories = planned.plans.len(),
        manifests = planned
            .plans
            .iter()
            .map(|p| p.decisions.len())
            .sum::<usize>(),
        deletes = planned
            .plans
            .iter()
            .map(|p| p.delete_count())
            .sum::<usize>(),
        seconds = started.elapsed().as_secs_f64(),
        "scanned and planned"
    );
    if let Some(u) = &resume {
        let remaining = u.remaining();
        planned.plans = planned
            .plans
            .iter()
            .map(|p| Arc::new(p.restrict_to(|d| remaining.contains(&(p.name.to_string(), *d)))))
            .collect();
    }
    let mut refused: Vec<Missed> = Vec::new();
    if let Some(f) = &plan_file {
        refused = restrict_to_plan_file(&mut planned, f);
        for m in &refused {
            eprintln!(
                "regsweep: refused: {} in {}: {}",
                m.digest, m.repository, m.why
            );
        }
    }
    warn_all(&planned);
    let header = text::Header {
        storage: storage.kind(),
        dry_run: cfg.dry_run,
        repo_filter: cfg.filter.exact.as_deref(),
        keep: text::KeepNote::of(cfg.keep, &planned.plans, |name| policy.for_repo(name).keep),
        summary_only: cfg.summary_only,
    };
    if cfg.output == Output::Text {
        let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
        text::write_summary(&mut out, &header, &planned.plans)?;
        if cfg.dry_run {
            text::write_dry_run(
                &mut out,
                &planned.plans,
                &estimate(&planned),
                cfg.summary_only,
            )?;
        }
        out.flush()?;
    }
    if let Mode::Plan(out) = mode {
        let file = planfile::build(
            &planned.plans,
            policy.now(),
            storage.kind(),
            planned.bytes_freed,
        );
        planfile::write(out, &file).map_err(|e| anyhow!(e))?;
        let n: usize = file.repositories.iter().map(|r| r.delete.len()).sum();
        eprintln!(
            "regsweep: plan with {n} deletions in {} repositories written to {}; carry it out with `regsweep apply {}`",
            file.repositories.len(),
            out.display(),
            out.display()
        );
    }
    // What is already decided before any delete: the plan file's refused entries.
    let before_deletes = Outcome {
        skipped: refused,
        ..Outcome::default()
    };
    let target = match cfg.delete_via {
        _ if cfg.dry_run => None,
        DeleteVia::Storage => Some(Target::Storage(storage.clone())),
        DeleteVia::Api => client.map(|c| Target::Api(Box::new(c))),
    };
    let Some(target) = target else {
        if cfg.output == Output::Json {
            print_json(cfg, &planned, None, storage.requests())?;
        }
        return Ok(clean_exit(&planned, Some(&before_deletes)));
    };
    let journal = match &cfg.journal {
        Some(path) => {
            let j = Journal::open(path).map_err(|e| anyhow!(e))?;
            j.record(Record::Begin {
                now: policy.now(),
                resumed: resume.is_some(),
            });
            Some(j)
        }
        None => None,
    };
    let total: usize = planned.plans.iter().map(|p| p.delete_count()).sum();
    if total == 0 {
        if let Some(j) = journal {
            j.record(Record::End);
            j.close().map_err(|e| anyhow!(e))?;
        }
        match cfg.output {
            Output::Text => {
                let mut out = io::stdout().lock();
                writeln!(out)?;
                writeln!(out, "No manifests without tags found. Nothing to do.")?;
            }
            Output::Json => print_json(cfg, &planned, Some(&before_deletes), storage.requests())?,
        }
        return Ok(clean_exit(&planned, Some(&before_deletes)));
    }
    let progress: Box<dyn Progress> = match cfg.output {
        Output::Text => {
            text::write_untagged_heading(&mut io::stdout().lock(), &planned.plans)?;
            Box::new(TextProgress::new(total, cfg.summary_only))
        }
        Output::Json => Box::new(Quiet),
    };
    status.counters.start_deletes(total);
    let progress = Box::new(Counting {
        inner: progress,
        counters: status.counters.clone(),
    });
    let who = cfg
        .client
        .as_ref()
        .and_then(|c| c.credentials.as_ref())
        .map_or_else(|| "no credentials".to_owned(), |c| c.describe());
    let run = delete::Run {
        target,
        who,
        reverify: Box::new(StorageReverify {
            storage: storage.clone(),
            policy,
        }),
        progress,
        repo_parallelism: cfg.client.as_ref().map_or(8, |c| c.concurrency),
        journal,
        cancel: signals.cancel.clone(),
        reverify_window: cfg.reverify_window,
    };
    signals.deleting.store(true, Ordering::SeqCst);
    let mut outcome = rt.block_on(delete::execute(run, planned.plans.clone()));
    outcome.skipped.extend(before_deletes.skipped);
    drop(status);
    match cfg.output {
        Output::Text => text::write_closing(
            &mut io::stdout().lock(),
            &planned.plans,
            &outcome,
            total,
            &estimate(&planned),
        )?,
        Output::Json => print_json(cfg, &planned, Some(&outcome), storage.requests())?,
    }
    if let Some(e) = &outcome.journal_error {
        eprintln!("regsweep: error: {e}");
    }
    for m in &outcome.failed {
        eprintln!(
            "regsweep: failed: {} in {}: {}",
            m.digest, m.repository, m.why
        );
    }
    if outcome.interrupted {
        eprintln!(
            "regsweep: interrupted: {} deletions not attempted; rerun (with the same --journal) to finish",
            outcome.not_attempted
        );
        return Ok(EXIT_INTERRUPTED);
    }
    if let Some(fatal) = &outcome.fatal {
        eprintln!("regsweep: error: {fatal}");
        return Ok(EXIT_FATAL);
    }
    if !outcome.failed.is_empty() || outcome.journal_error.is_some() {
        return Ok(EXIT_PARTIAL);
    }
    Ok(clean_exit(&planned, Some(&outcome)))
}
