//! Parser tests over the five manifest media types and hostile inputs (the fixtures/
//! folder holds real samples).

use super::*;

fn hex(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

#[test]
fn docker_and_oci_images() {
    for (mt, cmt) in [
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
        ),
        (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json"),
    ] {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{cmt}","digest":"sha256:{}","size":1}},"layers":[]}}"#,
            hex('a')
        );
        let m = parse_manifest(body.as_bytes()).expect("image parses");
        assert_eq!(m.kind, Kind::Image);
        assert_eq!(m.config, Digest::parse(&format!("sha256:{}", hex('a'))));
        assert!(m.children.is_empty());
    }
}

#[test]
fn an_artifact_config_is_not_read_as_an_image_config() {
    // A Helm chart, a signature: their config has no creation date and need not be JSON,
    // but it is still a blob the manifest uses.
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:{}","size":9}},"layers":[]}}"#,
        hex('b')
    );
    let m = parse_manifest(body.as_bytes()).expect("artifact parses");
    assert_eq!(m.kind, Kind::Image);
    assert_eq!(m.config, None);
    assert_eq!(
        m.blobs,
        vec![(
            Digest::parse(&format!("sha256:{}", hex('b'))).expect("digest"),
            Some(9)
        )]
    );
}

#[test]
fn indexes_with_platforms_and_subject() {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"digest":"sha256:{}","platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"digest":"sha256:{}"}}],
           "subject":{{"digest":"sha256:{}"}}}}"#,
        hex('b'),
        hex('c'),
        hex('d')
    );
    let m = parse_manifest(body.as_bytes()).expect("index parses");
    assert_eq!(m.kind, Kind::Index);
    assert_eq!(m.children.len(), 2);
    assert_eq!(
        m.children[0]
            .platform
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("linux/arm64")
    );
    assert_eq!(m.children[1].platform, None);
    assert!(m.subject.is_some());
    let list = body.replace(OCI_INDEX, DOCKER_LIST);
    assert_eq!(
        parse_manifest(list.as_bytes()).map(|m| m.kind),
        Ok(Kind::Index)
    );
    let bare = body.replace(&format!(r#""mediaType":"{OCI_INDEX}","#), "");
    assert_eq!(
        parse_manifest(bare.as_bytes()).map(|m| m.kind),
        Ok(Kind::Index)
    );
}

#[test]
fn schema1_signed_carries_created_and_arch() {
    let v1 =
        r#"{\"created\":\"2020-01-02T03:04:05.123Z\",\"os\":\"linux\",\"architecture\":\"amd64\"}"#;
    let body = format!(
        r#"{{"schemaVersion":1,"name":"x","tag":"y","architecture":"amd64","fsLayers":[],"history":[{{"v1Compatibility":"{v1}"}}],"signatures":[]}}"#
    );
    let m = parse_manifest(body.as_bytes()).expect("schema1 parses");
    assert_eq!(m.kind, Kind::Schema1);
    let info = m.schema1.expect("inline info");
    assert_eq!(info.created, Some(1_577_934_245));
    assert_eq!(
        info.platform.map(|p| p.to_string()).as_deref(),
        Some("linux/amd64")
    );
}

#[test]
fn unknown_media_type_mentions_every_digest() {
    let body = format!(
        r#"{{"mediaType":"application/x-future","refs":[{{"d":"sha256:{}"}}],"other":"sha256:{}"}}"#,
        hex('e'),
        hex('f')
    );
    let m = parse_manifest(body.as_bytes()).expect("unknown parses");
    assert_eq!(m.kind, Kind::Unknown);
    assert_eq!(m.children.len(), 2);
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[{{"digest":"sha256:XYZ"}}]}}"#)
            .into_bytes(),
        format!(r#"{{"mediaType":"{OCI_MANIFEST}"}}"#).into_bytes(),
        format!(r#"{{"mediaType":"{OCI_MANIFEST}","config":{{"digest":"md5:00"}}}}"#).into_bytes(),
        r#"{"subject":{"digest":"nope"},"config":{"digest":"x"}}"#
            .as_bytes()
            .to_vec(),
    ];
    for c in cases {
        assert!(
            parse_manifest(&c).is_err(),
            "{:?} must be rejected",
            String::from_utf8_lossy(&c)
        );
    }
}

#[test]
fn config_created_and_platform() {
    let info = parse_config(
        br#"{"created":"2026-02-17T10:23:39.5+01:00","os":"linux","architecture":"arm64"}"#,
    )
    .expect("config parses");
    assert_eq!(info.created, Some(1_771_320_219));
    assert_eq!(parse_config(b"{}").map(|i| i.created), Some(None));
    assert_eq!(parse_config(b"garbage"), None);
}

#[test]
fn fixtures_of_every_media_type() {
    let d = |h: &str| Digest::parse(&format!("sha256:{h}")).expect("fixture digest");
    let m = parse_manifest(include_bytes!(
        "../../../fixtures/manifests/docker-schema2.json"
    ))
    .expect("schema2");
    assert_eq!(m.kind, Kind::Image);
    assert_eq!(
        m.config,
        Some(d(
            "9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d"
        ))
    );
    let m = parse_manifest(include_bytes!(
        "../../../fixtures/manifests/docker-manifest-list.json"
    ))
    .expect("list");
    assert_eq!(m.kind, Kind::Index);
    let platforms: Vec<String> = m
        .children
        .iter()
        .filter_map(|c| c.platform.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(platforms, vec!["linux/amd64", "linux/arm64"]);
    let m = parse_manifest(include_bytes!(
        "../../../fixtures/manifests/oci-manifest-with-subject.json"
    ))
    .expect("referrer");
    assert_eq!(m.kind, Kind::Image);
    assert_eq!(
        m.subject,
        Some(d(
            "e2e16842c9b54d985bf1ef9242a313f36b856181f188de21313820e177002501"
        ))
    );
    let m = parse_manifest(include_bytes!(
        "../../../fixtures/manifests/oci-index-nested.json"
    ))
    .expect("nested");
    assert_eq!(m.kind, Kind::Index);
    assert_eq!(m.children.len(), 2);
    assert_eq!(m.children[0].platform, None);
    let m = parse_manifest(include_bytes!(
        "../../../fixtures/manifests/docker-schema1-signed.json"
    ))
    .expect("schema1");
    assert_eq!(m.kind, Kind::Schema1);
    assert_eq!(m.schema1.and_then(|i| i.created), Some(1_546_306_167));
}

fn sha(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", hex(c))).expect("digest")
}

#[test]
fn keys_are_matched_as_go_matches_them() {
    // The registry (Go) fills `layers` from "Layers", "LAYERS" and "layerſ": so does this.
    for key in ["Layers", "LAYERS", "layerſ"] {
        let body = format!(
            r#"{{"schemaVersion":2,"MediaType":"{DOCKER_MANIFEST}","CONFIG":{{"Digest":"sha256:{}","size":1}},"{key}":[{{"DIGEST":"sha256:{}","Size":7}}]}}"#,
            hex('a'),
            hex('b')
        );
        let m = parse_manifest(body.as_bytes()).expect("parses");
        assert_eq!(m.kind, Kind::Image, "{key}");
        assert_eq!(m.doubt, None);
        assert_eq!(
            m.blobs,
            vec![(sha('a'), Some(1)), (sha('b'), Some(7))],
            "{key}"
        );
    }
    // An index whose entries sit under "Manifests" has those children.
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","Manifests":[{{"digest":"sha256:{}","PLATFORM":{{"OS":"linux","Architecture":"arm64"}}}}]}}"#,
        hex('c')
    );
    let m = parse_manifest(body.as_bytes()).expect("parses");
    assert_eq!(m.kind, Kind::Index);
    assert_eq!(m.children.len(), 1);
    assert_eq!(m.children[0].digest, sha('c'));
    assert_eq!(
        m.children[0].platform.as_ref().map(ToString::to_string),
        Some("linux/arm64".to_owned())
    );
}

#[test]
fn keys_go_would_merge_make_the_manifest_unknown_with_every_mention_kept() {
    for body in [
        // "layers": [] then "Layers": [L]: Go's last one wins.
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"sha256:{}"}},"layers":[],"Layers":[{{"digest":"sha256:{}"}}]}}"#,
            hex('a'),
            hex('b')
        ),
        // A descriptor with "digest": X then "Digest": L.
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"sha256:{}"}},"layers":[{{"digest":"sha256:{}","Digest":"sha256:{}"}}]}}"#,
            hex('a'),
            hex('c'),
            hex('b')
        ),
        // A field of a type Go refuses.
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"sha256:{}"}},"layers":{{"digest":"sha256:{}"}}}}"#,
            hex('a'),
            hex('b')
        ),
    ] {
        let m = parse_manifest(body.as_bytes()).expect("valid JSON");
        assert_eq!(m.kind, Kind::Unknown, "{body}");
        assert!(m.doubt.is_some());
        assert!(m.mentions.contains(&sha('b')), "{body}");
        assert!(m.children.iter().any(|c| c.digest == sha('b')), "{body}");
    }
}

#[test]
fn digests_of_other_algorithms_are_foreign_blobs_and_mentions() {
    let l512 = format!("sha512:{}", "ab".repeat(64));
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"sha256:{}"}},"layers":[{{"digest":"{l512}","size":3}}],"annotations":{{"x":"sha384:{}"}}}}"#,
        hex('a'),
        "cd".repeat(48)
    );
    let m = parse_manifest(body.as_bytes()).expect("parses");
    assert_eq!(m.kind, Kind::Image);
    assert_eq!(m.foreign_blobs, vec![l512.clone()]);
    assert_eq!(
        m.foreign_mentions,
        vec![format!("sha384:{}", "cd".repeat(48)), l512]
    );
    // An index entry by another algorithm names no manifest link: a doubt.
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"digest":"sha512:{}"}}]}}"#,
        "ab".repeat(64)
    );
    assert!(parse_manifest(body.as_bytes()).is_err());
}

#[test]
fn bytes_that_are_not_utf8_are_read_as_go_reads_them() {
    let mut body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"sha256:{}"}},"layers":[],"x":"#,
        hex('a')
    )
    .into_bytes();
    body.extend_from_slice(b"\"\xff\xfe\"}");
    let m = parse_manifest(&body).expect("Go accepts it");
    assert_eq!(m.kind, Kind::Image);
    assert_eq!(m.mentions, vec![sha('a')]);
}

#[test]
fn config_keys_fold_too() {
    let info =
        parse_config(br#"{"Created":"2026-02-17T10:23:39Z","OS":"linux","ARCHITECTURE":"arm64"}"#)
            .expect("parses");
    assert_eq!(info.created, Some(1_771_323_819));
    assert_eq!(
        info.platform.map(|p| p.to_string()).as_deref(),
        Some("linux/arm64")
    );
    assert_eq!(
        parse_config(br#"{"created":"2026-02-17T10:23:39Z","Created":null}"#),
        None
    );
}

mod go_model {
    //! Property: for manifests whose keys are spelled in any case or folding and repeated,
    //! what regsweep protects is a superset of what Go's decoder reads, and where it reads
    //! the structure without doubt, it reads what Go reads.
    use super::*;
    use proptest::prelude::*;

    /// A spelling of `name` Go matches to it: each letter in either case, `s` as `ſ`, `k`
    /// as the Kelvin sign.
    fn spelling(name: &'static str) -> impl Strategy<Value = String> {
        proptest::collection::vec(0u8..4, name.len()).prop_map(move |picks| {
            name.chars()
                .zip(picks)
                .map(|(c, p)| match (c, p) {
                    ('s', 3) => 'ſ',
                    ('k', 3) => '\u{212A}',
                    (c, 1 | 3) => c.to_ascii_uppercase(),
                    (c, _) => c,
                })
                .collect()
        })
    }

    /// A layers array: each descriptor one or two `digest` keys (digests from a pool).
    fn layers() -> impl Strategy<Value = Vec<Vec<(String, u8)>>> {
        proptest::collection::vec(
            proptest::collection::vec((spelling("digest"), 0u8..6), 1..3),
            0..4,
        )
    }

    fn pool(i: u8) -> String {
        format!("sha256:{}", format!("{i:02x}").repeat(32))
    }

    /// Go's decoding of repeated `layers` keys into `[]Descriptor`: each array decodes into
    /// the elements already there (merging, last key winning), the slice is then cut to the
    /// new length but keeps its backing elements, and an empty array makes a fresh slice.
    fn go_layers(arrays: &[Vec<Vec<(String, u8)>>]) -> Vec<String> {
        let mut backing: Vec<Option<String>> = Vec::new();
        let mut len = 0;
        for arr in arrays {
            if arr.is_empty() {
                backing.clear();
                len = 0;
                continue;
            }
            for (i, desc) in arr.iter().enumerate() {
                if i >= backing.len() {
                    backing.push(None);
                }
                for (_, x) in desc {
                    backing[i] = Some(pool(*x));
                }
            }
            len = arr.len();
        }
        backing[..len].iter().flatten().cloned().collect()
    }

    proptest! {
        #[test]
        fn protected_is_a_superset_and_the_structure_agrees_or_doubts(
            keys in proptest::collection::vec(spelling("layers"), 1..3),
            arrays in proptest::collection::vec(layers(), 1..3),
        ) {
            let n = keys.len().min(arrays.len());
            let (keys, arrays) = (&keys[..n], &arrays[..n]);
            let mut body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"{}"}}"#,
                pool(200)
            );
            for (k, arr) in keys.iter().zip(arrays) {
                let descs: Vec<String> = arr
                    .iter()
                    .map(|d| {
                        let fields: Vec<String> = d
                            .iter()
                            .map(|(dk, x)| format!(r#""{dk}":"{}""#, pool(*x)))
                            .collect();
                        format!("{{{}}}", fields.join(","))
                    })
                    .collect();
                body.push_str(&format!(r#","{k}":[{}]"#, descs.join(",")));
            }
            body.push('}');
            let go = go_layers(arrays);
            let m = parse_manifest(body.as_bytes()).expect("valid JSON");
            let mentioned: Vec<String> = m.mentions.iter().map(ToString::to_string).collect();
            for d in &go {
                prop_assert!(mentioned.contains(d), "{d} not protected in {body}");
            }
            if m.doubt.is_none() {
                prop_assert_eq!(m.kind, Kind::Image);
                let ours: Vec<String> = m.blobs[1..].iter().map(|(d, _)| d.to_string()).collect();
                prop_assert_eq!(ours, go, "{}", body);
            } else {
                prop_assert_eq!(m.kind, Kind::Unknown);
            }
        }
    }
}
