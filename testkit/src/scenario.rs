//! The standard scenario pushed by the demo and the integration tests: every case the
//! policy distinguishes, in three repositories.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::push::{ImageSpec, Pushed, Pusher};
use regsweep::digest::Digest;

/// Named manifests of a pushed scenario: name → (repository, digest).
pub type Named = BTreeMap<String, (String, Digest)>;

/// The main repository of the scenario (a nested name).
pub const APP: &str = "demo/app";
/// A repository sharing an image with [`APP`].
pub const OTHER: &str = "other";
/// A repository with Docker manifest lists.
pub const BASE: &str = "lib/base";
/// Hash-tagged images in [`APP`]; with the default keep of 10, two are beyond it.
pub const HASH_IMAGES: u64 = 12;

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::days(n)
}

struct Ctx<'a> {
    p: &'a Pusher,
    named: Named,
    seed: u64,
}

impl Ctx<'_> {
    fn spec_of(
        &self,
        seed: u64,
        created: DateTime<Utc>,
        arch: &'static str,
        oci: bool,
    ) -> ImageSpec {
        ImageSpec {
            os: "linux",
            arch,
            created,
            seed,
            oci,
        }
    }
    fn image(
        &mut self,
        repo: &str,
        name: &str,
        created: DateTime<Utc>,
        arch: &'static str,
        oci: bool,
    ) -> Result<Pushed> {
        self.seed += 1;
        let spec = self.spec_of(self.seed, created, arch, oci);
        let m = self.p.image(repo, &spec)?;
        self.name(repo, name, &m);
        Ok(m)
    }
    fn name(&mut self, repo: &str, name: &str, m: &Pushed) {
        self.named
            .insert(name.to_owned(), (repo.to_owned(), m.digest));
    }
}

/// Hash tag `i` of the scenario: 7 hex digits.
pub fn hash_tag(i: u64) -> String {
    format!("{:07x}", 0x00c0_ffee + i)
}

/// Pushes the standard scenario; see the README's demo section for what each piece tests.
pub fn push_standard(p: &Pusher) -> Result<Named> {
    let mut c = Ctx {
        p,
        named: Named::new(),
        seed: 0,
    };
    // Version tag, and an overwritten tag leaving an untagged image behind.
    let a = c.image(APP, "A", day(0), "amd64", false)?;
    p.tag(APP, "1.0", &a)?;
    let b1 = c.image(APP, "B1", day(1), "amd64", false)?;
    p.tag(APP, "latest", &b1)?;
    let b2 = c.image(APP, "B2", day(2), "amd64", false)?;
    p.tag(APP, "latest", &b2)?;
    // Hash tags with distinct created dates, pushed out of date order; the oldest also `stable`.
    let order: Vec<u64> = (0..HASH_IMAGES).map(|i| (i * 5) % HASH_IMAGES).collect();
    for i in order {
        let h = c.image(
            APP,
            &format!("H{i}"),
            day(100 - i as i64),
            "amd64",
            i % 2 == 0,
        )?;
        p.tag(APP, &hash_tag(i), &h)?;
        if i == HASH_IMAGES - 1 {
            p.tag(APP, "stable", &h)?;
        }
    }
    // Multi-arch OCI index, children pushed by digest; its predecessor under the same tag.
    let d1 = c.image(APP, "D1", day(3), "amd64", true)?;
    let d2 = c.image(APP, "D2", day(3), "arm64", true)?;
    let i1 = p.index(
        APP,
        &[(&d1, "linux", "amd64"), (&d2, "linux", "arm64")],
        true,
    )?;
    c.name(APP, "I1", &i1);
    p.tag(APP, "2.0", &i1)?;
    let c1 = c.image(APP, "C1", day(4), "amd64", true)?;
    let c2 = c.image(APP, "C2", day(4), "arm64", true)?;
    let i2 = p.index(
        APP,
        &[(&c1, "linux", "amd64"), (&c2, "linux", "arm64")],
        true,
    )?;
    c.name(APP, "I2", &i2);
    p.tag(APP, "2.0", &i2)?;
    // Nested index: N = [M = [E1, E2], E3].
    let e1 = c.image(APP, "E1", day(5), "amd64", true)?;
    let e2 = c.image(APP, "E2", day(5), "arm64", true)?;
    let e3 = c.image(APP, "E3", day(5), "s390x", true)?;
    let m = p.index(
        APP,
        &[(&e1, "linux", "amd64"), (&e2, "linux", "arm64")],
        true,
    )?;
    c.name(APP, "M", &m);
    let n = p.index(
        APP,
        &[(&m, "linux", "amd64"), (&e3, "linux", "s390x")],
        true,
    )?;
    c.name(APP, "N", &n);
    p.tag(APP, "nested", &n)?;
    // Attachments: a signature of a kept image and of the untagged one; a referrer of A.
    let sa = p.signature(APP, &a)?;
    c.name(APP, "SIG_A", &sa);
    let sb = p.signature(APP, &b1)?;
    c.name(APP, "SIG_B1", &sb);
    let r = p.referrer(APP, &a, "sbom-of-A")?;
    c.name(APP, "REF_A", &r);
    // The same image A in another repository, untagged there, next to a tagged one.
    let a_again = p.image(OTHER, &c.spec_of(1, day(0), "amd64", false))?;
    c.name(OTHER, "A_OTHER", &a_again);
    let o = c.image(OTHER, "O", day(6), "amd64", false)?;
    p.tag(OTHER, "v1", &o)?;
    // Docker manifest lists, one tagged and one whose tag moved on.
    let f1 = c.image(BASE, "F1", day(7), "amd64", false)?;
    let f2 = c.image(BASE, "F2", day(7), "arm64", false)?;
    let l1 = p.index(
        BASE,
        &[(&f1, "linux", "amd64"), (&f2, "linux", "arm64")],
        false,
    )?;
    c.name(BASE, "L1", &l1);
    p.tag(BASE, "3.16", &l1)?;
    let g1 = c.image(BASE, "G1", day(8), "amd64", false)?;
    let g2 = c.image(BASE, "G2", day(8), "arm64", false)?;
    let l2 = p.index(
        BASE,
        &[(&g1, "linux", "amd64"), (&g2, "linux", "arm64")],
        false,
    )?;
    c.name(BASE, "L2", &l2);
    p.tag(BASE, "3.17", &l2)?;
    p.tag(BASE, "3.17", &f1)?;
    Ok(c.named)
}
