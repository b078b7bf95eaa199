//! Test harness: the real docker-registry on 127.0.0.1, the regsweep binary, storage snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regsweep::digest::Digest;
use regsweep::testkit::Pusher;
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

/// Runs the built regsweep with exactly these environment variables (plus PATH).
pub fn regsweep(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c.envs(env.iter().copied()).args(args);
    c.output().expect("run regsweep")
}

/// Runs a dry run with JSON output and parses the report; panics with stderr on failure.
pub fn dry_run_json(root: &Path, extra_env: &[(&str, &str)]) -> Value {
    let root = root.to_string_lossy().into_owned();
    let mut env = vec![
        ("REGISTRY_DIR", root.as_str()),
        ("DRY_RUN", "true"),
        ("OUTPUT_FORMAT", "json"),
    ];
    env.extend_from_slice(extra_env);
    let out = regsweep(&env, &[]);
    assert!(
        out.status.success(),
        "regsweep failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
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
