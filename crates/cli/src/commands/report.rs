//! `rampart report policy|device|setting`: where settings stand on devices
//! (succeeded, error, conflict, not applicable, pending).

use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::{
    DeviceReport, PolicyReport, PolicyValue, SettingReport, SettingStatusView, StatusCounts,
};

use crate::client::Client;
use crate::render;
use crate::Format;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t, global = true)]
    output: Format,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Status of one policy on every device it targets.
    Policy {
        /// The policy name.
        name: String,
    },
    /// Status of every setting on one device.
    Device {
        /// The device name.
        name: String,
    },
    /// Status of one setting across the devices that get it.
    Setting {
        /// The setting id, e.g. real_time_protection.
        id: String,
    },
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let output = args.output;
    match args.command {
        Command::Policy { name } => {
            let report: PolicyReport = client.get(&["reports", "policies", &name]).await?;
            match output {
                Format::Json => render::print_json(&report)?,
                Format::Table => print!("{}", policy_text(&report)),
            }
        }
        Command::Device { name } => {
            let report: DeviceReport = client.get(&["reports", "devices", &name]).await?;
            match output {
                Format::Json => render::print_json(&report)?,
                Format::Table => print!("{}", device_text(&report)),
            }
        }
        Command::Setting { id } => {
            let report: SettingReport = client.get(&["reports", "settings", &id]).await?;
            match output {
                Format::Json => render::print_json(&report)?,
                Format::Table => print!("{}", setting_text(&report)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2 succeeded, 0 error, 1 conflict, 0 not applicable, 3 pending`, with
/// `1 recorded, not enforced` after the first when there are such.
fn counts(c: &StatusCounts) -> String {
    let recorded = if c.recorded > 0 {
        format!(", {} recorded, not enforced", c.recorded)
    } else {
        String::new()
    };
    format!(
        "{} succeeded{recorded}, {} error, {} conflict, {} not applicable, {} pending",
        c.succeeded, c.error, c.conflict, c.not_applicable, c.pending
    )
}

/// A status as people read it: the `file` backend's `recorded` says that
/// nothing enforces the value.
fn status_text(status: &str) -> String {
    match status {
        "recorded" => "recorded, not enforced".into(),
        other => other.to_string(),
    }
}

fn backend_text(backend: Option<&String>) -> String {
    backend.cloned().unwrap_or_else(|| "-".into())
}

/// Why a setting is in its status: each conflicting policy's value, the
/// agent's error, or the server's reason.
fn detail(s: &SettingStatusView) -> String {
    if let Some(text) = conflict_text(&s.conflicting) {
        return text;
    }
    // The STATUS column already says "recorded, not enforced".
    if s.status == "recorded" && s.error_code.is_none() {
        return String::new();
    }
    match (&s.error_message, &s.error_code, &s.reason) {
        (Some(m), Some(code), _) => format!("{code}: {m}"),
        (Some(m), None, _) => m.clone(),
        (None, _, Some(r)) => r.clone(),
        _ => String::new(),
    }
}

/// `conflict: a=x, b=y`: each conflicting policy with its value.
fn conflict_text(sides: &[PolicyValue]) -> Option<String> {
    if sides.is_empty() {
        return None;
    }
    let sides: Vec<String> = sides
        .iter()
        .map(|c| format!("{}={}", c.policy, render::value(&c.value)))
        .collect();
    Some(format!("conflict: {}", sides.join(", ")))
}

fn opt_value(v: Option<&serde_json::Value>) -> String {
    v.map_or("-".into(), render::cell)
}

fn policy_text(r: &PolicyReport) -> String {
    let mut out = format!(
        "policy {} (version {}): {}\ndevices: {}\n",
        r.policy,
        r.version,
        render::count(r.devices.len(), "targeted device"),
        counts(&r.devices_by_status)
    );
    if r.devices.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .settings
        .iter()
        .map(|(s, c)| {
            vec![
                s.clone(),
                c.succeeded.to_string(),
                c.recorded.to_string(),
                c.error.to_string(),
                c.conflict.to_string(),
                c.not_applicable.to_string(),
                c.pending.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render::table(
        &[
            "SETTING",
            "SUCCEEDED",
            "RECORDED",
            "ERROR",
            "CONFLICT",
            "NOT APPLICABLE",
            "PENDING",
        ],
        &rows,
    ));
    let rows: Vec<Vec<String>> = r
        .devices
        .iter()
        .map(|d| {
            // The settings that are not fine, so a failing device says why.
            let problems: Vec<String> = d
                .settings
                .iter()
                .filter(|s| s.status == "error" || s.status == "conflict")
                .map(|s| {
                    format!(
                        "{}: {}",
                        render::keyed(&s.setting, s.key.as_deref()),
                        detail(s)
                    )
                })
                .collect();
            vec![
                d.device.clone(),
                status_text(&d.status),
                render::time(d.last_check_in),
                problems.join("\n"),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render::table(
        &["DEVICE", "STATUS", "LAST CHECK-IN", "DETAIL"],
        &rows,
    ));
    out
}

fn device_text(r: &DeviceReport) -> String {
    let mut out = format!(
        "device {} (managed by {}; last check-in {})\n",
        r.device,
        r.managed_by,
        render::time(r.last_check_in)
    );
    if !r.managed {
        out.push_str(&format!(
            "not managed: {}\n",
            r.reason
                .as_deref()
                .unwrap_or("outside the enforcement scope")
        ));
        return out;
    }
    let applied = match &r.applied_digest {
        Some(d) if *d == r.digest => "the device holds the current policy".to_string(),
        Some(_) => "the device holds an older policy".to_string(),
        None => "the device has not applied a policy yet".to_string(),
    };
    out.push_str(&format!("{}; {applied}\n", counts(&r.counts)));
    if r.settings.is_empty() {
        out.push_str("no policy targets this device\n");
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .settings
        .iter()
        .map(|s| {
            vec![
                // An ASR rule by its name; its id is in `-o json`.
                render::keyed(&s.setting, s.key_name.as_deref().or(s.key.as_deref())),
                status_text(&s.status),
                backend_text(s.backend.as_ref()),
                opt_value(s.value.as_ref()),
                opt_value(s.observed.as_ref()),
                s.sources.join("\n"),
                detail(s),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render::table(
        &[
            "SETTING", "STATUS", "BACKEND", "VALUE", "OBSERVED", "SOURCES", "DETAIL",
        ],
        &rows,
    ));
    if !r.trust_events.is_empty() {
        out.push_str("\nrecent trust events:\n");
        for e in &r.trust_events {
            let detail = e.detail.as_ref().map(render::cell).unwrap_or_default();
            out.push_str(&format!(
                "  {}  {}  {}\n",
                render::time(Some(e.at)),
                e.action,
                detail.replace('\n', ", ")
            ));
        }
    }
    out
}

fn setting_text(r: &SettingReport) -> String {
    let mut out = format!(
        "setting {}: {}\n{}\n",
        r.setting,
        render::count(r.devices.len(), "device"),
        counts(&r.counts)
    );
    if r.devices.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .devices
        .iter()
        .map(|d| {
            vec![
                d.device.clone(),
                status_text(&d.status),
                backend_text(d.backend.as_ref()),
                opt_value(d.value.as_ref()),
                d.sources.join("\n"),
                conflict_text(&d.conflicting)
                    .or_else(|| d.error_message.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render::table(
        &["DEVICE", "STATUS", "BACKEND", "VALUE", "SOURCES", "DETAIL"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_report_names_the_backend_and_never_calls_a_recorded_value_enforced() {
        let r: DeviceReport = serde_json::from_value(serde_json::json!({
            "device": "web-01", "managed": true, "reason": null, "managed_by": "rampart",
            "last_check_in": 1_767_225_600, "digest": "d", "applied_digest": "d",
            "counts": {"succeeded": 1, "recorded": 1, "error": 0, "conflict": 0, "not_applicable": 0, "pending": 0},
            "settings": [
                {"setting": "scan_archives", "key": null, "status": "recorded", "backend": "file", "value": true,
                 "observed": true, "sources": ["p"], "error_code": null,
                 "error_message": "recorded by the file provider, not enforced", "other_policies": [], "reason": null},
                {"setting": "firewall_enabled", "key": null, "status": "succeeded", "backend": "nftables", "value": true,
                 "observed": true, "sources": ["p"], "error_code": null, "error_message": null,
                 "other_policies": [], "reason": null}],
            "tamper_events": [], "trust_events": []
        }))
        .unwrap();
        let text = device_text(&r);
        assert!(
            text.contains("1 succeeded, 1 recorded, not enforced, 0 error"),
            "{text}"
        );
        let line = |needle: &str| text.lines().find(|l| l.starts_with(needle)).unwrap_or("");
        assert!(
            line("scan_archives").contains("recorded, not enforced  file"),
            "{text}"
        );
        assert!(
            line("firewall_enabled").contains("succeeded               nftables"),
            "{text}"
        );
        assert!(text.contains("BACKEND"), "{text}");
    }

    #[test]
    fn a_setting_report_names_each_conflicting_policy_with_its_value() {
        let r: SettingReport = serde_json::from_value(serde_json::json!({
            "setting": "pua_protection",
            "counts": {"succeeded": 0, "recorded": 0, "error": 0, "conflict": 1, "not_applicable": 0, "pending": 1},
            "devices": [
                {"device": "web-01", "status": "conflict", "value": null, "sources": ["av-base", "av-web"],
                 "error_message": null,
                 "conflicting": [{"policy": "av-base", "value": "block"}, {"policy": "av-web", "value": "audit"}]},
                {"device": "db-01", "status": "pending", "value": "block", "sources": ["av-base"], "error_message": null}]
        }))
        .unwrap();
        let text = setting_text(&r);
        let web = text.lines().find(|l| l.starts_with("web-01")).unwrap_or("");
        assert!(
            web.contains("conflict: av-base=block, av-web=audit"),
            "{text}"
        );
    }

    #[test]
    fn a_device_report_lists_its_trust_events() {
        let r: DeviceReport = serde_json::from_value(serde_json::json!({
            "device": "web-01", "managed": true, "reason": null, "managed_by": "rampart",
            "last_check_in": 1_767_225_600, "digest": "d", "applied_digest": "d",
            "counts": {"succeeded": 1, "error": 0, "conflict": 0, "not_applicable": 0, "pending": 0},
            "settings": [{"setting": "scan_archives", "key": null, "status": "succeeded", "value": true,
                "observed": true, "sources": ["p"], "error_code": null, "error_message": null,
                "other_policies": [], "reason": null}],
            "tamper_events": [],
            "trust_events": [{"at": 1_767_225_600, "action": "device.reattest", "detail": {"with": "enrolled key"}}]
        }))
        .unwrap();
        let text = device_text(&r);
        assert!(
            text.contains(
                "recent trust events:\n  2026-01-01 00:00:00Z  device.reattest  with=enrolled key"
            ),
            "{text}"
        );
    }
}
