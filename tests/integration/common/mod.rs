//! Test harness: the real docker-registry on 127.0.0.1, the regsweep binary, storage snapshots.
//! Every registry it starts listens on 127.0.0.1 and lives in a temporary directory.
#![allow(dead_code)]

pub mod images;
pub mod proxy;
pub mod quarantine;
pub mod redis;
pub mod running;
pub mod s3;
pub mod standard;
pub mod token;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regsweep::digest::Digest;
use regsweep_testkit::Pusher;
pub use running::Running;
use serde_json::Value;
use tempfile::TempDir;

/// A running docker-registry with its own storage, stopped on drop.
pub struct Registry {
    pub dir: TempDir,
    pub url: String,
    pub port: u16,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Registry {
    /// Starts a registry; `extra` is YAML appended to its config, `env` overrides.
    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("regsweep-it-")
            .tempdir()
            .expect("tempdir");
        if !extra.is_empty() {
            std::fs::write(dir.path().join("extra.yml"), extra).expect("write extra.yml");
        }
        for _ in 0..5 {
            let port = free_port();
            let out = Command::new(scripts().join("registry.sh"))
                .args(["start", &dir.path().to_string_lossy(), &port.to_string()])
                .envs(env.iter().copied())
                .output()
                .expect("run scripts/registry.sh");
            if out.status.success() {
                let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                return Registry { dir, url, port };
            }
            eprintln!(
                "registry start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        panic!("could not start docker-registry");
    }

    /// Starts a plain registry.
    pub fn start() -> Registry {
        Self::start_with("", &[])
    }

    /// The storage root (what REGISTRY_DIR points at).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// A pusher for this registry.
    pub fn pusher(&self) -> Pusher {
        Pusher::new(&self.url).expect("pusher")
    }

    /// Makes every link and directory under `repositories/` look `ago` old (`touch -h -d`).
    pub fn age_links(&self, ago: &str) {
        let repos = self.root().join("docker/registry/v2/repositories");
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find '{}' -exec touch -h -d '{ago}' {{}} +",
                repos.display()
            ))
            .status()
            .expect("touch");
        assert!(st.success());
    }

    /// The registry's config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Stops the registry (it is also stopped on drop).
    pub fn stop(&self) {
        let _ = Command::new(scripts().join("registry.sh"))
            .args(["stop", &self.dir.path().to_string_lossy()])
            .status();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `docker-registry garbage-collect` on `config`; gives the blobs it names as eligible
/// for deletion (with `dry_run`, what it would delete).
fn collector(config: &Path, dry_run: bool) -> std::collections::BTreeSet<String> {
    let mut c = Command::new("docker-registry");
    c.arg("garbage-collect");
    if dry_run {
        c.arg("--dry-run");
    }
    let out = c
        .arg(config)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("run docker-registry garbage-collect");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "garbage-collect failed: {stderr}");
    stdout
        .lines()
        .chain(stderr.lines())
        .filter_map(|l| l.split("blob eligible for deletion: ").nth(1))
        .map(|d| d.trim().to_owned())
        .collect()
}

/// Runs regsweep (as [`regsweep`]), checks it exits with `code` (showing stderr if not),
/// and gives stdout and stderr.
pub fn run_expecting(env: &[(&str, &str)], args: &[&str], code: i32) -> (String, String) {
    let out = regsweep(env, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "regsweep exited {:?}:\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs the built regsweep with exactly these environment variables (plus PATH).
pub fn regsweep(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c.envs(env.iter().copied()).args(args);
    c.output().expect("run regsweep")
}

/// Fails unless `out` exited with `code`, showing what it printed.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "regsweep exited {:?}:\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a dry run with JSON output, checks it exits 0 (nothing skipped, no warning), and
/// parses the report.
pub fn dry_run_json(root: &Path, extra_env: &[(&str, &str)]) -> Value {
    dry_run_json_expecting(root, extra_env, 0)
}

/// [`dry_run_json`] of a dry run that must exit `code` (4: a repository failed closed).
pub fn dry_run_json_expecting(root: &Path, extra_env: &[(&str, &str)], code: i32) -> Value {
    let root = root.to_string_lossy().into_owned();
    let mut env = vec![
        ("REGISTRY_DIR", root.as_str()),
        ("DRY_RUN", "true"),
        ("OUTPUT_FORMAT", "json"),
    ];
    env.extend_from_slice(extra_env);
    let out = regsweep(&env, &[]);
    assert_exit(&out, code);
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// The verdict and reason the report gives, as `verdict reason [related digest]`.
pub type Verdicts = BTreeMap<(String, Digest), String>;

/// Every decision of a JSON report as (repository, digest) → `verdict reason [related]`.
pub fn verdicts(report: &Value) -> Verdicts {
    let mut out = Verdicts::new();
    for repo in report["repositories"].as_array().expect("repositories") {
        let name = repo["name"].as_str().expect("name").to_owned();
        for d in repo["decisions"].as_array().expect("decisions") {
            let digest =
                Digest::parse(d["digest"].as_str().expect("digest")).expect("valid digest");
            let mut v = format!(
                "{} {}",
                d["verdict"].as_str().unwrap_or("?"),
                d["reason"].as_str().unwrap_or("?")
            );
            for key in ["parent", "subject", "rank"] {
                if let Some(x) = d.get(key) {
                    v.push_str(&format!(
                        " {key}={}",
                        x.as_str().map_or_else(|| x.to_string(), str::to_owned)
                    ));
                }
            }
            out.insert((name.clone(), digest), v);
        }
    }
    out
}

/// Every file and directory under `root`: path → (size, mtime ns, content for small files).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i128, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        let content = if meta.is_file() && meta.len() < 4096 {
            std::fs::read(&p).unwrap_or_default()
        } else {
            Vec::new()
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                stack.push(e.expect("entry").path());
            }
        }
        out.insert(p, (meta.len(), mtime, content));
    }
    out
}

/// Paths under a root, each with the SHA-256 of its bytes (a file), its kind (a FIFO, a
/// link) or nothing (a directory): what [`contents`] gives.
pub type Contents = BTreeMap<PathBuf, Option<String>>;

/// Fails unless `left` and `right` hold the same paths with the same bytes, naming only the
/// paths that differ.
pub fn assert_same_contents(left: &Contents, right: &Contents, what: &str) {
    let only_left: Vec<&PathBuf> = left.keys().filter(|k| !right.contains_key(*k)).collect();
    let only_right: Vec<&PathBuf> = right.keys().filter(|k| !left.contains_key(*k)).collect();
    let changed: Vec<&PathBuf> = left
        .iter()
        .filter(|(k, v)| right.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_left.is_empty() && only_right.is_empty() && changed.is_empty(),
        "{what}: not the same tree\nonly on the left: {only_left:#?}\nonly on the right: \
         {only_right:#?}\nother bytes: {changed:#?}"
    );
}

/// Every file and directory under `root`, by path relative to it: each regular file with
/// the SHA-256 of all its bytes, each directory with none, anything else with its kind. Two trees are equal when the same
/// paths hold the same bytes (times aside: a copy or a collector may touch them).
pub fn contents(root: &Path) -> Contents {
    use sha2::Digest as _;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let hash = if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                stack.push(e.expect("entry").path());
            }
            None
        } else if meta.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            Some(hex::encode(sha2::Sha256::digest(&bytes)))
        } else {
            // A FIFO (never read: it would block) or a link: its kind and target.
            Some(format!(
                "{:?} {:?}",
                meta.file_type(),
                std::fs::read_link(&p).ok()
            ))
        };
        let rel = p.strip_prefix(root).expect("under root").to_path_buf();
        out.insert(rel, hash);
    }
    out
}

impl Registry {
    /// Restarts on the same storage and port, with new extra YAML and environment.
    pub fn restart_with(&self, extra: &str, env: &[(&str, &str)]) -> String {
        self.stop();
        let extra_path = self.dir.path().join("extra.yml");
        if extra.is_empty() {
            let _ = std::fs::remove_file(&extra_path);
        } else {
            std::fs::write(&extra_path, extra).expect("write extra.yml");
        }
        let out = Command::new(scripts().join("registry.sh"))
            .args([
                "start",
                &self.dir.path().to_string_lossy(),
                &self.port.to_string(),
            ])
            .envs(env.iter().copied())
            .output()
            .expect("run scripts/registry.sh");
        assert!(
            out.status.success(),
            "restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Total size of every blob's `data` file in the registry's storage.
    pub fn blob_bytes(&self) -> u64 {
        snapshot(&self.root().join("docker/registry/v2/blobs"))
            .iter()
            .filter(|(p, _)| p.file_name().is_some_and(|n| n == "data"))
            .map(|(_, (size, _, _))| *size)
            .sum()
    }

    /// Runs `docker-registry garbage-collect CONFIG` (never `-m`) with the registry stopped.
    pub fn garbage_collect(&self) {
        self.stop();
        collector(&self.config(), false);
    }

    /// The blobs `docker-registry garbage-collect --dry-run` would delete (registry stopped).
    pub fn garbage_collect_dry_run(&self) -> std::collections::BTreeSet<String> {
        self.stop();
        collector(&self.config(), true)
    }

    /// Runs the registry's collector on another storage root (a copy of this registry's),
    /// through a copy of this config pointed at it.
    pub fn garbage_collect_at(&self, root: &Path) {
        let config = std::fs::read_to_string(self.config()).expect("config");
        let moved = config.replace(&*self.root().to_string_lossy(), &root.to_string_lossy());
        let path = root.with_extension("yml");
        std::fs::write(&path, moved).expect("write config");
        collector(&path, false);
    }

    fn repositories(&self) -> PathBuf {
        self.root().join("docker/registry/v2/repositories")
    }

    /// Digests whose revision link exists in `repo`.
    pub fn revisions(&self, repo: &str) -> std::collections::BTreeSet<Digest> {
        let dir = self
            .repositories()
            .join(repo)
            .join("_manifests/revisions/sha256");
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().join("link").is_file())
                    .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tag → digest of `repo`, from storage.
    pub fn tags(&self, repo: &str) -> BTreeMap<String, Digest> {
        let dir = self.repositories().join(repo).join("_manifests/tags");
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(Result::ok).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let link = std::fs::read_to_string(e.path().join("current/link")).expect("tag link");
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                Digest::parse(&link).expect("tag digest"),
            );
        }
        out
    }

    /// Where a blob's data file lives in this registry's storage.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{}/data",
            &d.hex()[..2],
            d.hex()
        ))
    }

    /// A blob's bytes (a manifest body to push again, say).
    pub fn blob_body(&self, d: &Digest) -> Vec<u8> {
        std::fs::read(self.blob_path(d)).unwrap_or_else(|e| panic!("blob {d}: {e}"))
    }

    /// A copy of the whole storage (`cp -a`) beside it, named `name`; its root.
    pub fn copy_storage(&self, name: &str) -> PathBuf {
        let copy = self.dir.path().join(name);
        let st = Command::new("cp")
            .arg("-a")
            .arg(self.root())
            .arg(&copy)
            .status()
            .expect("cp");
        assert!(st.success(), "cp -a {}", self.root().display());
        copy
    }

    /// Does a blob's data file still exist on disk?
    pub fn blob_exists(&self, d: &Digest) -> bool {
        self.root()
            .join(format!(
                "docker/registry/v2/blobs/sha256/{}/{}/data",
                &d.hex()[..2],
                d.hex()
            ))
            .is_file()
    }
}

/// Pulls every tag of `repo` through the API: manifest, children (recursively), config and
/// layers, checking each body against its digest. Returns how many objects were checked.
pub fn pull_all_tags(url: &str, repo: &str, tags: &[String]) -> usize {
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let get = |path: String| -> Vec<u8> {
        let r = client
            .get(format!("{url}/v2/{repo}/{path}"))
            .header("Accept", regsweep::meta::parse::ACCEPT_MANIFESTS)
            .send()
            .expect("GET");
        assert!(r.status().is_success(), "GET {repo}/{path}: {}", r.status());
        r.bytes().expect("body").to_vec()
    };
    let mut checked = 0;
    let mut stack: Vec<(String, Option<Digest>)> = tags.iter().map(|t| (t.clone(), None)).collect();
    while let Some((reference, want)) = stack.pop() {
        let body = get(format!("manifests/{reference}"));
        if let Some(w) = want {
            assert_eq!(
                Digest::of(&body),
                w,
                "manifest {repo}@{reference} body matches its digest"
            );
        }
        checked += 1;
        let v: Value = serde_json::from_slice(&body).expect("manifest JSON");
        for child in v["manifests"].as_array().into_iter().flatten() {
            let d = Digest::parse(child["digest"].as_str().expect("digest")).expect("child digest");
            stack.push((d.to_string(), Some(d)));
        }
        let blobs = v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(v.get("config"));
        for b in blobs {
            let d = Digest::parse(b["digest"].as_str().expect("digest")).expect("blob digest");
            assert_eq!(
                Digest::of(&get(format!("blobs/{d}"))),
                d,
                "blob {d} of {repo}@{reference}"
            );
            checked += 1;
        }
    }
    checked
}

/// Writes a self-signed certificate for 127.0.0.1 and its key into `dir` (cert.pem, key.pem).
pub fn self_signed_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    (cert, key)
}

/// Writes a test CA and a server certificate for 127.0.0.1 signed by it into `dir`;
/// returns (ca.pem, cert.pem, key.pem).
pub fn ca_signed_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=regsweep-test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
"#;
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("openssl");
    assert!(st.success(), "making the test CA failed");
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// Pushes `n` distinct untagged manifests (plus their base image) to `repo`.
pub fn push_bulk(url: &str, repo: &str, n: usize) {
    regsweep_testkit::push_untagged(url, repo, n)
        .unwrap_or_else(|e| panic!("bulk push to {repo} failed: {e:#}"));
}

/// The digests a JSON report plans to delete, as (repository, digest).
pub fn planned_deletes(report: &Value) -> std::collections::BTreeSet<(String, Digest)> {
    let mut out = std::collections::BTreeSet::new();
    for r in report["repositories"].as_array().expect("repositories") {
        let name = r["name"].as_str().expect("name").to_owned();
        for d in r["delete_order"].as_array().expect("delete_order") {
            out.insert((
                name.clone(),
                Digest::parse(d.as_str().expect("digest")).expect("digest"),
            ));
        }
    }
    out
}

/// The revisions a JSON report keeps, per repository.
pub fn planned_keeps(report: &Value) -> BTreeMap<String, std::collections::BTreeSet<Digest>> {
    let mut out = BTreeMap::new();
    for r in report["repositories"].as_array().expect("repositories") {
        let set: &mut std::collections::BTreeSet<Digest> = out
            .entry(r["name"].as_str().expect("name").to_owned())
            .or_default();
        for d in r["decisions"].as_array().expect("decisions") {
            if d["verdict"] == "keep" {
                set.insert(Digest::parse(d["digest"].as_str().expect("digest")).expect("digest"));
            }
        }
    }
    out
}

/// Replaces the file at `path` with a FIFO: a run that reads it blocks there
/// ([`Running::opened`] says when it got there).
pub fn make_fifo(path: &Path) {
    std::fs::remove_file(path).expect("rm");
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// A stderr line a test waits for: what it is (for the failure message), and a test of a line.
pub type Until<'a> = (&'a str, &'a dyn Fn(&str) -> bool);

/// Runs regsweep with only `env` and `args` (see [`Running::start`]); once its signal
/// handlers are installed, it has opened `fifo` (so it is blocked reading it) and, if given,
/// it has printed a line `until` accepts, sends it SIG`signal`; gives what it printed (all of
/// stderr) and how it exited.
pub fn signalled(
    env: &[(&str, &str)],
    args: &[&str],
    fifo: &Path,
    until: Option<Until>,
    signal: &str,
) -> Output {
    let mut run = Running::start(env, args);
    run.ready();
    let writer = run.opened(fifo);
    if let Some((what, accepts)) = until {
        run.wait_for(what, accepts);
    }
    run.signal(signal);
    let out = run.finish();
    drop(writer);
    out
}
