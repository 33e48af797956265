//! Running a component's own command (`systemctl restart …`, `mdatp
//! health`) with a time limit, and putting its failure in its own words.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The program does not exist on this device.
    NotFound(String),
    /// It could not run, failed, or took too long: what happened, with the
    /// last lines of its error output.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NotFound(m) | RunError::Failed(m) => f.write_str(m),
        }
    }
}

/// `command` as one line, for messages.
pub fn show(command: &[String]) -> String {
    command.join(" ")
}

/// Runs `command` to completion within `timeout`; its standard output on
/// success.
pub fn run(command: &[String], timeout: Duration) -> Result<String, RunError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| RunError::Failed("the command is empty".into()))?;
    // Output goes to files, not pipes: a restart command may leave a daemon
    // behind that holds a pipe open long after the command is done.
    let base =
        std::env::temp_dir().join(format!("rampart-command-{}", uuid::Uuid::new_v4().simple()));
    let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
    let result = (|| {
        let io = |e: std::io::Error| RunError::Failed(format!("`{}`: {e}", show(command)));
        let out = std::fs::File::create(&out_path).map_err(io)?;
        let err = std::fs::File::create(&err_path).map_err(io)?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                let message = format!("cannot run `{}`: {e}", show(command));
                if e.kind() == std::io::ErrorKind::NotFound {
                    RunError::NotFound(message)
                } else {
                    RunError::Failed(message)
                }
            })?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RunError::Failed(format!(
                        "`{}` did not finish within {} s",
                        show(command),
                        timeout.as_secs()
                    )));
                }
                Err(e) => return Err(io(e)),
            }
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        if status.success() {
            Ok(stdout)
        } else {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            let words = if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            };
            Err(RunError::Failed(format!(
                "`{}` failed ({status}): {}",
                show(command),
                tail(&words)
            )))
        }
    })();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    result
}

/// The last lines of a command's output, trimmed, for a status message.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines[lines.len().saturating_sub(3)..].join(" / ");
    if joined.is_empty() {
        "no error output".into()
    } else {
        joined
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_and_errors_in_the_commands_own_words() {
        assert_eq!(
            run(&cmd(&["sh", "-c", "echo PONG"]), Duration::from_secs(5)).unwrap(),
            "PONG\n"
        );
        let e = run(
            &cmd(&[
                "sh",
                "-c",
                "echo 'Job for clamav-daemon.service failed.' >&2; exit 3",
            ]),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Job for clamav-daemon.service failed."), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(matches!(
            run(&cmd(&["/nonexistent/mdatp"]), Duration::from_secs(5)),
            Err(RunError::NotFound(_))
        ));
        let e = run(&cmd(&["sleep", "5"]), Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\nd\n"), "b / c / d");
        assert_eq!(tail("  \n"), "no error output");
    }
}
