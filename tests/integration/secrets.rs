//! Credentials never appear in output, errors, verbose logs, JSON reports or the journal.
//! Each test has its own registry (and token issuer) on 127.0.0.1.

use crate::common;

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::regsweep;
use common::standard::standard;
use common::token::token_registry;

const PASSWORD: &str = "t0p:s3cret-Pa55word";

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} leaks a secret ({} chars)",
            s.len()
        );
    }
}

#[test]
fn token_auth_run_leaks_neither_password_nor_tokens() {
    let (reg, _named) = standard();
    let tokens = token_registry(&reg, "alice", PASSWORD);
    let root = reg.root().to_string_lossy().into_owned();
    let journal = reg.dir.path().join("journal.jsonl");
    let journal_s = journal.to_string_lossy().into_owned();
    let auth = format!("alice:{PASSWORD}");
    let mut outputs = Vec::new();
    // A wrong password, then a real run in JSON with --verbose and a journal, then text;
    // then both again with REGSWEEP_LOG=trace, which must not enable other crates' logs
    // (HTTP libraries log headers at trace).
    // Each with its exit code: a wrong password stops the run (1), the rest go through.
    for (pass, format, log, code) in [
        ("wrong:pass", "text", ("VERBOSE", "true"), 1),
        (PASSWORD, "json", ("VERBOSE", "true"), 0),
        (PASSWORD, "text", ("VERBOSE", "true"), 0),
        ("wrong:pass", "text", ("REGSWEEP_LOG", "trace"), 1),
        (PASSWORD, "text", ("REGSWEEP_LOG", "trace"), 0),
    ] {
        let auth = format!("alice:{pass}");
        let out = regsweep(
            &[
                ("REGISTRY_URL", &reg.url),
                ("REGISTRY_DIR", &root),
                ("REGISTRY_AUTH", &auth),
                ("OUTPUT_FORMAT", format),
                ("JOURNAL", &journal_s),
                log,
            ],
            &[],
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{pass:?} {format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((
            format!("stdout ({pass}, {format})"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
        outputs.push((
            format!("stderr ({pass}, {format})"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    assert!(
        outputs[3].1.contains("fetched a bearer token"),
        "--verbose logs: {}",
        outputs[3].1
    );
    assert!(
        outputs[2].1.contains("\"outcome\""),
        "the JSON report was written"
    );
    let traced = &outputs[9].1;
    assert!(
        traced.contains("fetched a bearer token"),
        "REGSWEEP_LOG=trace logs regsweep's events: {traced}"
    );
    // Without escape codes around the target (stderr is a pipe), each event line reads
    // `<time> <LEVEL> <target>: ...`: every target is regsweep's.
    assert!(
        !traced.contains('\u{1b}'),
        "escape codes on a pipe: {traced:?}"
    );
    for other in ["hyper", "reqwest", "rustls", "h2"] {
        assert!(
            !traced.contains(&format!(" {other}")),
            "REGSWEEP_LOG=trace enabled {other}'s logs: {traced}"
        );
    }
    let targets: Vec<&str> = traced
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let level = words.nth(1)?;
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&level)
                .then(|| words.next())
                .flatten()
        })
        .collect();
    assert!(!targets.is_empty(), "event lines: {traced}");
    for t in &targets {
        assert!(
            t.starts_with("regsweep"),
            "another crate's event ({t}): {traced}"
        );
    }
    outputs.push((
        "journal".into(),
        std::fs::read_to_string(&journal).expect("journal"),
    ));
    let mut secrets = vec![PASSWORD.to_owned(), STANDARD.encode(&auth)];
    secrets.extend(tokens.issued.lock().expect("lock").iter().cloned());
    assert!(secrets.len() > 3, "tokens were issued");
    for (what, text) in &outputs {
        assert_clean(what, text, &secrets);
    }
}

#[test]
fn password_file_and_basic_auth_errors_leak_nothing() {
    let (reg, _named) = standard();
    let out = Command::new("htpasswd")
        .args(["-Bbn", "-C", "4", "bob", PASSWORD])
        .output()
        .expect("htpasswd");
    let htpasswd = reg.dir.path().join("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).expect("write");
    reg.restart_with(
        &format!(
            "auth:\n  htpasswd:\n    realm: t\n    path: {}\n",
            htpasswd.display()
        ),
        &[],
    );
    let root = reg.root().to_string_lossy().into_owned();
    let good = reg.dir.path().join("password");
    std::fs::write(&good, format!("{PASSWORD}\n")).expect("write");
    let bad = reg.dir.path().join("bad-password");
    std::fs::write(&bad, format!("{PASSWORD}x\n")).expect("write");
    let mut texts = Vec::new();
    for file in [&bad, &good] {
        let out = Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .env_clear()
            .args([
                "--registry-url",
                &reg.url,
                "--registry-dir",
                &root,
                "--username",
                "bob",
                "--verbose",
            ])
            .arg("--password-file")
            .arg(file)
            .output()
            .expect("run");
        texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
        texts.push(String::from_utf8_lossy(&out.stderr).into_owned());
        if file == &good {
            assert!(out.status.success(), "{}", texts[texts.len() - 1]);
        } else {
            assert_eq!(out.status.code(), Some(1));
            assert!(
                texts[texts.len() - 1].contains("--password-file"),
                "names the source"
            );
        }
    }
    let secrets = vec![
        PASSWORD.to_owned(),
        STANDARD.encode(format!("bob:{PASSWORD}")),
    ];
    for t in &texts {
        assert_clean("output", t, &secrets);
    }
}
