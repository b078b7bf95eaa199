//! Small-file reads relative to an open directory (`openat`): the kernel walks a path's
//! leading directories once per directory instead of once per file (the path walk was the
//! largest single cost of a warm scan, by `perf`), and a file costs as few system calls
//! as its data allows. Read only.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::UNIX_EPOCH;

use rustix::fs::{Mode, OFlags, openat};

use super::link::parse_link;
use crate::digest::Digest;
use crate::record::ProblemKind;

/// Why a link file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Opening, stating or reading it failed (`NotFound` among them).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Its body is not exactly `sha256:<64 lowercase hex>`.
    #[error("malformed link (want exactly sha256:<64 lowercase hex>)")]
    Malformed,
    /// Its modification time is before 1970: its age, so the grace period, is unknown.
    #[error("modification time before 1970: the link's age is unknown")]
    BeforeEpoch,
}

impl LinkError {
    /// Whether there is no such link file.
    pub fn is_not_found(&self) -> bool {
        matches!(self, LinkError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// The repository problem this error makes.
    pub fn problem_kind(&self) -> ProblemKind {
        match self {
            LinkError::Io(_) => ProblemKind::Unreadable,
            LinkError::Malformed => ProblemKind::MalformedLink,
            LinkError::BeforeEpoch => ProblemKind::UnknownAge,
        }
    }
}

/// An open directory that files are opened relative to.
#[derive(Debug)]
pub struct Dir(OwnedFd);

impl Dir {
    /// Opens the directory at `path` (following symlinks, as `File::open` does).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir(fd))
    }

    /// Opens the file `rel` (a relative path) below this directory for reading.
    pub fn open_file(&self, rel: &str) -> io::Result<File> {
        let fd = openat(
            &self.0,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Reads a link file below this directory: its digest and modification time (unix
    /// seconds). Open, stat, one read, close: the size from the stat ends the read.
    ///
    /// The modification time is when the registry wrote the link: its filesystem driver
    /// writes a link in place (2.8 `PutContent`: open with `O_CREATE`, truncate, write),
    /// never by a rename, so unlike a blob's data (see `gc::sweep`) the link keeps no older
    /// time than its commit. Its change time (free in the same `statx`) would add only
    /// later metadata changes (`chmod`, `chown`, a restore, `touch -d`), and would make a
    /// tree impossible to age on purpose (`touch -d` sets it to now), which every grace
    /// period test does.
    pub fn read_link(&self, rel: &str) -> Result<(Digest, i64), LinkError> {
        let mut f = self.open_file(rel)?;
        let meta = f.metadata()?;
        let mut buf = [0u8; 80];
        // Longer than 80 bytes is malformed either way: the first 80 show it.
        let want = usize::try_from(meta.len())
            .unwrap_or(buf.len())
            .min(buf.len());
        let mut len = 0;
        while len < want {
            let n = f.read(&mut buf[len..want])?;
            if n == 0 {
                break;
            }
            len += n;
        }
        let digest = parse_link(&buf[..len]).ok_or(LinkError::Malformed)?;
        // A time before 1970 would turn the grace period off: the link's age is unknown.
        let linked_at = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_err(|_| LinkError::BeforeEpoch)?
            .as_secs();
        Ok((digest, i64::try_from(linked_at).unwrap_or(i64::MAX)))
    }
}

/// Size of the per-thread buffer a blob is first read into (manifests and configs are
/// almost always smaller).
const SCRATCH: usize = 64 << 10;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads a small file quickly: open, one read, close. A read that fills less than the
/// buffer is taken as the whole file, which is what a regular file on a local filesystem
/// gives; where that might not hold (a network or FUSE filesystem cut short), the caller
/// checks the content against its digest and rereads with [`read_to_end`] on a mismatch.
pub fn read_quick(f: File, max: u64) -> io::Result<Vec<u8>> {
    BUF.with_borrow_mut(|buf| {
        buf.resize(SCRATCH, 0);
        let mut f = f;
        let n = loop {
            match f.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n < buf.len() {
            return Ok(buf[..n].to_vec());
        }
        let mut body = buf.to_vec();
        (&mut f)
            .take((max + 1).saturating_sub(n as u64))
            .read_to_end(&mut body)?;
        too_large(&body, max)?;
        Ok(body)
    })
}

/// Reads a whole file (up to `max` bytes), to the end of file.
pub fn read_to_end(f: File, max: u64) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    f.take(max + 1).read_to_end(&mut body)?;
    too_large(&body, max)?;
    Ok(body)
}

fn too_large(body: &[u8], max: u64) -> io::Result<()> {
    if body.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("over {max} bytes is too large for a manifest"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_reads_give_whole_files_of_any_size_up_to_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = Dir::open(dir.path()).expect("open dir");
        for len in [0, 1, SCRATCH - 1, SCRATCH, SCRATCH + 1, 3 * SCRATCH + 7] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(dir.path().join("f"), &body).expect("write");
            let quick = read_quick(open.open_file("f").expect("open"), 1 << 20).expect("read");
            assert_eq!(quick, body, "{len} bytes");
            let full = read_to_end(open.open_file("f").expect("open"), 1 << 20).expect("read");
            assert_eq!(full, body, "{len} bytes");
        }
        std::fs::write(dir.path().join("big"), vec![1u8; SCRATCH + 10]).expect("write");
        let cap = SCRATCH as u64 + 9;
        for r in [
            read_quick(open.open_file("big").expect("open"), cap),
            read_to_end(open.open_file("big").expect("open"), cap),
        ] {
            let e = r.expect_err("over the cap");
            assert!(e.to_string().contains("too large"), "{e}");
        }
    }

    #[test]
    fn link_reads_check_the_body_and_give_the_modification_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = Dir::open(dir.path()).expect("open dir");
        let d = Digest::of(b"x");
        std::fs::create_dir(dir.path().join("a")).expect("mkdir");
        std::fs::write(dir.path().join("a/link"), d.to_string()).expect("write");
        let (got, at) = open.read_link("a/link").expect("read");
        assert_eq!(got, d);
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!((now - at).abs() < 60, "{at} vs {now}");
        for bad in [
            format!("{d}\n"),
            format!("{d}{}", "0".repeat(100)),
            String::new(),
        ] {
            std::fs::write(dir.path().join("a/link"), bad).expect("write");
            let e = open.read_link("a/link").expect_err("malformed");
            assert!(matches!(e, LinkError::Malformed), "{e:?}");
            assert_eq!(e.problem_kind(), ProblemKind::MalformedLink);
        }
        let e = open.read_link("b/link").expect_err("missing");
        assert!(e.is_not_found(), "{e:?}");
    }
}
