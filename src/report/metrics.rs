//! Prometheus metrics of one run, cleanup or `gc`: what it scanned, kept, deleted, failed,
//! skipped and freed, how long each phase took, its exit code and the time of the last
//! successful run; rendered in the Prometheus text format (0.0.4), written atomically to
//! `--metrics-file` and pushed to `--pushgateway` at the end of a run, a failed one too.

use crate::exit::Exit;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use prometheus::{Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::outcome::Outcome;
use crate::plan::{RepoPlan, Verdict};

/// Skip reasons of a cleanup, always exported (zero when none).
const SKIP_REASONS: [&str; 3] = ["storage-changed", "plan-refused", "not-attempted"];

/// The metric holding the time of the last successful run (carried over by a failed run).
pub const LAST_SUCCESS: &str = "regsweep_last_success_timestamp_seconds";

/// Where the metrics go.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--metrics-file`: the textfile collector's file.
    pub file: Option<PathBuf>,
    /// `--pushgateway`: the gateway's base URL.
    pub pushgateway: Option<reqwest::Url>,
    /// The `job` label of the push.
    pub job: String,
    /// The `instance` label of the push: the shard (`K/N`), when there is one.
    pub instance: Option<String>,
}

impl Settings {
    /// Whether metrics go anywhere.
    pub fn wanted(&self) -> bool {
        self.file.is_some() || self.pushgateway.is_some()
    }
}

/// What a run did, as it goes.
#[derive(Debug, Default)]
pub struct Recorder {
    values: Mutex<Values>,
}

/// The recorded values.
#[derive(Debug, Default)]
struct Values {
    command: &'static str,
    dry_run: bool,
    repositories: u64,
    manifests: u64,
    kept: BTreeMap<&'static str, u64>,
    planned: BTreeMap<&'static str, u64>,
    deleted: u64,
    already_gone: u64,
    delete_failed: u64,
    skipped: BTreeMap<&'static str, u64>,
    failed_closed: u64,
    freeable_bytes: u64,
    blobs_marked: u64,
    blobs_unreferenced: u64,
    unreferenced_bytes: u64,
    blobs_swept: u64,
    blobs_sweep_failed: u64,
    freed_bytes: u64,
    phases: Vec<(&'static str, Duration)>,
    current: Option<(&'static str, Instant)>,
    started: Option<Instant>,
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Values) -> T) -> T {
        f(&mut self.values.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The run begins: `command` is `cleanup` or `gc`.
    pub fn begin(&self, command: &'static str, dry_run: bool) {
        self.with(|v| {
            v.command = command;
            v.dry_run = dry_run;
            v.started = Some(Instant::now());
        });
    }

    /// Phase `name` begins; the one before it ends.
    pub fn phase(&self, name: &'static str) {
        self.with(|v| {
            v.end_phase();
            v.current = Some((name, Instant::now()));
        });
    }

    /// A cleanup's plans: manifests scanned, kept and planned for deletion by reason,
    /// repositories failed closed, the estimate of bytes a collection frees.
    pub fn planned(&self, plans: &[Arc<RepoPlan>], bytes_freed: u64) {
        self.with(|v| {
            for p in plans {
                v.repositories += 1;
                v.failed_closed += u64::from(!p.problems.is_empty());
                for d in &p.decisions {
                    v.manifests += 1;
                    let by = match d.verdict {
                        Verdict::Keep => &mut v.kept,
                        Verdict::Delete => &mut v.planned,
                    };
                    *by.entry(p.reason(d).name()).or_default() += 1;
                }
            }
            v.freeable_bytes = bytes_freed;
        });
    }

    /// A cleanup's deletes: what became of each, and the plan file's refusals.
    pub fn deleted(&self, outcome: &Outcome, refused: usize) {
        self.with(|v| {
            v.deleted += outcome.deleted as u64;
            v.already_gone += outcome.already_gone as u64;
            v.delete_failed += outcome.failed.len() as u64;
            for d in &outcome.deletions {
                let reason = match d.result {
                    "skipped" => "storage-changed",
                    "not-attempted" => "not-attempted",
                    _ => continue,
                };
                *v.skipped.entry(reason).or_default() += 1;
            }
            *v.skipped.entry("plan-refused").or_default() += refused as u64;
        });
    }

    /// A collection's mark: blobs some manifest references.
    pub fn marked(&self, blobs: usize) {
        self.with(|v| v.blobs_marked = blobs as u64);
    }

    /// A collection's candidates: unreferenced blobs old enough to go, with their sizes.
    pub fn unreferenced(&self, sizes: impl Iterator<Item = u64>) {
        self.with(|v| {
            for s in sizes {
                v.blobs_unreferenced += 1;
                v.unreferenced_bytes += s;
            }
        });
    }

    /// A collection's sweep: blobs deleted (and their bytes), blobs that failed.
    pub fn swept(&self, deleted: usize, bytes: u64, failed: usize) {
        self.with(|v| {
            v.blobs_swept += deleted as u64;
            v.freed_bytes += bytes;
            v.blobs_sweep_failed += failed as u64;
        });
    }

    /// The metrics of the run that ended with `exit_code`, in the text format; `labels`
    /// are added to every metric, `last_success` is the time of the last successful run
    /// (this one, when `success`).
    pub fn render(
        &self,
        exit_code: i32,
        success: bool,
        last_success: Option<f64>,
        labels: &[(&str, &str)],
    ) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let last_success = if success { Some(now) } else { last_success };
        self.with(|v| {
            v.end_phase();
            Families::new(v.command, labels)
                .and_then(|f| f.fill(v, exit_code, now, last_success))
                .map_err(|e| format!("metrics: {e}"))
        })
    }
}

impl Values {
    fn end_phase(&mut self) {
        if let Some((name, since)) = self.current.take() {
            self.phases.push((name, since.elapsed()));
        }
    }
}

/// The registry every metric of a run is registered with.
struct Families {
    registry: Registry,
    labels: Vec<(String, String)>,
}

type Res<T> = prometheus::Result<T>;

impl Families {
    fn new(command: &str, labels: &[(&str, &str)]) -> Res<Families> {
        let mut all = vec![("command".to_owned(), command.to_owned())];
        all.extend(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Ok(Families {
            registry: Registry::new(),
            labels: all,
        })
    }

    fn opts(&self, name: &str, help: &str) -> Opts {
        self.labels
            .iter()
            .fold(Opts::new(name, help), |o, (k, v)| o.const_label(k, v))
    }

    fn counter(&self, name: &str, help: &str, value: u64) -> Res<()> {
        let c = IntCounter::with_opts(self.opts(name, help))?;
        c.inc_by(value);
        self.registry.register(Box::new(c))
    }

    fn counters(&self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) -> Res<()> {
        let c = IntCounterVec::new(self.opts(name, help), &[label])?;
        for (l, n) in values {
            c.with_label_values(&[*l]).inc_by(*n);
        }
        self.registry.register(Box::new(c))
    }

    fn gauge(&self, name: &str, help: &str, value: f64) -> Res<()> {
        let g = Gauge::with_opts(self.opts(name, help))?;
        g.set(value);
        self.registry.register(Box::new(g))
    }

    fn fill(self, v: &Values, exit_code: i32, now: f64, last_success: Option<f64>) -> Res<String> {
        self.cleanup(v)?;
        self.gc(v)?;
        self.run(v, exit_code, now, last_success)?;
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    fn cleanup(&self, v: &Values) -> Res<()> {
        let list = |m: &BTreeMap<&'static str, u64>| -> Vec<(&str, u64)> {
            m.iter().map(|(k, n)| (*k, *n)).collect()
        };
        let mut skipped: BTreeMap<&str, u64> = SKIP_REASONS.iter().map(|r| (*r, 0)).collect();
        skipped.extend(v.skipped.iter().map(|(k, n)| (*k, *n)));
        self.counter(
            "regsweep_repositories_scanned_total",
            "Repositories scanned and planned.",
            v.repositories,
        )?;
        self.counter(
            "regsweep_repositories_failed_closed_total",
            "Repositories where nothing was deleted because something could not be trusted.",
            v.failed_closed,
        )?;
        self.counter(
            "regsweep_manifests_scanned_total",
            "Manifests (revisions) scanned.",
            v.manifests,
        )?;
        self.counters(
            "regsweep_manifests_kept_total",
            "Manifests kept, by the reason the plan gives.",
            "reason",
            &list(&v.kept),
        )?;
        self.counters(
            "regsweep_manifests_planned_for_deletion_total",
            "Manifests the plan deletes (a dry run only plans), by reason.",
            "reason",
            &list(&v.planned),
        )?;
        self.counter(
            "regsweep_manifests_deleted_total",
            "Manifests deleted.",
            v.deleted,
        )?;
        self.counter(
            "regsweep_manifests_already_gone_total",
            "Manifests planned for deletion that were gone already.",
            v.already_gone,
        )?;
        self.counter(
            "regsweep_manifests_delete_failed_total",
            "Manifest deletions that failed.",
            v.delete_failed,
        )?;
        self.counters(
            "regsweep_manifests_skipped_total",
            "Planned deletions not carried out, by reason.",
            "reason",
            &skipped.into_iter().collect::<Vec<_>>(),
        )?;
        self.gauge(
            "regsweep_estimated_freeable_bytes",
            "Bytes a blob collection frees once the cleanup's plan is carried out.",
            v.freeable_bytes as f64,
        )
    }

    fn gc(&self, v: &Values) -> Res<()> {
        self.counter(
            "regsweep_blobs_marked_total",
            "Blobs a collection's mark found referenced.",
            v.blobs_marked,
        )?;
        self.counter(
            "regsweep_blobs_unreferenced_total",
            "Unreferenced blobs old enough to be swept.",
            v.blobs_unreferenced,
        )?;
        self.counter(
            "regsweep_blobs_unreferenced_bytes_total",
            "Bytes of the unreferenced blobs old enough to be swept.",
            v.unreferenced_bytes,
        )?;
        self.counter(
            "regsweep_blobs_swept_total",
            "Blobs deleted by the sweep.",
            v.blobs_swept,
        )?;
        self.counter(
            "regsweep_blobs_sweep_failed_total",
            "Blobs the sweep could not delete.",
            v.blobs_sweep_failed,
        )?;
        self.counter(
            "regsweep_freed_bytes_total",
            "Bytes of the blobs the sweep deleted.",
            v.freed_bytes,
        )
    }

    fn run(&self, v: &Values, exit_code: i32, now: f64, last_success: Option<f64>) -> Res<()> {
        let phases = GaugeVec::new(
            self.opts(
                "regsweep_phase_duration_seconds",
                "Wall-clock time of each phase of the run.",
            ),
            &["phase"],
        )?;
        for (name, took) in &v.phases {
            phases.with_label_values(&[*name]).add(took.as_secs_f64());
        }
        self.registry.register(Box::new(phases))?;
        let took = v.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        self.gauge(
            "regsweep_run_duration_seconds",
            "Wall-clock time of the whole run.",
            took,
        )?;
        self.gauge(
            "regsweep_exit_code",
            "The run's exit code (0 done, 1 fatal, 3 deletions failed, 4 something skipped, 130 interrupted).",
            f64::from(exit_code),
        )?;
        self.gauge(
            "regsweep_dry_run",
            "1 when the run was a dry run.",
            f64::from(u8::from(v.dry_run)),
        )?;
        self.gauge(
            "regsweep_last_run_timestamp_seconds",
            "When the run ended (Unix time).",
            now,
        )?;
        match last_success {
            Some(t) => self.gauge(
                LAST_SUCCESS,
                "When the last successful run (exit code 0 or 4) ended (Unix time).",
                t,
            ),
            None => Ok(()),
        }
    }
}

/// The last-success time a metrics file written before holds.
pub fn last_success_in(file: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|l| l.starts_with(LAST_SUCCESS))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Writes `text` to `file` atomically: a temporary file beside it, renamed over it (the
/// textfile collector never reads half a file).
pub fn write_file(file: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let shown = file.display();
    let mut tmp = tempfile::Builder::new()
        .prefix(".regsweep-metrics")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("--metrics-file {shown}: cannot create a file beside it: {e}"))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("--metrics-file {shown}: {e}"))?;
    // The textfile collector runs as another user: readable by all, as a plain write makes it.
    set_readable(tmp.path());
    tmp.persist(file)
        .map(|_| ())
        .map_err(|e| format!("--metrics-file {shown}: {}", e.error))
}

#[cfg(unix)]
fn set_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
}

#[cfg(not(unix))]
fn set_readable(_: &Path) {}

/// The gateway URL of the group `job` (and `instance`) for `command`; label values go
/// base64url-encoded, so a shard's `/` needs no escaping.
pub fn group_url(base: &reqwest::Url, job: &str, command: &str, instance: Option<&str>) -> String {
    let enc = |v: &str| base64::engine::general_purpose::URL_SAFE.encode(v);
    let mut url = format!(
        "{}/metrics/job@base64/{}/command/{command}",
        base.as_str().trim_end_matches('/'),
        enc(job)
    );
    if let Some(i) = instance {
        url.push_str(&format!("/instance@base64/{}", enc(i)));
    }
    url
}

/// Pushes `text` to the gateway: PUT (replacing the group) after a success, POST (replacing
/// only the metrics pushed, so the last success time stays) after a failure; 3 attempts.
/// Runs on a runtime of its own (the product has no blocking HTTP client).
pub fn push(url: &str, text: String, success: bool) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("--pushgateway: starting the async runtime: {e}"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("--pushgateway: {e}"))?;
    let method = if success {
        reqwest::Method::PUT
    } else {
        reqwest::Method::POST
    };
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let sent = rt.block_on(async {
            let r = client
                .request(method.clone(), url)
                .header("Content-Type", prometheus::TEXT_FORMAT)
                .body(text.clone())
                .send()
                .await?;
            let status = r.status();
            Ok::<_, reqwest::Error>((status, r.text().await.unwrap_or_default()))
        });
        match sent {
            Ok((status, _)) if status.is_success() => return Ok(()),
            Ok((status, body)) => {
                last = format!("{status}: {}", body.trim());
                if status.is_client_error() {
                    break;
                }
            }
            Err(e) => last = error_chain(&e),
        }
    }
    Err(format!("--pushgateway: pushing to {url} failed: {last}"))
}

/// An error's message with its causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Renders the run's metrics and sends them where `settings` say; every failure is one
/// line (the file is written before the push).
pub fn publish(settings: &Settings, recorder: &Recorder, exit: Exit) -> Result<(), Vec<String>> {
    if !settings.wanted() {
        return Ok(());
    }
    let (exit_code, ok) = (exit.code(), exit.succeeded());
    let mut errors = Vec::new();
    let command = recorder.with(|v| v.command);
    if let Some(file) = &settings.file {
        let mut labels = Vec::new();
        if let Some(i) = &settings.instance {
            labels.push(("shard", i.as_str()));
        }
        match recorder.render(exit_code, ok, last_success_in(file), &labels) {
            Ok(text) => errors.extend(write_file(file, &text).err()),
            Err(e) => errors.push(e),
        }
    }
    if let Some(base) = &settings.pushgateway {
        let url = group_url(base, &settings.job, command, settings.instance.as_deref());
        match recorder.render(exit_code, ok, None, &[]) {
            Ok(text) => errors.extend(push(&url, text, ok).err()),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
