//! The standard scenario as the tests use it: pushed, aged, and the plan docs/POLICY.md prescribes.
//! Each call starts a registry of its own: tests never share storage.

use chrono::{TimeZone, Utc};
use regsweep_testkit::ImageSpec;
use regsweep_testkit::scenario::{self, APP, BASE, OTHER};

use super::{Registry, Verdicts};

/// Pushes the standard scenario, ages it, then pushes one young untagged image.
pub fn standard() -> (Registry, scenario::Named) {
    let reg = Registry::start();
    let mut named = scenario::push_standard(&reg.pusher()).expect("push scenario");
    reg.age_links("2 hours ago");
    let spec = ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("date"),
        seed: 9999,
        oci: false,
    };
    let y = reg.pusher().image(APP, &spec).expect("push young image");
    named.insert("YOUNG".into(), (APP.into(), y.digest));
    (reg, named)
}

/// The plan docs/POLICY.md prescribes for the standard scenario.
pub fn expected(named: &scenario::Named) -> Verdicts {
    let n = |k: &str| {
        named
            .get(k)
            .unwrap_or_else(|| panic!("{k} was not pushed"))
            .1
    };
    let mut want = Verdicts::new();
    let mut put = |repo: &str, k: &str, v: String| {
        want.insert((repo.to_owned(), n(k)), v);
    };
    put(APP, "A", "keep version-tag".into());
    put(APP, "B1", "delete untagged".into());
    put(APP, "B2", "keep version-tag".into());
    for i in 0..10 {
        put(
            APP,
            &format!("H{i}"),
            format!("keep hash-tag-kept rank={i}"),
        );
    }
    put(APP, "H10", "delete hash-tag-expired rank=10".into());
    put(APP, "H11", "keep version-tag".into()); // beyond N, but also tagged `stable`
    put(APP, "I1", "delete untagged".into());
    put(
        APP,
        "D1",
        format!("delete child-of-deleted parent={}", n("I1")),
    );
    put(
        APP,
        "D2",
        format!("delete child-of-deleted parent={}", n("I1")),
    );
    put(APP, "I2", "keep version-tag".into());
    put(APP, "C1", format!("keep child-of parent={}", n("I2")));
    put(APP, "C2", format!("keep child-of parent={}", n("I2")));
    put(APP, "N", "keep version-tag".into());
    put(APP, "M", format!("keep child-of parent={}", n("N")));
    put(APP, "E1", format!("keep child-of parent={}", n("M")));
    put(APP, "E2", format!("keep child-of parent={}", n("M")));
    put(APP, "E3", format!("keep child-of parent={}", n("N")));
    put(
        APP,
        "SIG_A",
        format!("keep attachment-of subject={}", n("A")),
    );
    put(
        APP,
        "SIG_B1",
        format!("delete attachment-of-deleted subject={}", n("B1")),
    );
    put(APP, "REF_A", format!("keep referrer-of subject={}", n("A")));
    put(APP, "YOUNG", "keep grace-period".into());
    put(OTHER, "A_OTHER", "delete untagged".into());
    put(OTHER, "O", "keep version-tag".into());
    put(BASE, "L1", "keep version-tag".into());
    put(BASE, "F1", "keep version-tag".into());
    put(BASE, "F2", format!("keep child-of parent={}", n("L1")));
    put(BASE, "L2", "delete untagged".into());
    put(
        BASE,
        "G1",
        format!("delete child-of-deleted parent={}", n("L2")),
    );
    put(
        BASE,
        "G2",
        format!("delete child-of-deleted parent={}", n("L2")),
    );
    want
}
