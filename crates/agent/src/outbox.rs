//! The durable outbox of status reports: a report is written here before the
//! server is told, and deleted only once the server acknowledged it, so a
//! crash or an outage loses nothing (DESIGN.md §5, "Status").
//!
//! Each report is one file `<seq>-<report_id>.json`, written atomically;
//! `seq` is zero-padded so name order is send order. A report the server
//! refuses as malformed (a 4xx other than `device_revoked`) would block the
//! queue forever if retried, so it is set aside as `.rejected` for a person
//! to look at instead.

use std::fs;
use std::path::{Path, PathBuf};

use rampart_proto::device::StatusReport;

use crate::state::{read_json, remove_if_exists, write_json};
use crate::{Error, Result};

/// The most reports kept; beyond it the oldest are dropped (with a warning),
/// so a device offline for weeks cannot fill its disk.
pub const MAX_PENDING: usize = 256;

pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (and creates) the outbox in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Outbox> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Outbox { dir })
    }

    /// Stores a report durably; it is sent after every report before it.
    pub fn push(&self, report: &StatusReport) -> Result<()> {
        let entries = self.entries()?;
        let seq = entries.last().map_or(1, |(seq, _, _)| seq + 1);
        if entries.len() >= MAX_PENDING {
            for (_, id, path) in &entries[..=entries.len() - MAX_PENDING] {
                tracing::warn!(event = "outbox_overflow", report_id = %id, "dropping the oldest unsent status report");
                remove_if_exists(path)?;
            }
        }
        let path = self
            .dir
            .join(format!("{seq:020}-{}.json", safe_name(&report.report_id)));
        write_json(&path, report)
    }

    /// Unacknowledged reports, oldest first.
    pub fn pending(&self) -> Result<Vec<StatusReport>> {
        let mut out = Vec::new();
        for (_, _, path) in self.entries()? {
            if let Some(report) = read_json::<StatusReport>(&path)? {
                out.push(report);
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> Result<usize> {
        Ok(self.entries()?.len())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The server acknowledged `report_id`: forget it.
    pub fn ack(&self, report_id: &str) -> Result<()> {
        for (_, id, path) in self.entries()? {
            if id == safe_name(report_id) {
                remove_if_exists(&path)?;
            }
        }
        Ok(())
    }

    /// The server refused `report_id` for good: keep it aside, stop sending.
    pub fn reject(&self, report_id: &str) -> Result<()> {
        for (_, id, path) in self.entries()? {
            if id == safe_name(report_id) {
                let to = path.with_extension("rejected");
                fs::rename(&path, &to).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// `(seq, report_id, path)` of every pending report, in order.
    fn entries(&self) -> Result<Vec<(u64, String, PathBuf)>> {
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let path = entry.path();
            if let Some((seq, id)) = parse_name(&path) {
                out.push((seq, id, path));
            }
        }
        out.sort_by_key(|(seq, _, _)| *seq);
        Ok(out)
    }
}

/// Report ids come from the agent (UUIDs), but a file name is no place to
/// trust that.
fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn parse_name(path: &Path) -> Option<(u64, String)> {
    if path.extension()? != "json" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let (seq, id) = stem.split_once('-')?;
    Some((seq.parse().ok()?, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn report(id: &str) -> StatusReport {
        StatusReport {
            report_id: id.into(),
            digest: "d".into(),
            version: 1,
            statuses: Vec::new(),
            tamper_events: Vec::new(),
            loss: None,
        }
    }

    fn ids(outbox: &Outbox) -> Vec<String> {
        outbox
            .pending()
            .unwrap()
            .into_iter()
            .map(|r| r.report_id)
            .collect()
    }

    #[test]
    fn reports_survive_a_restart_in_order_until_acknowledged() {
        let dir = TempDir::new();
        {
            let outbox = Outbox::open(dir.path().join("outbox")).unwrap();
            for id in ["r-1", "r-2", "r-3"] {
                outbox.push(&report(id)).unwrap();
            }
        }
        // "Restart": a new handle on the same directory.
        let outbox = Outbox::open(dir.path().join("outbox")).unwrap();
        assert_eq!(ids(&outbox), ["r-1", "r-2", "r-3"]);
        outbox.ack("r-2").unwrap();
        assert_eq!(ids(&outbox), ["r-1", "r-3"]);
        outbox.push(&report("r-4")).unwrap();
        assert_eq!(ids(&outbox), ["r-1", "r-3", "r-4"]);
        outbox.ack("r-1").unwrap();
        outbox.ack("r-3").unwrap();
        outbox.ack("r-4").unwrap();
        assert!(outbox.is_empty().unwrap());
        // Acknowledging twice (a resend) is harmless.
        outbox.ack("r-4").unwrap();
    }

    #[test]
    fn order_holds_past_nine_and_after_the_queue_drains() {
        let dir = TempDir::new();
        let outbox = Outbox::open(dir.path()).unwrap();
        let names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
        for id in &names {
            outbox.push(&report(id)).unwrap();
        }
        assert_eq!(ids(&outbox), names);
    }

    #[test]
    fn rejected_reports_are_set_aside() {
        let dir = TempDir::new();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.push(&report("bad")).unwrap();
        outbox.push(&report("good")).unwrap();
        outbox.reject("bad").unwrap();
        assert_eq!(ids(&outbox), ["good"]);
        assert_eq!(outbox.len().unwrap(), 1);
    }

    #[test]
    fn the_oldest_reports_go_when_the_outbox_is_full() {
        let dir = TempDir::new();
        let outbox = Outbox::open(dir.path()).unwrap();
        for i in 0..MAX_PENDING + 2 {
            outbox.push(&report(&format!("r{i}"))).unwrap();
        }
        let pending = ids(&outbox);
        assert_eq!(pending.len(), MAX_PENDING);
        assert_eq!(pending[0], "r2");
    }
}
