//! Process facts from Linux's `/proc`, read without unsafe code: who
//! listens on a Unix socket, how long a process has been running, its name
//! and command line; and signals sent through the shell's `kill`.
//!
//! The ClamAV provider uses them to tell whether the clamd (and clamonacc)
//! that runs has loaded clamd.conf as it is now: clamd cannot say which
//! configuration it runs, but a process that started after the file last
//! changed has read it.

use std::path::Path;
use std::time::Duration;

/// The kernel reports process start times in clock ticks of `USER_HZ`,
/// which is 100 on every Linux architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// Every process id.
pub fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The processes holding the Unix socket bound to `path` (clamd; with
/// systemd socket activation also systemd).
pub fn socket_holders(path: &Path) -> Vec<u32> {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let wanted = path.to_string_lossy();
    // Num RefCount Protocol Flags Type St Inode Path
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 8 && cols[7] == wanted).then(|| cols[6].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    pids()
        .into_iter()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.filter_map(Result::ok).any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| links.iter().any(|s| l.as_os_str() == s.as_str()))
            })
        })
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// How long `pid` has been running (to about 1/100 s).
pub fn running_for(pid: u32) -> Option<Duration> {
    // Field 22 of stat, the 20th after the command name: start time in
    // ticks since boot. /proc/uptime: seconds since boot.
    let start: f64 = stat_fields(pid)?.get(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64(
        (uptime - start / TICKS_PER_SEC).max(0.0),
    ))
}

/// The process's name (`comm`, at most 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim_end()
            .to_string(),
    )
}

/// The process's arguments.
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` with the shell's `kill`
/// (present wherever `sh` is, unlike a `kill` program).
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$1\"", signal])
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        assert!(alive(me));
        assert!(running_for(me).is_some_and(|d| d < Duration::from_secs(24 * 3600)));
        assert!(comm(me).is_some());
        assert!(!cmdline(me).is_empty());
    }

    #[test]
    fn signals_reach_the_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(signal(child.id(), "TERM"));
        assert!(!child.wait().unwrap().success());
        assert!(!alive(child.id()));
    }

    #[test]
    fn a_socket_nobody_binds_has_no_holders() {
        assert!(socket_holders(Path::new("/nonexistent/rampart.sock")).is_empty());
    }

    #[test]
    fn the_holder_of_a_listening_socket_is_found() {
        let dir = crate::testutil::TempDir::new();
        let path = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(socket_holders(&path).contains(&std::process::id()));
    }
}
