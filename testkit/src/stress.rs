//! A push storm against a real registry, to prove a collection run while it serves breaks
//! no image: pushers that keep pushing images whose layers come from a small shared pool
//! (so they reuse the layers of images deleted a moment ago, the very blobs a collection
//! is about to take), delete images and push deleted ones again; pullers that pull what
//! was pushed; and a ledger of every manifest a pusher got a 201 for and did not delete,
//! pulled in full at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Result;
use serde_json::json;

use crate::push::Pusher;
use regsweep::digest::Digest;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How the storm blows.
#[derive(Clone, Debug)]
pub struct StormConfig {
    /// The registry (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Pushing threads, one repository each (`storm/r<i>`).
    pub pushers: usize,
    /// Pulling threads.
    pub pullers: usize,
    /// Layers in the shared pool every image takes two of.
    pub pool: usize,
    /// Makes this storm's configs unique.
    pub seed: u64,
}

/// What the storm did.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Manifests pushed with a 201.
    pub pushed: u64,
    /// Pushes the registry refused (a layer gone between the HEAD and the manifest: the
    /// client would upload it again).
    pub push_errors: u64,
    /// Manifests deleted.
    pub deleted: u64,
    /// Pulls made.
    pub pulls: u64,
    /// 404s met while pulling a manifest still in the ledger.
    pub transient_404: u64,
}

/// One image a pusher made: enough to push it again byte for byte.
#[derive(Clone, Debug)]
struct Image {
    layers: [usize; 2],
    config: Vec<u8>,
    manifest: Vec<u8>,
    digest: Digest,
}

impl Image {
    /// The blobs it names.
    fn blobs(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = self
            .layers
            .iter()
            .map(|k| Digest::of(&pool_layer(*k)))
            .collect();
        out.push(Digest::of(&self.config));
        out
    }
}

/// Every manifest a pusher got a 201 for and has not deleted since, with what it names.
pub type Ledger = BTreeMap<(String, Digest), Vec<Digest>>;

/// A storm in progress.
pub struct Storm {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    ledger: Arc<Mutex<Ledger>>,
    counts: Arc<Mutex<Counts>>,
}

/// The bytes of pool layer `k`.
fn pool_layer(k: usize) -> Vec<u8> {
    format!("storm pool layer {k}\n").repeat(128).into_bytes()
}

fn make_image(layers: [usize; 2], seed: u64, n: u64) -> Result<Image> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": [format!("STORM={seed}-{n}")]},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))?;
    let layer = |k: usize| {
        let b = pool_layer(k);
        json!({"mediaType": LAYER, "size": b.len(), "digest": Digest::of(&b).to_string()})
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "size": config.len(), "digest": Digest::of(&config).to_string()},
        "layers": [layer(layers[0]), layer(layers[1])],
    }))?;
    let digest = Digest::of(&manifest);
    Ok(Image {
        layers,
        config,
        manifest,
        digest,
    })
}

/// Pushes an image as a client does: each blob HEADed first and skipped when the registry
/// says it has it, then the manifest by digest.
fn push(p: &Pusher, repo: &str, img: &Image) -> Result<()> {
    for k in img.layers {
        p.blob(repo, &pool_layer(k))?;
    }
    p.blob(repo, &img.config)?;
    p.manifest(repo, None, MANIFEST, img.manifest.clone())?;
    Ok(())
}

impl Storm {
    /// Starts the storm: first each pusher pushes a few images and deletes half of them
    /// (so there is garbage from the start), then pushers and pullers run until
    /// [`Storm::stop`].
    pub fn start(cfg: &StormConfig) -> Result<Storm> {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::new()));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let mut threads = Vec::new();
        for i in 0..cfg.pushers {
            let mut w = PushWorker {
                p: Pusher::new(&cfg.url)?,
                repo: format!("storm/r{i}"),
                rng: fastrand::Rng::with_seed(cfg.seed * 1000 + i as u64),
                live: Vec::new(),
                deleted: Vec::new(),
                n: 0,
                seed: cfg.seed * 1000 + i as u64,
                pool: cfg.pool.max(3),
                ledger: ledger.clone(),
                counts: counts.clone(),
            };
            for _ in 0..6 {
                w.push_new();
            }
            for _ in 0..3 {
                w.delete_one();
            }
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    w.step();
                }
            }));
        }
        for i in 0..cfg.pullers {
            let p = Pusher::new(&cfg.url)?;
            let (stop, ledger, counts) = (stop.clone(), ledger.clone(), counts.clone());
            let mut rng = fastrand::Rng::with_seed(cfg.seed * 7 + i as u64);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    pull_one(&p, &ledger, &counts, &mut rng);
                }
            }));
        }
        Ok(Storm {
            stop,
            threads,
            ledger,
            counts,
        })
    }

    /// What the storm did so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Stops every thread; gives the ledger and the counts.
    pub fn stop(self) -> (Ledger, Counts) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let ledger = self.ledger.lock().map(|l| l.clone()).unwrap_or_default();
        let counts = self.counts.lock().map(|c| c.clone()).unwrap_or_default();
        (ledger, counts)
    }
}

/// One pusher, alone on its repository.
struct PushWorker {
    p: Pusher,
    repo: String,
    rng: fastrand::Rng,
    live: Vec<Image>,
    deleted: Vec<Image>,
    n: u64,
    seed: u64,
    pool: usize,
    ledger: Arc<Mutex<Ledger>>,
    counts: Arc<Mutex<Counts>>,
}

impl PushWorker {
    /// Pushes a new image, a deleted one again, or deletes one.
    fn step(&mut self) {
        match self.rng.usize(0..10) {
            0..=3 => self.push_new(),
            4..=6 if self.live.len() > 1 => self.delete_one(),
            7..=9 if !self.deleted.is_empty() => {
                let i = self.rng.usize(0..self.deleted.len());
                let img = self.deleted.swap_remove(i);
                self.push_image(img);
            }
            _ => self.push_new(),
        }
    }

    fn push_new(&mut self) {
        let a = self.rng.usize(0..self.pool);
        let b = (a + 1 + self.rng.usize(0..self.pool - 1)) % self.pool;
        self.n += 1;
        if let Ok(img) = make_image([a, b], self.seed, self.n) {
            self.push_image(img);
        }
    }

    fn push_image(&mut self, img: Image) {
        match push(&self.p, &self.repo, &img) {
            Ok(()) => {
                if let Ok(mut l) = self.ledger.lock() {
                    l.insert((self.repo.clone(), img.digest), img.blobs());
                }
                if let Ok(mut c) = self.counts.lock() {
                    c.pushed += 1;
                }
                self.live.push(img);
            }
            Err(_) => {
                if let Ok(mut c) = self.counts.lock() {
                    c.push_errors += 1;
                }
                self.deleted.push(img);
            }
        }
    }

    /// Deletes a live image: out of the ledger first, so it is never expected to pull.
    fn delete_one(&mut self) {
        if self.live.is_empty() {
            return;
        }
        let img = self.live.swap_remove(self.rng.usize(0..self.live.len()));
        if let Ok(mut l) = self.ledger.lock() {
            l.remove(&(self.repo.clone(), img.digest));
        }
        if matches!(self.p.delete(&self.repo, &img.digest), Ok(202)) {
            if let Ok(mut c) = self.counts.lock() {
                c.deleted += 1;
            }
            self.deleted.push(img);
        } else {
            // Not deleted after all: it stays live.
            if let Ok(mut l) = self.ledger.lock() {
                l.insert((self.repo.clone(), img.digest), img.blobs());
            }
            self.live.push(img);
        }
    }
}

/// Pulls one manifest of the ledger in full; a 404 while it is still in the ledger is a
/// transient one (the final check tells whether it stayed).
fn pull_one(p: &Pusher, ledger: &Mutex<Ledger>, counts: &Mutex<Counts>, rng: &mut fastrand::Rng) {
    let pick = ledger.lock().ok().and_then(|l| {
        if l.is_empty() {
            return None;
        }
        l.iter()
            .nth(rng.usize(0..l.len()))
            .map(|(k, v)| (k.clone(), v.clone()))
    });
    let Some(((repo, digest), blobs)) = pick else {
        std::thread::sleep(std::time::Duration::from_millis(20));
        return;
    };
    let mut missing = false;
    for path in std::iter::once(format!("manifests/{digest}"))
        .chain(blobs.iter().map(|b| format!("blobs/{b}")))
    {
        if let Ok((404, _)) = p.get(&repo, &path) {
            missing = true;
        }
    }
    let still = ledger
        .lock()
        .map(|l| l.contains_key(&(repo.clone(), digest)))
        .unwrap_or(false);
    if let Ok(mut c) = counts.lock() {
        c.pulls += 1;
        if missing && still {
            c.transient_404 += 1;
        }
    }
}

/// Pulls every manifest of the ledger in full (manifest by digest, every blob), checking
/// each body against its digest; gives how many were checked and each broken one.
pub fn verify(url: &str, ledger: &Ledger) -> Result<(usize, Vec<String>)> {
    let p = Pusher::new(url)?;
    let mut broken = Vec::new();
    for ((repo, digest), blobs) in ledger {
        for (path, want) in std::iter::once((format!("manifests/{digest}"), *digest))
            .chain(blobs.iter().map(|b| (format!("blobs/{b}"), *b)))
        {
            match p.get(repo, &path) {
                Ok((200, body)) if Digest::of(&body) == want => {}
                Ok((status, _)) => {
                    broken.push(format!("{repo}@{digest}: {path} answered {status}"))
                }
                Err(e) => broken.push(format!("{repo}@{digest}: {path}: {e}")),
            }
        }
    }
    Ok((ledger.len(), broken))
}

/// What a storm with collections in it came to.
#[derive(Debug, Default)]
pub struct Report {
    /// What the storm did.
    pub counts: Counts,
    /// Manifests pulled in full at the end.
    pub checked: usize,
    /// Manifests that did not pull in full, with what failed.
    pub broken: Vec<String>,
    /// Each collection's exit code, in order.
    pub gc_codes: Vec<i32>,
}

/// Blows a storm for `duration`, running `gc` again and again while it blows and once more
/// after it stopped, then pulls every manifest of the ledger in full.
pub fn run(
    cfg: &StormConfig,
    duration: std::time::Duration,
    mut gc: impl FnMut() -> i32,
) -> Result<Report> {
    let storm = Storm::start(cfg)?;
    let until = std::time::Instant::now() + duration;
    let mut gc_codes = Vec::new();
    while std::time::Instant::now() < until {
        gc_codes.push(gc());
    }
    let (ledger, counts) = storm.stop();
    gc_codes.push(gc());
    let (checked, broken) = verify(&cfg.url, &ledger)?;
    Ok(Report {
        counts,
        checked,
        broken,
        gc_codes,
    })
}
