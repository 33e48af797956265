//! Talking to clamd: `PING` over its socket, which clamd process answers,
//! and whether it has loaded the current clamd.conf.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::procs;

/// A process started this close after a file changed is taken to have read
/// it: start times are known to about 1/100 s.
const START_SLACK: Duration = Duration::from_millis(50);

/// What the running clamd is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clamd {
    /// Not answering `PING`: why, in the system's words.
    Down(String),
    Running {
        pid: Option<u32>,
        /// Whether it started after clamd.conf last changed (`true` when
        /// that cannot be told: no process found for the socket).
        current: bool,
    },
}

impl Clamd {
    pub fn is_running(&self) -> bool {
        matches!(self, Clamd::Running { .. })
    }

    pub fn is_current(&self) -> bool {
        matches!(self, Clamd::Running { current: true, .. })
    }

    /// For messages: why clamd's values are not in force.
    pub fn describe(&self, config: &Path) -> String {
        match self {
            Clamd::Down(e) => format!("clamd is not answering: {e}"),
            Clamd::Running {
                pid,
                current: false,
            } => format!(
                "clamd{} has been running since before {} last changed, so it has not loaded it",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                config.display()
            ),
            Clamd::Running { .. } => "clamd runs the current configuration".into(),
        }
    }
}

/// Sends `PING`; `Ok` on `PONG`.
pub fn ping(socket: &Path) -> Result<(), String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let timeout = Some(Duration::from_secs(5));
    let io = |e: std::io::Error| format!("{}: {e}", socket.display());
    s.set_read_timeout(timeout).map_err(io)?;
    s.set_write_timeout(timeout).map_err(io)?;
    s.write_all(b"zPING\0").map_err(io)?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let answer = answer.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if answer == "PONG" {
        Ok(())
    } else {
        Err(format!(
            "{} answered {answer:?} to PING instead of PONG",
            socket.display()
        ))
    }
}

/// The clamd behind `socket`, and whether it started after the
/// configuration changed (`config_age` ago).
pub fn probe(socket: &Path, config_age: Duration) -> Clamd {
    if let Err(e) = ping(socket) {
        return Clamd::Down(e);
    }
    let pid = procs::socket_holders(socket)
        .into_iter()
        .find(|p| procs::comm(*p).as_deref() == Some("clamd"));
    let current = match pid.and_then(procs::running_for) {
        Some(ran) => started_after(ran, config_age),
        None => {
            tracing::debug!(
                event = "clamd_unidentified",
                socket = %socket.display(),
                "no clamd process found for the socket; assuming it runs the current configuration"
            );
            true
        }
    };
    Clamd::Running { pid, current }
}

/// Whether a process that has run `ran` started after a file changed
/// `config_age` ago.
pub fn started_after(ran: Duration, config_age: Duration) -> bool {
    ran <= config_age + START_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_down_with_the_reason() {
        let c = probe(Path::new("/nonexistent/clamd.ctl"), Duration::ZERO);
        match &c {
            Clamd::Down(e) => assert!(e.contains("/nonexistent/clamd.ctl"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!c.is_running());
    }

    #[test]
    fn a_pong_from_the_socket_is_running() {
        let dir = crate::testutil::TempDir::new();
        let path = dir.path().join("clamd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [&b"PONG\0"[..], &b"nope\0"[..]] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 6];
                s.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"zPING\0");
                s.write_all(answer).unwrap();
            }
        });
        // This test process holds the socket but is not named clamd: the
        // configuration's age cannot be compared, and is assumed current.
        assert_eq!(
            probe(&path, Duration::ZERO),
            Clamd::Running {
                pid: None,
                current: true
            }
        );
        assert!(ping(&path).unwrap_err().contains("instead of PONG"));
        server.join().unwrap();
    }

    #[test]
    fn start_times_compare_with_some_slack() {
        let s = Duration::from_secs;
        assert!(started_after(s(5), s(10)));
        assert!(!started_after(s(11), s(10)));
        assert!(started_after(
            Duration::from_millis(10_020),
            Duration::from_millis(10_000)
        ));
    }
}
