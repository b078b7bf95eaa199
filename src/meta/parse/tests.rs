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
