//! The real `m2m` binary as a child process.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a process may take to print its first line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `m2m` (the binary at `bin`, `env!("CARGO_BIN_EXE_m2m")` in a test of
/// its crate) with a clean, predictable environment: no `M2M_*` variable
/// of the caller's, info logs, no colours. Add the arguments.
pub fn m2m_command(bin: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("M2M_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("M2M_LOG", "info").env("NO_COLOR", "1");
    cmd
}

/// A child process with its output collected by threads, so that waiting
/// can time out and a full pipe never blocks it. Killed (SIGKILL) on drop,
/// so a failing test leaves no process behind.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout_lines: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub stdout: Vec<String>,
    /// Everything written to stderr so far.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Proc {
    /// Starts `cmd`, stdin closed, stdout and stderr collected.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        Proc::spawn_with(name, cmd, None)
    }

    /// As [`Proc::spawn`]; with `stderr_lines`, stops reading stderr and
    /// closes its pipe after that many lines, as `m2m serve 2>&1 | head -5`
    /// does once `head` exits.
    pub fn spawn_with(name: &str, cmd: &mut Command, stderr_lines: Option<usize>) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let (tx, stdout_lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut lines = 0;
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                        sink.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
                if stderr_lines.is_some_and(|max| lines >= max) {
                    // Dropping `err` closes the only reading end.
                    break;
                }
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            stdout_lines,
            stdout: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns it;
    /// panics, with the logs, if the process exits or `timeout` passes
    /// first.
    pub async fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.stdout_lines.try_recv() {
                self.stdout.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                // Give the reader a moment for the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while let Ok(line) = self.stdout_lines.try_recv() {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                if exited.is_none() {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
                let stderr = self.finished_stderr();
                panic!(
                    "{} did not print {prefix:?} within {timeout:?} (exit: {exited:?}); \
                     stdout: {:?}\nstderr:\n{stderr}",
                    self.name, self.stdout
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit, at most `timeout`; then collects the
    /// rest of its stdout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(line) = self.stdout_lines.try_recv() {
            self.stdout.push(line);
        }
        status
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as systemd or `docker stop` would. (The workspace
    /// forbids `unsafe`, hence `kill(1)` rather than `libc::kill`.)
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// SIGKILL, as `kill -9` or the OOM killer would.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is sent");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last `lines` lines of stderr, for failure messages.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let all = self.stderr();
        let v: Vec<&str> = all.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the stderr reader has stopped (the process closed its
    /// stderr, or the reader closed the pipe after `stderr_lines`).
    pub fn stderr_closed(&self) -> bool {
        self.stderr_reader
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    /// All of stderr, once the process has exited (the pipe then closes).
    pub fn finished_stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            // A grandchild could keep the pipe open; do not wait for ever.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        self.stderr()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tails of several processes' logs, for failure messages.
pub fn logs(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("--- {} stderr (tail) ---\n{}\n", p.name, p.stderr_tail(40)))
        .collect()
}
