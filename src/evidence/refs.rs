//! `--keep-in-use` files: image references one per line, or the JSON of Kubernetes pods or
//! workload lists (every `image` and `imageID` string in it), narrowed to this registry.

use std::path::Path;

use super::Evidence;
use crate::digest::Digest;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host, lowercased, with its port if written (`docker.io` when none is).
    pub host: String,
    /// Repository name.
    pub repo: String,
    /// The pinned digest, if any.
    pub digest: Option<Digest>,
}

/// The registry hosts references must name to count: `host:port` forms, lowercased.
#[derive(Clone, Debug, Default)]
pub struct Hosts(Vec<String>);

impl Hosts {
    /// REGISTRY_URL's host (with and, for its scheme's default port, without the port)
    /// and the `--registry-host` aliases.
    pub fn new(registry_url: Option<&str>, aliases: &[String]) -> Result<Hosts, String> {
        let mut v = Vec::new();
        if let Some(u) = registry_url {
            let url = reqwest::Url::parse(u).map_err(|e| format!("REGISTRY_URL {u:?}: {e}"))?;
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            if let Some(port) = url.port_or_known_default() {
                v.push(format!("{host}:{port}"));
            }
            if url.port().is_none() {
                v.push(host);
            }
        }
        for a in aliases {
            let a = a.trim().to_ascii_lowercase();
            if a.is_empty() || a.contains('/') {
                return Err(format!("--registry-host {a:?}: give a host or host:port"));
            }
            v.push(a);
        }
        Ok(Hosts(v))
    }

    /// Whether `host` is this registry.
    pub fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|h| h == host)
    }
}

/// Parses one image reference (`[host/]name[:tag][@sha256:…]`, with an optional
/// `docker-pullable://` prefix as pods' `imageID` has); `None` when it is none.
pub fn parse_ref(s: &str) -> Option<ImageRef> {
    let s = s.strip_prefix("docker-pullable://").unwrap_or(s);
    if s.starts_with("sha256:") {
        // An image ID (pods' imageID under some runtimes), no reference.
        return None;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(Digest::parse(d)?)),
        None => (s, None),
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) if h.contains(['.', ':']) || h == "localhost" => (h, p),
        _ => ("docker.io", rest),
    };
    if !valid_host(host) {
        return None;
    }
    let (name, tag) = split_tag(path);
    if !valid_name(name) || !tag.is_none_or(valid_tag) {
        return None;
    }
    Some(ImageRef {
        host: host.to_ascii_lowercase(),
        repo: name.to_owned(),
        digest,
    })
}

/// `name:tag` into name and tag (the colon after the last slash).
fn split_tag(path: &str) -> (&str, Option<&str>) {
    let last = path.rfind('/').map_or(0, |i| i + 1);
    match path[last..].find(':') {
        Some(i) => (&path[..last + i], Some(&path[last + i + 1..])),
        None => (path, None),
    }
}

/// A registry host: DNS labels or a bracketed IPv6 address, and an optional port.
fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !h.ends_with(']') => (n, Some(p)),
        _ => (h, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    port_ok && name_ok
}

/// A repository name: path components of lowercase alphanumerics joined by `.`, `_`,
/// `__` or dashes.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Reads one `--keep-in-use` file into `ev`; the error names the file (and the line).
pub fn load(path: &Path, hosts: &Hosts, ev: &mut Evidence) -> Result<(), String> {
    let data = super::read_input(path)?;
    let text = std::str::from_utf8(&data)
        .map_err(|e| format!("{}: not UTF-8 text: {e}", path.display()))?;
    let first = text.trim_start().as_bytes().first().copied();
    if matches!(first, Some(b'{' | b'[')) {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        let mut images = Vec::new();
        collect_images(&v, &mut images);
        // A pod names its image in its spec and again in its status: count each once.
        images.sort_unstable();
        images.dedup();
        for s in images {
            // Runtimes write `sha256:<image id>` or nothing as imageID: no reference.
            if let Some(r) = parse_ref(s) {
                add(ev, hosts, &r);
            }
        }
        return Ok(());
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = parse_ref(line).ok_or_else(|| {
            format!(
                "{}:{}: {line:?} is not an image reference",
                path.display(),
                i + 1
            )
        })?;
        add(ev, hosts, &r);
    }
    Ok(())
}

/// Counts or records one reference.
fn add(ev: &mut Evidence, hosts: &Hosts, r: &ImageRef) {
    if !hosts.matches(&r.host) {
        ev.ignored_refs += 1;
        return;
    }
    match r.digest {
        Some(d) => ev.add_in_use(&r.repo, d),
        None => ev.unpinned_refs += 1,
    }
}

/// Every string value of an `image` or `imageID` key anywhere in `v`: pods' containers,
/// init and ephemeral containers and their statuses, and the pod templates of
/// Deployments, StatefulSets, DaemonSets, Jobs and CronJobs (`spec.jobTemplate`).
fn collect_images<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("image" | "imageID", serde_json::Value::String(s)) => out.push(s),
                    _ => collect_images(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_images(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn references_parse_like_docker() {
        let r = parse_ref(&format!("127.0.0.1:5000/team/app:v1@{D}")).expect("ref");
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repo, "team/app");
        assert_eq!(r.digest, Digest::parse(D));
        let r = parse_ref("nginx:1.25").expect("ref");
        assert_eq!((r.host.as_str(), r.repo.as_str()), ("docker.io", "nginx"));
        let r = parse_ref(&format!("docker-pullable://Reg.Example.com/a/b@{D}")).expect("ref");
        assert_eq!(r.host, "reg.example.com");
        assert!(parse_ref("localhost/app").is_some());
        assert!(parse_ref("[::1]:5000/app").is_some());
        for bad in [
            "",
            "Hello World",
            "app@sha256:zz",
            "reg:5000/App",
            "reg:5000/app:",
            "reg:x/app",
            "a//b",
            D,
        ] {
            assert_eq!(parse_ref(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hosts_match_the_url_and_aliases() {
        let h = Hosts::new(Some("https://reg.example.com"), &["mirror:5000".into()]).expect("h");
        assert!(h.matches("reg.example.com"));
        assert!(h.matches("reg.example.com:443"));
        assert!(h.matches("mirror:5000"));
        assert!(!h.matches("docker.io"));
        let h = Hosts::new(Some("http://127.0.0.1:5000"), &[]).expect("h");
        assert!(h.matches("127.0.0.1:5000"));
        assert!(!h.matches("127.0.0.1"));
    }

    fn load_str(s: &str) -> Result<Evidence, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = dir.path().join("refs");
        std::fs::write(&p, s).map_err(|e| e.to_string())?;
        let hosts = Hosts::new(Some("http://127.0.0.1:5000"), &["alias:1".into()])?;
        let mut ev = Evidence::default();
        load(&p, &hosts, &mut ev)?;
        Ok(ev)
    }

    #[test]
    fn lines_protect_this_registrys_pins_and_count_the_others() {
        let ev = load_str(&format!(
            "# pins\n127.0.0.1:5000/app@{D}\nalias:1/other@{D}\n\nquay.io/x/y@{D}\n127.0.0.1:5000/app:v1\n"
        ))
        .expect("loads");
        assert_eq!(ev.counts(), (2, 0, 0));
        assert_eq!(ev.ignored_refs, 1);
        assert_eq!(ev.unpinned_refs, 1);
        let uses = ev.uses("app", 0, |_| None);
        assert_eq!(
            uses,
            vec![(Digest::parse(D).expect("d"), super::super::Use::InUse)]
        );
    }

    #[test]
    fn a_line_that_is_no_reference_names_file_and_line() {
        let e = load_str("127.0.0.1:5000/app:v1\nnot a ref\n").expect_err("error");
        assert!(e.contains("refs:2:"), "{e}");
    }

    #[test]
    fn pod_and_cronjob_json_give_images_and_image_ids() {
        let json = format!(
            r#"{{"kind":"List","items":[
              {{"kind":"Pod","spec":{{"containers":[{{"image":"127.0.0.1:5000/a:v1"}}],
                 "initContainers":[{{"image":"127.0.0.1:5000/init@{D}"}}]}},
               "status":{{"containerStatuses":[{{"image":"127.0.0.1:5000/a:v1",
                 "imageID":"docker-pullable://127.0.0.1:5000/a@{D}"}}],
                 "ephemeralContainerStatuses":[{{"image":"busybox","imageID":"sha256:{h}"}}]}}}},
              {{"kind":"CronJob","spec":{{"jobTemplate":{{"spec":{{"template":{{"spec":
                 {{"containers":[{{"image":"127.0.0.1:5000/cron@{D}"}}]}}}}}}}}}}}}]}}"#,
            h = &D[7..]
        );
        let ev = load_str(&json).expect("loads");
        assert_eq!(ev.counts(), (3, 0, 0));
        assert_eq!(ev.ignored_refs, 1);
    }
}
