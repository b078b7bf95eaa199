//! `regsweep plan --out FILE` then `regsweep apply FILE`: exactly the reviewed deletions,
//! each re-verified; entries whose tags changed are refused, later pushes are untouched.

use crate::common;

use std::collections::BTreeSet;

use common::standard::standard;
use common::{dry_run_json, planned_deletes, regsweep, snapshot};
use regsweep::digest::Digest;
use regsweep_testkit::ImageSpec;
use regsweep_testkit::scenario::APP;

#[test]
fn apply_deletes_the_reviewed_plan_and_refuses_what_changed() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.json");
    let file_s = file.to_string_lossy().into_owned();

    let before = snapshot(&reg.root());
    let out = regsweep(
        &[("REGISTRY_DIR", root.as_str())],
        &["plan", "--out", file_s.as_str()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("written to"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Dry run: "),
        "plan prints the usual report"
    );
    assert_eq!(snapshot(&reg.root()), before, "plan touches nothing");

    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("plan file")).expect("JSON");
    let mut in_file = BTreeSet::new();
    for r in plan["repositories"].as_array().expect("repositories") {
        for e in r["delete"].as_array().expect("delete") {
            let d = Digest::parse(e["digest"].as_str().expect("digest")).expect("digest");
            in_file.insert((r["name"].as_str().expect("name").to_owned(), d));
        }
    }
    assert_eq!(in_file, planned_deletes(&dry_run_json(&reg.root(), &[])));

    // After the review: the expired hash-tagged H10 gets a new tag, a new image is pushed
    // and left untagged (not in the plan: apply must not touch it).
    let h10 = named["H10"].1;
    let body = std::fs::read(
        reg.root()
            .join("docker/registry/v2/blobs/sha256")
            .join(&h10.hex()[..2])
            .join(h10.hex())
            .join("data"),
    )
    .expect("H10 body");
    let media: serde_json::Value = serde_json::from_slice(&body).expect("manifest JSON");
    let media = media["mediaType"].as_str().expect("mediaType").to_owned();
    let p = reg.pusher();
    p.manifest(APP, Some("rescued"), leak(media), body)
        .expect("tag H10");
    let spec = ImageSpec {
        os: "linux",
        arch: "amd64",
        created: chrono::Utc::now(),
        seed: 4242,
        oci: false,
    };
    let late = p.image(APP, &spec).expect("push late image");
    reg.age_links("2 hours ago");

    let out = regsweep(
        &[
            ("REGISTRY_URL", reg.url.as_str()),
            ("REGISTRY_DIR", root.as_str()),
        ],
        &["apply", file_s.as_str()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "refusals exit 4: {err}");
    assert!(
        err.contains(&format!(
            "refused: {h10} in {APP}: its tags changed since the plan"
        )),
        "{err}"
    );
    assert_eq!(err.matches("regsweep: refused:").count(), 1, "{err}");

    let revs = reg.revisions(APP);
    assert!(revs.contains(&h10), "the refused entry stays");
    assert!(
        revs.contains(&late.digest),
        "a manifest the plan did not list stays"
    );
    for (repo, d) in &in_file {
        if *d != h10 {
            assert!(
                !reg.revisions(repo).contains(d),
                "{d} in {repo} was deleted"
            );
        }
    }

    // Applying the same plan again: everything is gone or refused, nothing else is touched.
    let again = regsweep(
        &[
            ("REGISTRY_URL", reg.url.as_str()),
            ("REGISTRY_DIR", root.as_str()),
        ],
        &["apply", file_s.as_str()],
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(4), "{err}");
    assert!(
        err.contains("its revision link is gone since the plan"),
        "{err}"
    );
    assert!(reg.revisions(APP).contains(&late.digest));
}

#[test]
fn a_bad_plan_file_is_one_clear_line() {
    let (reg, _) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plan.json");
    std::fs::write(&file, "{\"regsweep_plan\": 1}").expect("write");
    let file_s = file.to_string_lossy().into_owned();
    for path in [file_s.as_str(), "/nonexistent/plan.json"] {
        let out = regsweep(
            &[
                ("REGISTRY_URL", reg.url.as_str()),
                ("REGISTRY_DIR", root.as_str()),
            ],
            &["apply", path],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("plan file {path}")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
