//! The configured response to a ransomware verdict: kill the writer (the pid
//! fanotify named, or, with inotify only, processes holding a file under the
//! watched roots open for writing, found in /proc), or run a command with the
//! report on stdin (for example to take a share offline). Never kills this
//! process or pid 1.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::SensorError;

/// What to do on a ransomware verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Response {
    /// Report only.
    #[default]
    None,
    /// SIGKILL the writing process(es).
    Kill,
    /// Run `program args...` with the report as JSON on stdin.
    Command { program: PathBuf, args: Vec<String> },
}

impl FromStr for Response {
    type Err = SensorError;

    /// `none`, `kill`, or `command:PROGRAM [ARGS...]` (split on whitespace,
    /// no shell).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" => Ok(Self::None),
            "kill" => Ok(Self::Kill),
            other => {
                let Some(cmd) = other.strip_prefix("command:") else {
                    return Err(SensorError::Config(format!(
                        "response must be none, kill or command:PROGRAM, not {other:?}"
                    )));
                };
                let mut words = cmd.split_whitespace();
                let program = words
                    .next()
                    .ok_or_else(|| SensorError::Config("response command:PROGRAM needs a program".into()))?;
                Ok(Self::Command { program: PathBuf::from(program), args: words.map(str::to_owned).collect() })
            }
        }
    }
}

/// Commands running at once; more are skipped (and said so in the report).
const MAX_RUNNING_COMMANDS: usize = 2;
/// Processes and descriptors looked at in one /proc scan.
const MAX_PROCS_SCANNED: usize = 32_768;
const MAX_FDS_PER_PROC: usize = 4_096;

#[derive(Debug, Default)]
pub(crate) struct Responder {
    running: Arc<AtomicUsize>,
}

impl Responder {
    /// SIGKILL each pid; returns what happened to each, in report words.
    pub(crate) fn kill(&self, pids: &[i32]) -> Vec<String> {
        let own = i32::try_from(std::process::id()).unwrap_or(0);
        pids.iter()
            .map(|&pid| {
                if pid <= 1 || pid == own {
                    return format!("kill refused for pid {pid} (this sensor or init)");
                }
                match signal::kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) => format!("killed {pid}"),
                    Err(e) => format!("kill {pid} failed: {e}"),
                }
            })
            .collect()
    }

    /// Start `program` with `json` on its stdin; does not wait for it.
    pub(crate) fn command(&self, program: &Path, args: &[String], json: String) -> String {
        if self.running.load(Ordering::SeqCst) >= MAX_RUNNING_COMMANDS {
            return "command skipped: previous ones still running".into();
        }
        let child =
            Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return format!("command failed to start: {e}"),
        };
        let pid = child.id();
        let running = Arc::clone(&self.running);
        running.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new().name("sensor-response".into()).spawn(move || {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(json.as_bytes());
            }
            match child.wait() {
                Ok(status) if !status.success() => tracing::warn!(%status, "response command failed"),
                Err(e) => tracing::warn!(error = %e, "response command could not be waited for"),
                Ok(_) => {}
            }
            running.fetch_sub(1, Ordering::SeqCst);
        });
        match spawned {
            Ok(_) => format!("command started (pid {pid})"),
            Err(e) => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                format!("command started (pid {pid}) but not supervised: {e}")
            }
        }
    }
}

/// Processes (other than this one) holding a file under one of `roots` open
/// for writing, from /proc/*/fd and /proc/*/fdinfo. The fallback for finding
/// ransomware when fanotify did not name it.
pub fn writers_under(roots: &[PathBuf]) -> Vec<i32> {
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    let Ok(procs) = fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in procs.filter_map(|e| e.ok()).take(MAX_PROCS_SCANNED) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid <= 1 || pid == own {
            continue;
        }
        let fd_dir = entry.path().join("fd");
        let Ok(fds) = fs::read_dir(&fd_dir) else { continue };
        for fd in fds.filter_map(|e| e.ok()).take(MAX_FDS_PER_PROC) {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            if !roots.iter().any(|r| target.starts_with(r)) {
                continue;
            }
            let info = entry.path().join("fdinfo").join(fd.file_name());
            if fs::read_to_string(info).is_ok_and(|s| opened_for_writing(&s)) {
                found.push(pid);
                break;
            }
        }
    }
    found
}

/// Whether an fdinfo text's `flags:` (octal) has write access.
fn opened_for_writing(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 != 0)
}

/// The executable's file name of `pid` (or its `comm`), for reports.
pub fn process_name(pid: i32) -> Option<String> {
    let name = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_owned()))?;
    Some(name.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        assert_eq!("none".parse::<Response>().unwrap(), Response::None);
        assert_eq!(" kill ".parse::<Response>().unwrap(), Response::Kill);
        assert_eq!(
            "command:/usr/local/bin/isolate --share home".parse::<Response>().unwrap(),
            Response::Command { program: "/usr/local/bin/isolate".into(), args: vec!["--share".into(), "home".into()] }
        );
        assert!("command:".parse::<Response>().is_err());
        assert!("reboot".parse::<Response>().is_err());
    }

    #[test]
    fn never_kills_itself_or_init() {
        let r = Responder::default();
        let own = i32::try_from(std::process::id()).unwrap();
        let out = r.kill(&[1, own, 0]);
        assert!(out.iter().all(|s| s.starts_with("kill refused")), "{out:?}");
    }

    #[test]
    fn kill_and_open_file_scan_find_a_real_writer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let target = root.join("held-open.bin");
        // A child that keeps a file under the root open for writing.
        let mut child =
            Command::new("sh").arg("-c").arg(format!("exec 3>'{}'; sleep 30", target.display())).spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = writers_under(std::slice::from_ref(&root));
            if found.contains(&pid) {
                break;
            }
            #[allow(clippy::disallowed_methods)] // waiting for the child to open its file
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(found.contains(&pid), "{found:?}");
        assert!(process_name(pid).is_some());
        let out = Responder::default().kill(&[pid]);
        assert_eq!(out, vec![format!("killed {pid}")]);
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    #[test]
    fn command_gets_the_report_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got.json");
        let r = Responder::default();
        let said = r.command(
            Path::new("sh"),
            &["-c".into(), format!("cat > '{}'", out.display())],
            "{\"verdict\":\"ransomware\"}".into(),
        );
        assert!(said.starts_with("command started"), "{said}");
        for _ in 0..200 {
            if r.running.load(Ordering::SeqCst) == 0 && out.exists() {
                break;
            }
            #[allow(clippy::disallowed_methods)] // waiting for the command to finish
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(fs::read_to_string(&out).unwrap(), "{\"verdict\":\"ransomware\"}");
        assert!(r.command(Path::new("/nonexistent/prog"), &[], String::new()).starts_with("command failed"));
    }

    #[test]
    fn fdinfo_flags() {
        assert!(opened_for_writing("pos:\t0\nflags:\t0100001\nmnt_id:\t1\n"));
        assert!(opened_for_writing("flags:\t02\n"));
        assert!(!opened_for_writing("pos:\t0\nflags:\t0100000\n"));
        assert!(!opened_for_writing("garbage"));
    }
}
