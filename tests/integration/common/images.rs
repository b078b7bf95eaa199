//! Images for the collection tests: ones to keep (tagged) and ones made garbage (pushed,
//! then deleted), built the same way every time a seed is given again.

use regsweep::digest::Digest;
use regsweep_testkit::{ImageSpec, Pushed};

use super::Registry;

/// The image a seed makes (OCI, amd64, a fixed creation time): pushed again, the same
/// digests.
pub fn spec(seed: u64) -> ImageSpec {
    ImageSpec {
        os: "linux",
        arch: "amd64",
        created: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        seed,
        oci: true,
    }
}

/// Pushes an image to keep (Docker media types, arm64) to `repo`, tagged `v<seed>`; gives
/// the tag.
pub fn keep_image(reg: &Registry, repo: &str, seed: u64) -> String {
    let p = reg.pusher();
    let spec = ImageSpec {
        arch: "arm64",
        oci: false,
        ..spec(seed)
    };
    let img = p.image(repo, &spec).expect("push");
    let tag = format!("v{seed}");
    p.tag(repo, &tag, &img).expect("tag");
    tag
}

/// Pushes the image of `seed` to `repo` and deletes it: its manifest, config and layer are
/// garbage. Gives it and those three digests.
pub fn garbage_image(reg: &Registry, repo: &str, seed: u64) -> (Pushed, Vec<Digest>) {
    let p = reg.pusher();
    let img = p.image(repo, &spec(seed)).expect("push");
    let m: serde_json::Value = serde_json::from_slice(&img.body).expect("json");
    let mut blobs = vec![img.digest];
    blobs.push(Digest::parse(m["config"]["digest"].as_str().expect("config")).expect("digest"));
    for l in m["layers"].as_array().expect("layers") {
        blobs.push(Digest::parse(l["digest"].as_str().expect("layer")).expect("digest"));
    }
    assert_eq!(p.delete(repo, &img.digest).expect("delete"), 202);
    (img, blobs)
}
