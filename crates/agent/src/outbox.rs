//! The durable outbox of status reports: a report is written here before the
//! server is told, and deleted only once the server acknowledged it, so a
//! crash or an outage loses nothing (DESIGN.md §5, "Status").
//!
//! Each report is one file `<seq>-<report_id>.json`, written atomically;
//! `seq` is zero-padded so name order is send order. A report the server
//! refuses as malformed (a 4xx that is not about the device's trust) would
//! block the queue forever if retried, so it is set aside as `.rejected`
//! for a person to look at instead.
//!
//! The outbox is bounded without losing anything silently: past
//! [`MAX_PENDING`] reports, the pending ones and the new one are folded into
//! one — the newest statuses (each report carries the device's whole
//! state, so the newest status of every setting wins), every tamper event
//! up to what one report may carry, and a [`ReportLoss`] that counts the
//! reports folded and the tamper events left out, which the server records
//! when the folded report arrives.

use std::fs;
use std::path::{Path, PathBuf};

use rampart_proto::device::{ReportLoss, StatusReport, MAX_TAMPER_EVENTS_PER_REPORT};

use crate::state::{read_json, remove_if_exists, write_json};
use crate::{Error, Result};

/// The most reports kept; beyond it they are folded into one (see the
/// module's comment), so a device offline for weeks cannot fill its disk.
pub const MAX_PENDING: usize = 64;

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
            let mut pending = Vec::new();
            for (_, _, path) in &entries {
                if let Some(r) = read_json::<StatusReport>(path)? {
                    pending.push(r);
                }
            }
            pending.push(report.clone());
            let folded = fold(pending);
            tracing::warn!(event = "outbox_folded", reports = entries.len() + 1, loss = ?folded.loss, "the outbox is full: unsent reports were folded into one");
            // The folded report is durable before the ones it replaces go: a
            // crash in between sends some tamper events twice, never none.
            self.write(seq, &folded)?;
            for (_, _, path) in &entries {
                remove_if_exists(path)?;
            }
            return Ok(());
        }
        self.write(seq, &bounded(report.clone()))
    }

    fn write(&self, seq: u64, report: &StatusReport) -> Result<()> {
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

/// A report within what one report may carry: tamper events past
/// [`MAX_TAMPER_EVENTS_PER_REPORT`] are counted, not kept.
fn bounded(mut report: StatusReport) -> StatusReport {
    if report.tamper_events.len() > MAX_TAMPER_EVENTS_PER_REPORT {
        let dropped = (report.tamper_events.len() - MAX_TAMPER_EVENTS_PER_REPORT) as u64;
        report.tamper_events.truncate(MAX_TAMPER_EVENTS_PER_REPORT);
        let loss = report.loss.get_or_insert_with(ReportLoss::default);
        loss.tamper_events_dropped += dropped;
    }
    report
}

/// Reports (oldest first) folded into one: the newest report's statuses,
/// version and digest, every tamper event in order (bounded), and the
/// losses added up.
fn fold(reports: Vec<StatusReport>) -> StatusReport {
    let folded_count = reports.len() as u64;
    let mut loss = ReportLoss::default();
    let mut events = Vec::new();
    let mut newest = None;
    for r in reports {
        if let Some(l) = &r.loss {
            loss.reports_coalesced += l.reports_coalesced;
            loss.tamper_events_dropped += l.tamper_events_dropped;
        }
        events.extend(r.tamper_events.iter().cloned());
        newest = Some(r);
    }
    let Some(mut out) = newest else {
        return StatusReport {
            report_id: uuid::Uuid::new_v4().to_string(),
            digest: String::new(),
            version: 0,
            statuses: Vec::new(),
            tamper_events: Vec::new(),
            loss: None,
        };
    };
    // A report that is already a fold counts what it folded, not itself.
    loss.reports_coalesced += folded_count.saturating_sub(1);
    out.report_id = uuid::Uuid::new_v4().to_string();
    out.tamper_events = events;
    out.loss = Some(loss);
    bounded(out)
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

    fn tamper(i: usize) -> rampart_proto::device::TamperEvent {
        rampart_proto::device::TamperEvent {
            setting: "firewall_enabled".into(),
            key: None,
            provider: "nftables".into(),
            expected: Some(serde_json::json!(true)),
            found: Some(serde_json::json!(false)),
            at: i as i64,
            restored: true,
        }
    }

    #[test]
    fn a_full_outbox_folds_reports_and_says_what_it_left_out() {
        let dir = TempDir::new();
        let outbox = Outbox::open(dir.path()).unwrap();
        for i in 0..MAX_PENDING {
            let mut r = report(&format!("r{i}"));
            r.version = i as u64;
            r.tamper_events = vec![tamper(i), tamper(i)];
            outbox.push(&r).unwrap();
        }
        assert_eq!(outbox.len().unwrap(), MAX_PENDING);
        let mut newest = report("newest");
        newest.version = 999;
        newest.tamper_events = vec![tamper(1000)];
        outbox.push(&newest).unwrap();
        let pending = outbox.pending().unwrap();
        assert_eq!(pending.len(), 1);
        let folded = &pending[0];
        // The newest state wins; the earliest tamper evidence is kept.
        assert_eq!(folded.version, 999);
        assert_eq!(folded.tamper_events.len(), MAX_TAMPER_EVENTS_PER_REPORT);
        assert_eq!(folded.tamper_events[0].at, 0);
        let loss = folded.loss.clone().unwrap();
        assert_eq!(loss.reports_coalesced, MAX_PENDING as u64);
        let total = (2 * MAX_PENDING + 1) as u64;
        assert_eq!(
            loss.tamper_events_dropped,
            total - MAX_TAMPER_EVENTS_PER_REPORT as u64
        );
        // Folding again adds up.
        for i in 0..MAX_PENDING {
            outbox.push(&report(&format!("s{i}"))).unwrap();
        }
        let again = outbox.pending().unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].loss.as_ref().unwrap().reports_coalesced,
            2 * MAX_PENDING as u64
        );
    }

    #[test]
    fn one_report_never_carries_more_tamper_events_than_allowed() {
        let dir = TempDir::new();
        let outbox = Outbox::open(dir.path()).unwrap();
        let mut r = report("big");
        r.tamper_events = (0..150).map(tamper).collect();
        outbox.push(&r).unwrap();
        let stored = &outbox.pending().unwrap()[0];
        assert_eq!(stored.tamper_events.len(), MAX_TAMPER_EVENTS_PER_REPORT);
        assert_eq!(stored.loss.as_ref().unwrap().tamper_events_dropped, 50);
    }
}
