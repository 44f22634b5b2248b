//! A process frozen with SIGSTOP (it keeps its sockets open and answers nothing) until
//! the guard is dropped, so a failed assertion leaves nothing frozen.

use std::process::Command;

/// A process stopped by [`Frozen::stop`]; SIGCONT resumes it when this is dropped.
#[must_use = "the process resumes when this is dropped"]
pub struct Frozen(u32);

impl Frozen {
    /// Sends SIGSTOP to `pid` (a live child's id: a pid of 0, a killed server's, would
    /// signal the whole process group).
    pub fn stop(pid: u32) -> Frozen {
        assert_ne!(pid, 0, "SIGSTOP of a process that is gone");
        signal(pid, "STOP");
        Frozen(pid)
    }

    /// Sends SIGCONT now (the same as dropping it).
    pub fn resume(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let sent = send(self.0, "CONT");
        // Never a second panic while a failed assertion unwinds.
        if !std::thread::panicking() {
            assert!(sent, "kill -CONT {}", self.0);
        }
    }
}

/// Sends the signal `name` (`STOP`, `CONT`) to `pid`; panics when `kill` fails.
fn signal(pid: u32, name: &str) {
    assert!(send(pid, name), "kill -{name} {pid}");
}

/// Whether `kill -<name> <pid>` succeeded.
fn send(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
