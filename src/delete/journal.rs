//! The journal: an append-only, fsynced record of planned and completed deletes, so an
//! interrupted run can be resumed to exactly the end state of an uninterrupted one.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Record {
    /// A run begins; `now` is the policy time its plan used.
    Begin {
        /// Policy time (unix seconds).
        now: i64,
        /// True when this run resumes an earlier one.
        resumed: bool,
    },
    /// A delete the run will attempt.
    Plan {
        /// Repository.
        repo: String,
        /// Manifest.
        digest: String,
    },
    /// A delete that finished: `deleted` or `already-gone`.
    Done {
        /// Repository.
        repo: String,
        /// Manifest.
        digest: String,
        /// How.
        result: String,
    },
    /// A delete that failed or was skipped.
    Missed {
        /// Repository.
        repo: String,
        /// Manifest.
        digest: String,
        /// Why.
        why: String,
    },
    /// A planned delete the run never sent (it stopped first, or a parent's delete failed).
    NotAttempted {
        /// Repository.
        repo: String,
        /// Manifest.
        digest: String,
        /// Why.
        why: String,
    },
    /// The run finished (every planned delete done, failed or skipped).
    End,
    /// A blob collection begins; `now` is the time its minimum age was measured from.
    GcBegin {
        /// Policy time (unix seconds).
        now: i64,
        /// True when this collection resumes an earlier one.
        resumed: bool,
    },
    /// Blobs the collection will delete (up to a batch a line).
    GcPlan {
        /// Blob digests.
        digests: Vec<String>,
    },
    /// Blobs deleted (or found gone).
    GcDone {
        /// Blob digests.
        digests: Vec<String>,
    },
    /// The collection finished.
    GcEnd,
    /// Blobs an online collection moved into quarantine (they may still come back).
    GcQuarantined {
        /// Blob digests.
        digests: Vec<String>,
    },
    /// Quarantined blobs put back, and why (a new manifest names them, an interruption, a
    /// doubt, or what an earlier collection left in quarantine).
    GcRestored {
        /// Blob digests.
        digests: Vec<String>,
        /// Why.
        why: String,
    },
}

/// Why the journal could not be read or written; reads as `journal <path>: <what>`.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening, reading, writing or syncing the file failed.
    #[error("journal {}: {cause}", path.display())]
    Io {
        /// The journal.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// A record could not be encoded.
    #[error("journal {}: {cause}", path.display())]
    Encode {
        /// The journal.
        path: PathBuf,
        /// What the encoder said.
        cause: serde_json::Error,
    },
    /// A line names a digest that is not one.
    #[error("journal {} line {line}: bad digest {digest:?}", path.display())]
    BadDigest {
        /// The journal.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What the line said.
        digest: String,
    },
    /// The thread that writes the journal panicked.
    #[error("journal {}: writer panicked", path.display())]
    WriterPanicked {
        /// The journal.
        path: PathBuf,
    },
}

impl JournalError {
    /// An I/O failure on the journal at `path`.
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
        move |cause| JournalError::Io {
            path: path.to_owned(),
            cause,
        }
    }
}

/// What an interrupted blob collection left unfinished.
#[derive(Clone, Debug, Default)]
pub struct UnfinishedGc {
    /// The time its minimum age was measured from.
    pub now: i64,
    /// Blobs it planned to delete.
    pub planned: BTreeSet<Digest>,
    /// Blobs it deleted.
    pub done: BTreeSet<Digest>,
    /// Lines that could not be read (a torn write): ignoring one can only mean fewer deletes.
    pub unreadable_lines: Vec<usize>,
}

impl UnfinishedGc {
    /// Planned blob deletes that did not finish.
    pub fn remaining(&self) -> BTreeSet<Digest> {
        self.planned.difference(&self.done).copied().collect()
    }
}

/// What an earlier run left unfinished.
#[derive(Clone, Debug, Default)]
pub struct Unfinished {
    /// Its policy time.
    pub now: i64,
    /// Planned deletes.
    pub planned: BTreeSet<(String, Digest)>,
    /// Deletes that finished.
    pub done: BTreeSet<(String, Digest)>,
    /// Lines that could not be read (a torn write): ignoring one can only mean fewer deletes.
    pub unreadable_lines: Vec<usize>,
}

impl Unfinished {
    /// Planned deletes that did not finish.
    pub fn remaining(&self) -> BTreeSet<(String, Digest)> {
        self.planned.difference(&self.done).cloned().collect()
    }
}

/// Warns (stderr) about a journal's torn lines, if any.
pub fn warn_torn(path: &Path, lines: &[usize]) {
    if !lines.is_empty() {
        crate::logging::warn(format_args!(
            "journal {}: torn lines {lines:?} ignored (that can only mean fewer deletes)",
            path.display()
        ));
    }
}

/// A journal's records with their line numbers, and the numbers of its torn lines.
type Records = (Vec<(usize, Record)>, Vec<usize>);

/// Reads a journal's records; `None` when there is no journal. A torn line is what a
/// kill -9 mid-write leaves.
fn records(path: &Path) -> Result<Option<Records>, JournalError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError::io(path)(e)),
    };
    let mut out = Vec::new();
    let mut torn = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(JournalError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(r) => out.push((i + 1, r)),
            Err(_) => torn.push(i + 1),
        }
    }
    Ok(Some((out, torn)))
}

/// Parses a journal's digest, naming the line of a bad one.
fn digest(path: &Path, line: usize, digest: &str) -> Result<Digest, JournalError> {
    Digest::parse(digest).ok_or_else(|| JournalError::BadDigest {
        path: path.to_owned(),
        line,
        digest: digest.to_owned(),
    })
}

/// Reads a journal; `Ok(None)` when it is absent, empty or its last run ended.
/// Losing a plan or end record to a torn line only shrinks what a resumed run deletes;
/// losing a done record changes nothing (the fresh plan no longer has the deleted manifest).
pub fn load(path: &Path) -> Result<Option<Unfinished>, JournalError> {
    let Some((records, torn)) = records(path)? else {
        return Ok(None);
    };
    let mut cur: Option<Unfinished> = None;
    for (line, rec) in records {
        match rec {
            Record::Begin { now, .. } => {
                cur = Some(Unfinished {
                    now,
                    ..Unfinished::default()
                })
            }
            Record::Plan { repo, digest: d } => {
                if let Some(c) = cur.as_mut() {
                    c.planned.insert((repo, digest(path, line, &d)?));
                }
            }
            Record::Done {
                repo, digest: d, ..
            } => {
                if let Some(c) = cur.as_mut() {
                    c.done.insert((repo, digest(path, line, &d)?));
                }
            }
            Record::End => cur = None,
            _ => {}
        }
    }
    if let Some(c) = cur.as_mut() {
        c.unreadable_lines = torn;
    }
    Ok(cur)
}

/// Reads a journal's blob collection; `Ok(None)` when there is none or the last one ended.
pub fn load_gc(path: &Path) -> Result<Option<UnfinishedGc>, JournalError> {
    let Some((records, torn)) = records(path)? else {
        return Ok(None);
    };
    let mut cur: Option<UnfinishedGc> = None;
    for (line, rec) in records {
        match rec {
            Record::GcBegin { now, .. } => {
                cur = Some(UnfinishedGc {
                    now,
                    ..UnfinishedGc::default()
                })
            }
            Record::GcPlan { digests } => {
                if let Some(c) = cur.as_mut() {
                    for d in digests {
                        c.planned.insert(digest(path, line, &d)?);
                    }
                }
            }
            Record::GcDone { digests } => {
                if let Some(c) = cur.as_mut() {
                    for d in digests {
                        c.done.insert(digest(path, line, &d)?);
                    }
                }
            }
            Record::GcEnd => cur = None,
            _ => {}
        }
    }
    if let Some(c) = cur.as_mut() {
        c.unreadable_lines = torn;
    }
    Ok(cur)
}

/// Appends records from any thread; a writer thread group-commits them (write, then fsync
/// whenever it has caught up), so a record is durable soon after the event it records.
pub struct Journal {
    tx: Option<Sender<Record>>,
    writer: Option<JoinHandle<Result<(), JournalError>>>,
    path: PathBuf,
}

impl Journal {
    /// Opens `path` for appending (creating it).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(JournalError::io(path))?;
        end_torn_line(&mut file).map_err(JournalError::io(path))?;
        let (tx, rx) = unbounded::<Record>();
        let owned = path.to_owned();
        let writer = std::thread::spawn(move || write_records(file, &rx, &owned));
        Ok(Journal {
            tx: Some(tx),
            writer: Some(writer),
            path: path.to_owned(),
        })
    }

    /// Queues a record.
    pub fn record(&self, r: Record) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(r);
        }
    }

    /// Writes and fsyncs everything queued, then closes the journal.
    pub fn close(mut self) -> Result<(), JournalError> {
        self.finish()
    }

    /// Ends the queue and waits for the writer to write and sync what is in it.
    fn finish(&mut self) -> Result<(), JournalError> {
        self.tx.take();
        match self.writer.take() {
            Some(w) => w.join().map_err(|_| JournalError::WriterPanicked {
                path: self.path.clone(),
            })?,
            None => Ok(()),
        }
    }
}

/// After a torn write (a last line without its newline), starts on a fresh line.
fn end_torn_line(file: &mut File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    let torn = file.seek(SeekFrom::End(-1)).is_ok()
        && file.read_exact(&mut last).is_ok()
        && last[0] != b'\n';
    if torn {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// The writer thread: group-commits queued records (writes what has queued up, then
/// fsyncs) until the queue ends.
fn write_records(file: File, rx: &Receiver<Record>, path: &Path) -> Result<(), JournalError> {
    let mut out = BufWriter::new(file);
    let io = JournalError::io;
    while let Ok(first) = rx.recv() {
        let mut queued = vec![first];
        queued.extend(rx.try_iter());
        for r in queued {
            serde_json::to_writer(&mut out, &r).map_err(|cause| JournalError::Encode {
                path: path.to_owned(),
                cause,
            })?;
            out.write_all(b"\n").map_err(io(path))?;
        }
        out.flush().map_err(io(path))?;
        out.get_ref().sync_data().map_err(io(path))?;
    }
    Ok(())
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        let d1 = Digest([1; 32]).to_string();
        let d2 = Digest([2; 32]).to_string();
        let j = Journal::open(&path).expect("open");
        j.record(Record::Begin {
            now: 42,
            resumed: false,
        });
        for d in [&d1, &d2] {
            j.record(Record::Plan {
                repo: "a".into(),
                digest: d.clone(),
            });
        }
        j.record(Record::Done {
            repo: "a".into(),
            digest: d1.clone(),
            result: "deleted".into(),
        });
        j.close().expect("close");
        let mut f = OpenOptions::new().append(true).open(&path).expect("append");
        f.write_all(b"{\"op\":\"do").expect("torn write");
        let u = load(&path).expect("load").expect("unfinished");
        assert_eq!(u.now, 42);
        assert_eq!(
            u.remaining(),
            BTreeSet::from([("a".to_owned(), Digest([2; 32]))])
        );
        assert_eq!(u.unreadable_lines, vec![5]);
        let j = Journal::open(&path).expect("reopen");
        j.record(Record::End);
        j.close().expect("close");
        assert!(
            load(&path).expect("load").is_none(),
            "the torn line stays on its own line"
        );
    }

    #[test]
    fn ended_run_leaves_nothing_to_resume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        assert!(load(&path).expect("absent").is_none());
        let j = Journal::open(&path).expect("open");
        j.record(Record::Begin {
            now: 1,
            resumed: false,
        });
        j.record(Record::End);
        j.close().expect("close");
        assert!(load(&path).expect("load").is_none());
    }
}
