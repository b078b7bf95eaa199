//! Progress on stderr: plain lines at intervals when stderr is not a terminal, none with --quiet.
//! Runs against a registry of its own on 127.0.0.1.

use crate::common;

use common::{Registry, push_bulk, regsweep};

#[test]
fn progress_lines_in_logs_and_quiet_silences_them() {
    let reg = Registry::start();
    let root = reg.root().to_string_lossy().into_owned();
    let run = |quiet: &str| {
        regsweep(
            &[
                ("REGISTRY_URL", reg.url.as_str()),
                ("REGISTRY_DIR", root.as_str()),
                ("MIN_AGE", "0"),
                ("RATE", "10"),
                ("PROGRESS_INTERVAL", "200ms"),
                ("QUIET", quiet),
            ],
            &[],
        )
    };

    push_bulk(&reg.url, "bulk/app", 40);
    let quiet = run("true");
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("progress:"),
        "--quiet prints no progress: {err}"
    );
    let all_cleaned = |stdout: &str| {
        let last = stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Cleaning "))
            .next_back()
            .unwrap_or("");
        let (i, n) = last.split_once(" of ").unwrap_or(("", "?"));
        assert_eq!(i, n, "every planned delete reported: {stdout}");
        n.parse::<usize>().unwrap_or(0)
    };
    assert!(all_cleaned(&String::from_utf8_lossy(&quiet.stdout)) >= 40);

    // 40 deletes at 10/s (a burst of 10 first): about 3 s, many 200 ms intervals.
    push_bulk(&reg.url, "bulk/app", 40);
    let loud = run("false");
    let err = String::from_utf8_lossy(&loud.stderr);
    assert_eq!(loud.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("regsweep: progress: deleted "))
        .collect();
    assert!(lines.len() >= 2, "progress lines while deleting: {err}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" of ") && l.contains("/s, ETA ")),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&loud.stdout);
    assert!(
        all_cleaned(&stdout) >= 40,
        "stdout keeps the original lines"
    );
}
