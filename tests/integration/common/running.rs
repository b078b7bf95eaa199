//! A regsweep run in the background whose stderr is read as it comes, so that a test waits
//! for a line (handlers installed, a phase, a count) or an event instead of sleeping.
//! Every wait has a generous deadline and fails the test with what the run printed so far.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What regsweep logs at debug level (on stderr) once its SIGINT and SIGTERM handlers are
/// in place; the same words are the `message` of the line with `LOG_FORMAT=json`.
pub const READY: &str = "ready for signals: SIGINT and SIGTERM handlers installed";

/// How long a test waits for a line, a file or an event before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A regsweep process started by a test; killed on drop if it is still running.
pub struct Running {
    child: Child,
    /// Each stderr line as it is read.
    lines: Receiver<String>,
    /// Every stderr line read so far, in order.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts regsweep with only `env` (plus PATH, and `REGSWEEP_LOG=debug` unless `env`
    /// sets a level, for the [`READY`] line) and `args`.
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Running {
        let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        if !env.iter().any(|(k, _)| *k == "REGSWEEP_LOG") {
            c.env("REGSWEEP_LOG", "debug");
        }
        let mut child = c
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn regsweep");
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let all = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            while matches!(err.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).into_owned();
                all.lock().expect("stderr lock").push_str(&line);
                let _ = tx.send(line.trim_end_matches('\n').to_owned());
                buf.clear();
            }
        });
        Running {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            stdout_reader: Some(stdout_reader),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the run wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Kills the run and fails the test: `why`, with what the run printed.
    fn fail(&mut self, why: String) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        panic!(
            "{why} (regsweep {status:?})\nstderr so far:\n{}",
            self.stderr_so_far()
        );
    }

    /// Waits (at most [`PATIENCE`]) for the next stderr line that satisfies `matches`, and
    /// gives it; `what` says what the test waits for, in the failure message.
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(format!("waited {PATIENCE:?} for {what}; killed the run"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(format!("regsweep closed stderr before {what}"))
                }
            }
        }
    }

    /// Waits until the run's SIGINT and SIGTERM handlers are installed ([`READY`]).
    pub fn ready(&mut self) {
        self.wait_for("its signal handlers (the READY debug line)", |l| {
            l.contains(READY)
        });
    }

    /// Waits until the run has opened `fifo` for reading (made by [`super::make_fifo`]):
    /// from then on it is blocked reading it. Gives the write end, which keeps it blocked
    /// (no end of file) until it is dropped: drop it only after the run has exited.
    pub fn opened(&mut self, fifo: &Path) -> File {
        use rustix::fs::{Mode, OFlags};
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Without a reader, a non-blocking open for writing fails with ENXIO.
            match rustix::fs::open(fifo, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty()) {
                Ok(fd) => return File::from(fd),
                Err(rustix::io::Errno::NXIO) => {}
                Err(e) => self.fail(format!("opening {} to write: {e}", fifo.display())),
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.fail(format!("regsweep exited ({st}) before opening the FIFO"));
            }
            if Instant::now() > deadline {
                self.fail(format!(
                    "waited {PATIENCE:?} for regsweep to open {}; killed the run",
                    fifo.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIG`signal` (`INT`, `TERM`, ...) to the run.
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{signal} {}", self.pid());
    }

    /// Waits (at most twice [`PATIENCE`]) for the run to exit; gives its status and all it
    /// printed, including the stderr lines already waited for.
    pub fn finish(mut self) -> Output {
        let deadline = Instant::now() + 2 * PATIENCE;
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(st) => break st,
                None if Instant::now() > deadline => {
                    self.fail(format!("regsweep still running after {:?}", 2 * PATIENCE))
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        if let Some(h) = self.stderr_reader.take() {
            h.join().expect("stderr reader");
        }
        let stdout = self
            .stdout_reader
            .take()
            .map(|h| h.join().expect("stdout reader"))
            .unwrap_or_default();
        Output {
            status,
            stdout,
            stderr: self.stderr_so_far().into_bytes(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The count N of a `regsweep: progress: deleted N of ...` line.
pub fn deleted_so_far(line: &str) -> Option<usize> {
    line.strip_prefix("regsweep: progress: deleted ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
