//! The in-memory bucket store of `regsweep-s3d`: objects in a sorted map, so that a LIST
//! costs the page it returns (as S3's does), not a pass over the whole bucket (as moto's
//! does). Pure data structure, no HTTP.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::SystemTime;

use bytes::Bytes;
use md5::{Digest as _, Md5};

/// One stored object.
#[derive(Clone, Debug)]
pub struct Object {
    /// The object's bytes.
    pub data: Bytes,
    /// Its ETag without quotes: the MD5 of the bytes, or of the parts' MD5s with `-N`.
    pub etag: String,
    /// When it was written.
    pub modified: SystemTime,
}

impl Object {
    /// A single-part object holding `data`, written now.
    pub fn new(data: Bytes) -> Object {
        let etag = hex(&Md5::digest(&data));
        Object {
            data,
            etag,
            modified: SystemTime::now(),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A multipart upload in progress.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The key it will complete into.
    pub key: String,
    /// Its parts by number: bytes and ETag.
    pub parts: BTreeMap<i32, (Bytes, String)>,
    /// When it was started.
    pub initiated: SystemTime,
}

/// One bucket: its objects and its multipart uploads (by upload id).
#[derive(Debug, Default)]
pub struct Bucket {
    /// Objects by key, sorted.
    pub objects: BTreeMap<String, Object>,
    /// Uploads in progress by id.
    pub uploads: BTreeMap<String, Upload>,
}

/// What one LIST page holds.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    /// Keys of the objects on the page, in order.
    pub keys: Vec<String>,
    /// Common prefixes on the page, in order.
    pub prefixes: Vec<String>,
    /// Where the next page starts (a key, inclusive), when there is one.
    pub next: Option<String>,
}

impl Bucket {
    /// One page of keys starting with `prefix`, from `from` (inclusive) on, at most `max`
    /// entries; keys holding `delimiter` after the prefix are rolled up into one common
    /// prefix each, and the page jumps past all keys under it.
    pub fn list(&self, prefix: &str, delimiter: Option<&str>, from: &str, max: usize) -> Page {
        let mut page = Page::default();
        let mut start = if from > prefix { from } else { prefix }.to_owned();
        loop {
            let mut range = self
                .objects
                .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded));
            let Some((key, _)) = range.next() else {
                return page;
            };
            if !key.starts_with(prefix) {
                return page;
            }
            if page.keys.len() + page.prefixes.len() == max {
                page.next = Some(key.clone());
                return page;
            }
            let rest = &key[prefix.len()..];
            match delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                rest.find(d)
                    .map(|i| key[..prefix.len() + i + d.len()].to_owned())
            }) {
                Some(common) => {
                    start = past(&common);
                    page.prefixes.push(common);
                }
                None => {
                    page.keys.push(key.clone());
                    let mut after = key.clone();
                    after.push('\0');
                    start = after;
                }
            }
        }
    }
}

/// The smallest string above every string that starts with `prefix`.
fn past(prefix: &str) -> String {
    let mut s = prefix.to_owned();
    while let Some(c) = s.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            s.push(next);
            return s;
        }
    }
    // Every character was the largest: nothing sorts above; an empty start would loop.
    "\u{10FFFF}\u{10FFFF}".repeat(prefix.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(keys: &[&str]) -> Bucket {
        let mut b = Bucket::default();
        for k in keys {
            b.objects
                .insert((*k).to_owned(), Object::new(Bytes::from_static(b"x")));
        }
        b
    }

    #[test]
    fn pages_roll_up_prefixes_and_resume_where_they_stopped() {
        let b = bucket(&["a/1", "a/2", "b/x/1", "b/x/2", "b/y", "c", "d/1"]);
        let all = b.list("", Some("/"), "", 1000);
        assert_eq!(all.keys, ["c"]);
        assert_eq!(all.prefixes, ["a/", "b/", "d/"]);
        assert_eq!(all.next, None);
        let p1 = b.list("b/", Some("/"), "", 1);
        assert_eq!(
            (p1.prefixes.as_slice(), p1.next.as_deref()),
            (&["b/x/".to_owned()][..], Some("b/y"))
        );
        let p2 = b.list("b/", Some("/"), "b/y", 1);
        assert_eq!(
            (p2.keys.as_slice(), p2.next),
            (&["b/y".to_owned()][..], None)
        );
        let flat = b.list("b/", None, "", 2);
        assert_eq!(flat.keys, ["b/x/1", "b/x/2"]);
        assert_eq!(flat.next.as_deref(), Some("b/y"));
        assert_eq!(b.list("b/x/2", None, "", 10).keys, ["b/x/2"]);
        assert_eq!(b.list("", None, "b/y", 10).keys, ["b/y", "c", "d/1"]);
    }

    #[test]
    fn single_part_etags_are_the_md5_of_the_bytes() {
        let o = Object::new(Bytes::from_static(b""));
        assert_eq!(o.etag, "d41d8cd98f00b204e9800998ecf8427e");
    }
}
