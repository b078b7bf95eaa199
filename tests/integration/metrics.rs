//! Metrics and logs as operators consume them: a real Prometheus Pushgateway on 127.0.0.1
//! receives the metrics of a cleanup and of a `regsweep gc` (checked against the run's
//! reports), a failed run's push keeps the last success time, `promtool check metrics`
//! passes on the textfile; stderr to a pipe carries no escape code; JSON logs parse line
//! by line.

use crate::common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::standard::standard;
use common::{free_port, run_expecting};
use serde_json::Value;

/// A running `prometheus-pushgateway` on 127.0.0.1, stopped on drop.
struct Gateway {
    child: Child,
    url: String,
}

impl Gateway {
    fn start() -> Gateway {
        let port = free_port();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's default persists to /var/lib/prometheus: in memory only, per test.
            .arg("--persistence.file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-pushgateway (scripts/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the pushgateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Gateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The gateway's exposition, as Prometheus scrapes it.
    fn scrape(&self) -> String {
        reqwest::blocking::get(format!("{}/metrics", self.url))
            .and_then(|r| r.text())
            .expect("scrape the pushgateway")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Every sample of `name` whose labels include all of `labels`, summed; `None` when none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name
            || !labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let v: f64 = value.parse().expect("a sample value");
        found = Some(found.unwrap_or(0.0) + v);
    }
    found
}

fn num(v: &Value) -> f64 {
    v.as_f64().expect("a number in the JSON report")
}

fn promtool_check(file: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).expect("metrics file"))
        .output()
        .expect("run promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cleanup_and_gc_push_what_their_reports_say() {
    let gw = Gateway::start();
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let file = reg.dir.path().join("regsweep.prom");
    let file_s = file.to_string_lossy().into_owned();
    let env = [
        ("REGISTRY_URL", reg.url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
        ("OUTPUT_FORMAT", "json"),
        ("PUSHGATEWAY_URL", gw.url.as_str()),
        ("METRICS_FILE", file_s.as_str()),
    ];
    let started = chrono::Utc::now().timestamp() as f64;
    let (stdout, _) = run_expecting(&env, &[], 0);
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    let totals = &report["totals"];
    let outcome = &report["outcome"];
    let scraped = gw.scrape();
    let group = [("job", "regsweep"), ("command", "cleanup")];
    let in_file = std::fs::read_to_string(&file).expect("metrics file");
    for (text, labels) in [(&scraped, &group[..]), (&in_file, &group[1..])] {
        let m = |name: &str| sample(text, name, labels).unwrap_or_else(|| panic!("{name}: {text}"));
        assert_eq!(
            m("regsweep_manifests_scanned_total"),
            num(&totals["manifests"])
        );
        assert_eq!(m("regsweep_manifests_kept_total"), num(&totals["keep"]));
        assert_eq!(
            m("regsweep_manifests_planned_for_deletion_total"),
            num(&totals["delete"])
        );
        assert_eq!(
            m("regsweep_repositories_scanned_total"),
            num(&totals["repositories"])
        );
        assert_eq!(
            m("regsweep_repositories_failed_closed_total"),
            num(&totals["failed_closed_repositories"])
        );
        assert_eq!(
            m("regsweep_estimated_freeable_bytes"),
            num(&totals["bytes_freed"])
        );
        assert_eq!(
            m("regsweep_manifests_deleted_total"),
            num(&outcome["deleted"])
        );
        assert_eq!(
            m("regsweep_manifests_already_gone_total"),
            num(&outcome["already_gone"])
        );
        let failed = outcome["failed"].as_array().expect("failed").len() as f64;
        assert_eq!(m("regsweep_manifests_delete_failed_total"), failed);
        let skipped = outcome["skipped"].as_array().expect("skipped").len() as f64;
        assert_eq!(m("regsweep_manifests_skipped_total"), skipped);
        assert_eq!(m("regsweep_exit_code"), 0.0);
        assert_eq!(m("regsweep_dry_run"), 0.0);
        assert!(m("regsweep_last_success_timestamp_seconds") >= started);
        for phase in ["prepare", "scan", "report", "delete"] {
            assert!(
                sample(text, "regsweep_phase_duration_seconds", &[("phase", phase)]).is_some(),
                "phase {phase}: {text}"
            );
        }
    }
    assert!(
        num(&outcome["deleted"]) > 0.0,
        "the cleanup deleted something"
    );
    let kept_tagged = sample(
        &scraped,
        "regsweep_manifests_kept_total",
        &[("reason", "version-tag")],
    );
    assert!(
        kept_tagged.is_some_and(|n| n > 0.0),
        "kept by reason: {scraped}"
    );
    promtool_check(&file);

    // The registry's blobs, collected with it stopped: the gc pushes its own group.
    reg.stop();
    let (text, _) = run_expecting(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("PUSHGATEWAY_URL", gw.url.as_str()),
            ("METRICS_FILE", file_s.as_str()),
            ("MIN_AGE", "0"),
        ],
        &["gc", "--registry-stopped"],
        0,
    );
    let number_after = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} in {text}"));
        line[prefix.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a number")
    };
    let marked = number_after("Marked ");
    let to_delete = number_after("Blobs to delete: ");
    let deleted = number_after("Deleted ");
    let bytes: f64 = text
        .lines()
        .find(|l| l.starts_with("Blobs to delete: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|b| b.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("bytes in the plan line");
    assert!(to_delete > 0.0 && deleted == to_delete, "{text}");
    let scraped = gw.scrape();
    let gc = [("job", "regsweep"), ("command", "gc")];
    let m = |name: &str| sample(&scraped, name, &gc).unwrap_or_else(|| panic!("{name}: {scraped}"));
    assert_eq!(m("regsweep_blobs_marked_total"), marked);
    assert_eq!(m("regsweep_blobs_unreferenced_total"), to_delete);
    assert_eq!(m("regsweep_blobs_swept_total"), deleted);
    assert_eq!(m("regsweep_blobs_sweep_failed_total"), 0.0);
    assert_eq!(m("regsweep_freed_bytes_total"), bytes);
    assert_eq!(m("regsweep_exit_code"), 0.0);
    for phase in ["mark", "list", "sweep"] {
        assert!(
            sample(
                &scraped,
                "regsweep_phase_duration_seconds",
                &[("command", "gc"), ("phase", phase)]
            )
            .is_some(),
            "gc phase {phase}"
        );
    }
    // The cleanup's group is still there, untouched by the gc's push.
    assert_eq!(
        sample(&scraped, "regsweep_manifests_deleted_total", &group),
        Some(num(&outcome["deleted"]))
    );
    promtool_check(&file);
}

#[test]
fn a_failed_run_pushes_its_exit_code_and_keeps_the_last_success() {
    let gw = Gateway::start();
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let file = reg.dir.path().join("shard.prom");
    let file_s = file.to_string_lossy().into_owned();
    let base = [
        ("REGISTRY_DIR", root.as_str()),
        ("PUSHGATEWAY_URL", gw.url.as_str()),
        ("METRICS_FILE", file_s.as_str()),
        ("METRICS_JOB", "nightly"),
        ("SHARD", "1/2"),
    ];
    let mut dry = base.to_vec();
    dry.push(("DRY_RUN", "true"));
    run_expecting(&dry, &[], 0);
    let shard = [
        ("job", "nightly"),
        ("command", "cleanup"),
        ("instance", "1/2"),
    ];
    let first = sample(
        &gw.scrape(),
        "regsweep_last_success_timestamp_seconds",
        &shard,
    )
    .expect("the last success of the dry run");
    let in_file = sample(
        &std::fs::read_to_string(&file).expect("file"),
        "regsweep_last_success_timestamp_seconds",
        &[("shard", "1/2")],
    )
    .expect("last success in the file");
    // A registry that does not answer: the run fails before deleting (exit 1).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut failing = base.to_vec();
    failing.push(("REGISTRY_URL", dead.as_str()));
    let (_, err) = run_expecting(&failing, &[], 1);
    assert!(err.contains("regsweep: error:"), "{err}");
    let scraped = gw.scrape();
    assert_eq!(
        sample(&scraped, "regsweep_exit_code", &shard),
        Some(1.0),
        "{scraped}"
    );
    assert_eq!(
        sample(&scraped, "regsweep_last_success_timestamp_seconds", &shard),
        Some(first),
        "a failed push keeps the last success"
    );
    let text = std::fs::read_to_string(&file).expect("file");
    assert_eq!(sample(&text, "regsweep_exit_code", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "regsweep_last_success_timestamp_seconds", &[]),
        Some(in_file)
    );
    promtool_check(&file);
}

#[test]
fn metrics_destinations_are_checked_and_failures_named() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let dry = [("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true")];
    let with = |k: &'static str, v: &'static str| {
        let mut e = dry.to_vec();
        e.push((k, v));
        e
    };
    let (_, err) = run_expecting(&with("METRICS_FILE", "/nonexistent/dir/x.prom"), &[], 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--metrics-file /nonexistent/dir/x.prom"),
        "{err}"
    );
    let (_, err) = run_expecting(&with("PUSHGATEWAY_URL", "ftp://127.0.0.1:1"), &[], 2);
    assert!(err.contains("PUSHGATEWAY_URL"), "{err}");
    let (_, err) = run_expecting(&with("PUSHGATEWAY_URL", "http://u:p@127.0.0.1:1"), &[], 2);
    assert!(
        err.contains("carries credentials") && !err.contains("u:p"),
        "{err}"
    );
    // Nothing listens there: the run went through, its metrics did not (exit 1, one line).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut e = dry.to_vec();
    e.push(("PUSHGATEWAY_URL", dead.as_str()));
    let (_, err) = run_expecting(&e, &[], 1);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("--pushgateway"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("regsweep: error: --pushgateway: pushing to"),
        "{err}"
    );
}

#[test]
fn logs_carry_no_escape_codes_and_json_logs_parse() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let url = format!("{}/v2/", reg.url); // warns: the base URL is used
    let common = [
        ("REGISTRY_URL", url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
        ("DRY_RUN", "true"),
        ("VERBOSE", "true"),
        ("PROGRESS_INTERVAL", "1ms"),
    ];
    let (_, text) = run_expecting(&common, &[], 0);
    assert!(!text.contains('\u{1b}'), "an escape code in: {text:?}");
    assert!(text.contains("warning: REGISTRY_URL"), "{text}");
    assert!(text.contains("DEBUG"), "debug logs: {text}");
    let mut json = common.to_vec();
    json.push(("LOG_FORMAT", "json"));
    let (stdout, logs) = run_expecting(&json, &[], 0);
    assert!(
        stdout.contains("Untagged manifests"),
        "the text report stays on stdout"
    );
    assert!(!logs.contains('\u{1b}'));
    let mut levels = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(
            v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(
            v["message"].is_string() && v["fields"].is_object(),
            "{line}"
        );
        levels.insert(v["level"].as_str().expect("level").to_owned());
        if let Some(k) = v["fields"]["kind"].as_str() {
            kinds.insert(k.to_owned());
        }
    }
    assert!(
        levels.contains("WARN") && levels.contains("DEBUG"),
        "{levels:?}: {logs}"
    );
    assert!(kinds.contains("progress"), "progress lines as JSON: {logs}");
    // A usage error is a JSON line too.
    let (_, err) = run_expecting(&[("LOG_FORMAT", "json"), ("HASH_TAG_KEEP", "x")], &[], 2);
    let v: Value = serde_json::from_str(err.trim()).expect("one JSON line");
    assert_eq!(v["level"], "ERROR");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("HASH_TAG_KEEP"))
    );
}

#[test]
fn the_deployed_alert_rules_pass_promtool_and_the_jobs_push() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let rule: Value = serde_norway::from_str(
        &std::fs::read_to_string(deploy.join("prometheusrule.yaml")).expect("read the rule"),
    )
    .expect("the PrometheusRule parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yml");
    let groups = serde_json::json!({ "groups": rule["spec"]["groups"] });
    std::fs::write(&rules, groups.to_string()).expect("write rules"); // JSON is YAML
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for job in ["cronjob.yaml", "indexed-job.yaml"] {
        let text = std::fs::read_to_string(deploy.join(job)).expect("read the job");
        assert!(text.contains("PUSHGATEWAY_URL"), "{job} pushes its metrics");
    }
}
