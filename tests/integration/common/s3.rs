//! A real registry on S3 storage served by a local S3 server on 127.0.0.1: moto, or with
//! `REGSWEEP_TEST_S3=s3d` regsweep-s3d (the testkit's); each test has a server of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Registry, free_port};

/// moto (or regsweep-s3d) on 127.0.0.1 with one bucket, stopped on drop.
pub struct Moto {
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

/// The bucket every S3 test uses.
pub const BUCKET: &str = "registry";
/// The registry driver's rootdirectory in the S3 tests.
pub const ROOT: &str = "/registry";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

impl Moto {
    /// Starts moto in `dir`; with `REGSWEEP_TEST_S3=s3d`, regsweep-s3d (the testkit's
    /// in-memory S3) in this process instead.
    pub fn start(dir: &Path) -> Moto {
        if std::env::var("REGSWEEP_TEST_S3").as_deref() == Ok("s3d") {
            let url = regsweep_testkit::s3d::Server::with_buckets(&[BUCKET])
                .spawn("test", "test")
                .expect("start regsweep-s3d");
            return Moto {
                dir: dir.join("s3d"),
                url,
            };
        }
        Moto::start_moto(dir)
    }

    /// Starts moto in `dir` whatever `REGSWEEP_TEST_S3` says (`shapes`: its proxies
    /// forward with their own `Host` header, which a signature-checking server refuses).
    pub fn start_moto(dir: &Path) -> Moto {
        let dir = dir.join("moto");
        for _ in 0..5 {
            let port = free_port();
            let out = Command::new(script("moto.sh"))
                .args(["start", &dir.to_string_lossy(), &port.to_string(), BUCKET])
                .output()
                .expect("run scripts/moto.sh");
            if out.status.success() {
                return Moto {
                    dir,
                    url: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                };
            }
            eprintln!(
                "moto start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        panic!("could not start moto_server");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new(script("moto.sh"))
            .args(["stop", &self.dir.to_string_lossy()])
            .status();
    }
}

/// A registry whose storage is the bucket on `moto`.
pub fn registry_on(moto: &Moto) -> Registry {
    Registry::start_with(
        "",
        &[
            ("S3_TEST_ENDPOINT", &moto.url),
            ("S3_TEST_BUCKET", BUCKET),
            ("S3_TEST_ROOT", ROOT),
        ],
    )
}

/// The environment regsweep needs for the bucket, in the original tool's variable names.
pub fn s3_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("REGISTRY_STORAGE", "S3".to_owned()),
        ("ACCESS_KEY", "test".to_owned()),
        ("SECRET_KEY", "test".to_owned()),
        ("BUCKET", BUCKET.to_owned()),
        ("REGION", "us-east-1".to_owned()),
        ("REGISTRY_DIR", ROOT.to_owned()),
        ("S3_ENDPOINT", moto.url.clone()),
    ]
}

/// Every key under `prefix` in the bucket.
pub fn keys(moto: &Moto, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = regsweep_testkit::s3fill::client(&moto.url).await;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = c
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return out,
            }
        }
    })
}

/// Writes `body` under `key` in the bucket.
pub fn put(moto: &Moto, key: &str, body: &[u8]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = regsweep_testkit::s3fill::client(&moto.url).await;
        c.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("put");
    });
}
