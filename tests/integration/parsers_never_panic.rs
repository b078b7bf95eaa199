//! Property tests: the link, manifest, config and challenge parsers never panic, on any bytes.
//! In memory only: no storage, no network.

use proptest::prelude::*;
use regsweep::delete::auth::{Credentials, parse_challenge};
use regsweep::digest::Digest;
use regsweep::meta::parse::{parse_config, parse_manifest};
use regsweep::storage::link::parse_link;
use secrecy::ExposeSecret;

/// JSON-ish documents built from manifest vocabulary, to reach deeper than random bytes.
fn manifestish() -> impl Strategy<Value = Vec<u8>> {
    let digest = prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "sha256:[0-9a-fA-F]{0,70}",
        ".{0,20}",
    ];
    let media = prop_oneof![
        Just("application/vnd.oci.image.index.v1+json".to_owned()),
        Just("application/vnd.oci.image.manifest.v1+json".to_owned()),
        Just("application/vnd.docker.distribution.manifest.v2+json".to_owned()),
        Just("application/vnd.docker.distribution.manifest.list.v2+json".to_owned()),
        Just("application/vnd.docker.distribution.manifest.v1+prettyjws".to_owned()),
        ".{0,30}",
    ];
    (media, proptest::collection::vec(digest, 0..4), any::<bool>(), any::<u8>()).prop_map(|(m, ds, subject, cut)| {
        let entries: Vec<String> = ds.iter().map(|d| format!(r#"{{"digest":{d:?},"platform":{{"os":"linux"}}}}"#)).collect();
        let mut s = format!(
            r#"{{"schemaVersion":2,"mediaType":{m:?},"manifests":[{}],"config":{{"digest":{:?}}}{}}}"#,
            entries.join(","),
            ds.first().cloned().unwrap_or_default(),
            if subject { r#","subject":{"digest":"sha256:00"}"# } else { "" }
        );
        let mut bytes = std::mem::take(&mut s).into_bytes();
        bytes.truncate(bytes.len().saturating_sub(usize::from(cut % 8)));
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn link_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let parsed = parse_link(&bytes);
        if let Some(d) = parsed {
            let shown = d.to_string();
            prop_assert_eq!(shown.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn manifest_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_manifest(&bytes);
        let _ = parse_config(&bytes);
    }

    #[test]
    fn manifestish_documents_never_panic(doc in manifestish()) {
        if let Ok(m) = parse_manifest(&doc) {
            // Whatever parsed names only well-formed digests.
            for c in &m.children {
                prop_assert!(Digest::parse(&c.digest.to_string()).is_some());
            }
        }
    }

    #[test]
    fn challenge_and_credentials_never_panic(s in ".{0,200}") {
        let _ = parse_challenge(&s);
        if let Ok(c) = Credentials::from_pair(&s, "test") {
            prop_assert_eq!(format!("{}:{}", c.user, c.password.expose_secret()), s);
        }
    }
}
