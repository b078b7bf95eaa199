//! Evidence of use (issue 22): manifests a workload runs (`--keep-in-use`) and manifests
//! pulled recently (`--pull-log`), gathered before the scan and consulted by the planner.
//! Evidence only ever adds keeps.

pub mod events;
pub mod pull_log;
pub mod refs;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::digest::{Digest, DigestMap, DigestSet};

/// Where a pull was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The registry's log (`--pull-log`).
    PullLog,
    /// The registry's notification events (`--pull-events`).
    PullEvents,
}

impl Source {
    /// The source's name as reports give it.
    pub fn name(self) -> &'static str {
        match self {
            Source::PullLog => "pull-log",
            Source::PullEvents => "pull-events",
        }
    }
}

/// One pull: when, and where it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pull {
    /// Unix seconds.
    pub at: i64,
    /// Where it was seen.
    pub source: Source,
}

impl Pull {
    /// Keeps the later of two pulls.
    fn merge(&mut self, other: Pull) {
        if other.at > self.at {
            *self = other;
        }
    }
}

/// What a manifest is protected by, as the planner is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A workload names it by digest.
    InUse,
    /// It was pulled inside the window.
    Pulled(Pull),
}

/// Every piece of evidence of one run, by repository.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Digests workloads pin, per repository.
    in_use: HashMap<String, DigestSet>,
    /// The last pull per repository and digest.
    pulls: HashMap<String, DigestMap<Pull>>,
    /// The last pull per repository and tag when the log names no digest.
    tag_pulls: HashMap<String, HashMap<String, Pull>>,
    /// `--keep-pulled-within` in seconds (0: pulls protect nothing).
    pub window_secs: i64,
    /// References to other registries, ignored.
    pub ignored_refs: usize,
    /// References that pin no digest (a tag only), ignored.
    pub unpinned_refs: usize,
    /// The earliest time any pull evidence covers.
    pub covered_from: Option<i64>,
    /// Whether a flag asked for evidence.
    asked: bool,
}

impl Evidence {
    /// Whether there is no evidence at all (and none was asked for).
    pub fn is_empty(&self) -> bool {
        self.in_use.is_empty() && self.pulls.is_empty() && self.tag_pulls.is_empty()
    }

    /// Whether any evidence was asked for (a flag given), even if none was found.
    pub fn is_asked(&self) -> bool {
        self.asked
    }

    /// Notes that evidence was asked for.
    pub fn ask(&mut self) {
        self.asked = true;
    }

    /// Records a digest a workload runs.
    pub fn add_in_use(&mut self, repo: &str, d: Digest) {
        self.in_use.entry(repo.to_owned()).or_default().insert(d);
    }

    /// Records a pull by digest.
    pub fn add_pull(&mut self, repo: &str, d: Digest, pull: Pull) {
        self.cover(pull.at);
        let m = self.pulls.entry(repo.to_owned()).or_default();
        m.entry(d).and_modify(|p| p.merge(pull)).or_insert(pull);
    }

    /// Records a pull by tag whose served digest is unknown.
    pub fn add_tag_pull(&mut self, repo: &str, tag: &str, pull: Pull) {
        self.cover(pull.at);
        let m = self.tag_pulls.entry(repo.to_owned()).or_default();
        m.entry(tag.to_owned())
            .and_modify(|p| p.merge(pull))
            .or_insert(pull);
    }

    /// Notes that evidence exists from `at` on.
    pub fn cover(&mut self, at: i64) {
        self.covered_from = Some(self.covered_from.map_or(at, |c| c.min(at)));
    }

    /// Counts of the pieces of evidence: pinned digests, pulls by digest, pulls by tag.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |m: usize, acc: usize| acc + m;
        (
            self.in_use.values().map(|s| s.len()).fold(0, n),
            self.pulls.values().map(|s| s.len()).fold(0, n),
            self.tag_pulls.values().map(|s| s.len()).fold(0, n),
        )
    }

    /// What protects manifests of `repo` at `now`: in-use digests first, then pulls inside
    /// the window; a pull by tag protects what `tag_target` says the tag points to.
    pub fn uses(
        &self,
        repo: &str,
        now: i64,
        tag_target: impl Fn(&str) -> Option<Digest>,
    ) -> Vec<(Digest, Use)> {
        let mut out: Vec<(Digest, Use)> = Vec::new();
        if let Some(s) = self.in_use.get(repo) {
            out.extend(s.iter().map(|d| (*d, Use::InUse)));
        }
        if self.window_secs <= 0 {
            return sorted(out);
        }
        let recent = |p: &Pull| now.saturating_sub(p.at) <= self.window_secs;
        if let Some(m) = self.pulls.get(repo) {
            out.extend(
                m.iter()
                    .filter(|(_, p)| recent(p))
                    .map(|(d, p)| (*d, Use::Pulled(*p))),
            );
        }
        if let Some(m) = self.tag_pulls.get(repo) {
            out.extend(
                m.iter()
                    .filter(|(_, p)| recent(p))
                    .filter_map(|(t, p)| Some((tag_target(t)?, Use::Pulled(*p)))),
            );
        }
        sorted(out)
    }

    /// The warning when the window reaches back further than the evidence does.
    pub fn coverage_warning(&self, now: i64) -> Option<String> {
        if self.window_secs <= 0 {
            return None;
        }
        let start = now.saturating_sub(self.window_secs);
        match self.covered_from {
            None => Some(format!(
                "--keep-pulled-within {}: the pull evidence holds no pull at all; nothing is kept for being pulled",
                humantime::format_duration(std::time::Duration::from_secs(
                    self.window_secs.unsigned_abs()
                ))
            )),
            Some(from) if from > start => Some(format!(
                "--keep-pulled-within {}: pull evidence exists only from {} on; pulls before that are unknown",
                humantime::format_duration(std::time::Duration::from_secs(
                    self.window_secs.unsigned_abs()
                )),
                crate::timefmt::rfc3339(from).unwrap_or_else(|| from.to_string())
            )),
            Some(_) => None,
        }
    }
}

/// In-use first, then pulls newest first, deterministic.
fn sorted(mut v: Vec<(Digest, Use)>) -> Vec<(Digest, Use)> {
    let key = |u: &Use| match u {
        Use::InUse => (0, 0),
        Use::Pulled(p) => (1, -p.at),
    };
    v.sort_by(|a, b| key(&a.1).cmp(&key(&b.1)).then(a.0.cmp(&b.0)));
    v
}

/// Opens an evidence file (`-`: stdin) and reads it whole; the error names the file.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = Vec::new();
    let res = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf).map(|_| ()))
    };
    res.map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).expect("digest")
    }

    #[test]
    fn only_pulls_inside_the_window_protect_and_tags_resolve_now() {
        let mut ev = Evidence::default();
        let pull = |at| Pull {
            at,
            source: Source::PullLog,
        };
        ev.add_in_use("r", d(1));
        ev.add_pull("r", d(2), pull(1_000));
        ev.add_pull("r", d(2), pull(900));
        ev.add_pull("r", d(3), pull(100));
        ev.add_tag_pull("r", "v1", pull(950));
        ev.add_tag_pull("r", "gone", pull(950));
        ev.add_pull("other", d(4), pull(1_000));
        // No window: only the pins.
        assert_eq!(ev.uses("r", 1_000, |_| None), vec![(d(1), Use::InUse)]);
        ev.window_secs = 100;
        let uses = ev.uses("r", 1_000, |t| (t == "v1").then(|| d(5)));
        assert_eq!(
            uses,
            vec![
                (d(1), Use::InUse),
                (d(2), Use::Pulled(pull(1_000))),
                (d(5), Use::Pulled(pull(950))),
            ]
        );
        assert_eq!(ev.covered_from, Some(100));
        assert_eq!(ev.coverage_warning(1_000), None);
        ev.window_secs = 10_000;
        let w = ev.coverage_warning(1_000).expect("warning");
        assert!(w.contains("1970-01-01T00:01:40Z"), "{w}");
    }
}
