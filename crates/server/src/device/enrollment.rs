//! Whether Rampart manages a device, and if not, why — with the stable codes
//! of `rampart_proto::device::codes`.

use rampart_core::model::{Enforcement, Platform, TenantSettings};
use rampart_proto::device::{codes, EnrollmentState, Facts, Survey};

use crate::fleet::MANAGED_BY_RAMPART;

pub const ENROLLED: &str = "enrolled";
pub const NOT_MANAGED: &str = "not_managed";
pub const JOINED: &str = "Joined";
pub const MANAGED: &str = "Managed";

/// The enrollment state of a device with these facts and survey, under these
/// tenant settings. `Joined` holds as long as the trust exists; `Managed`
/// only while Rampart manages the device.
pub fn enrollment_state(
    facts: &Facts,
    survey: &Survey,
    tags: &[String],
    tenant: &TenantSettings,
) -> EnrollmentState {
    let refuse = |code: &str, reason: String, managed_by: &str| EnrollmentState {
        status: NOT_MANAGED.into(),
        code: Some(code.to_string()),
        reason: Some(reason),
        managed_by: managed_by.to_string(),
        labels: vec![JOINED.into()],
    };
    if let Some(other) = survey
        .managed_by
        .as_deref()
        .filter(|o| *o != MANAGED_BY_RAMPART)
    {
        if !tenant.allow_takeover {
            return refuse(
                codes::MANAGED_BY_OTHER,
                format!(
                    "{other} manages this device ({}); the tenant does not allow takeover",
                    survey.evidence.join(", ")
                ),
                other,
            );
        }
    }
    let Some(os) = Platform::parse(&facts.os) else {
        return refuse(
            codes::OS_UNSUPPORTED,
            format!(
                "the operating system {:?} is not supported; expected one of {}",
                facts.os,
                Platform::expected()
            ),
            MANAGED_BY_RAMPART,
        );
    };
    if facts
        .conditions
        .iter()
        .any(|c| c == rampart_proto::device::conditions::DOMAIN_CONTROLLER)
        && !tenant.manage_domain_controllers
    {
        return refuse(
            codes::DOMAIN_CONTROLLER_NOT_ALLOWED,
            "this device is a domain controller and the tenant does not manage domain controllers (tenant setting manage_domain_controllers)".into(),
            MANAGED_BY_RAMPART,
        );
    }
    match tenant.enforcement_for(os) {
        Enforcement::Off => {
            return refuse(
                codes::PLATFORM_NOT_ENABLED,
                format!("security management is off for {os} in the tenant's enforcement scope"),
                MANAGED_BY_RAMPART,
            );
        }
        Enforcement::Tagged
            if !tags
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&tenant.pilot_tag)) =>
        {
            return refuse(
                codes::PILOT_TAG_MISSING,
                format!("the tenant manages only {os} devices tagged {:?} (pilot mode) and this device lacks the tag", tenant.pilot_tag),
                MANAGED_BY_RAMPART,
            );
        }
        _ => {}
    }
    EnrollmentState {
        status: ENROLLED.into(),
        code: None,
        reason: None,
        managed_by: MANAGED_BY_RAMPART.into(),
        labels: vec![JOINED.into(), MANAGED.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(os: &str) -> Facts {
        Facts {
            hostname: "h".into(),
            os: os.into(),
            os_version: "1".into(),
            device_type: "server".into(),
            agent_version: "0".into(),
            tags: vec![],
            ..Facts::default()
        }
    }

    #[test]
    fn every_survey_and_scope_outcome_has_its_code() {
        let mut tenant = TenantSettings::default();
        let none = Survey::default();
        let other = Survey {
            managed_by: Some("intune".into()),
            evidence: vec!["/opt/microsoft/intune".into()],
        };
        assert_eq!(
            enrollment_state(&facts("linux"), &none, &[], &tenant).status,
            ENROLLED
        );
        let s = enrollment_state(&facts("linux"), &other, &[], &tenant);
        assert_eq!(
            (s.code.as_deref(), s.managed_by.as_str()),
            (Some(codes::MANAGED_BY_OTHER), "intune")
        );
        assert_eq!(s.labels, vec![JOINED]);
        tenant.allow_takeover = true;
        assert_eq!(
            enrollment_state(&facts("linux"), &other, &[], &tenant).status,
            ENROLLED
        );
        assert_eq!(
            enrollment_state(&facts("plan9"), &none, &[], &tenant)
                .code
                .as_deref(),
            Some(codes::OS_UNSUPPORTED)
        );
        tenant.enforcement.insert(Platform::Linux, Enforcement::Off);
        assert_eq!(
            enrollment_state(&facts("linux"), &none, &[], &tenant)
                .code
                .as_deref(),
            Some(codes::PLATFORM_NOT_ENABLED)
        );
        tenant
            .enforcement
            .insert(Platform::Linux, Enforcement::Tagged);
        assert_eq!(
            enrollment_state(&facts("linux"), &none, &[], &tenant)
                .code
                .as_deref(),
            Some(codes::PILOT_TAG_MISSING)
        );
        let ok = enrollment_state(&facts("linux"), &none, &["mde-management".into()], &tenant);
        assert_eq!(ok.labels, vec![JOINED, MANAGED]);

        // A domain controller waits for the tenant's consent.
        let tenant = TenantSettings::default();
        let mut dc = facts("windows");
        dc.conditions = vec!["domain_controller".into(), "server_core".into()];
        let s = enrollment_state(&dc, &none, &[], &tenant);
        assert_eq!(
            s.code.as_deref(),
            Some(codes::DOMAIN_CONTROLLER_NOT_ALLOWED)
        );
        assert_eq!(s.status, NOT_MANAGED);
        let allowing = TenantSettings {
            manage_domain_controllers: true,
            ..TenantSettings::default()
        };
        assert_eq!(
            enrollment_state(&dc, &none, &[], &allowing).status,
            ENROLLED
        );
        // Server Core alone is managed.
        dc.conditions = vec!["server_core".into()];
        assert_eq!(enrollment_state(&dc, &none, &[], &tenant).status, ENROLLED);
    }
}
