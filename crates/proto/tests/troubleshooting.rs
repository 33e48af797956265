//! `docs/troubleshooting.md` is the table the agent and the API read, and
//! every code the device channel and the agent name for an enrollment or
//! connectivity failure is in it.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use rampart_proto::device::codes;
use rampart_proto::troubleshooting::{document, guidance, TABLE};

#[test]
fn the_committed_document_is_the_table() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md");
    let generated = document();
    if std::env::var_os("RAMPART_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/troubleshooting.md is stale; regenerate it with: RAMPART_UPDATE_DOCS=1 cargo test -p rampart-proto --test troubleshooting"
    );
}

#[test]
fn every_enrollment_and_connectivity_code_has_a_cause_and_a_fix() {
    for code in [
        codes::TOKEN_EXPIRED,
        codes::TOKEN_EXHAUSTED,
        codes::TOKEN_UNKNOWN,
        codes::DEVICE_REVOKED,
        codes::DEVICE_OFFBOARDED,
        codes::CERTIFICATE_UNKNOWN,
        codes::CERTIFICATE_SUPERSEDED,
        codes::DEVICE_UNKNOWN,
        codes::ATTESTATION_INVALID,
        codes::DEVICE_NAME_TAKEN,
        codes::PLATFORM_NOT_ENABLED,
        codes::PILOT_TAG_MISSING,
        codes::OS_UNSUPPORTED,
        codes::DOMAIN_CONTROLLER_NOT_ALLOWED,
        codes::MANAGED_BY_OTHER,
        // The agent's own (rampart-agent's channel, onboard and run).
        "server_unreachable",
        "server_certificate_untrusted",
        "clock_skew",
        "package_invalid",
        "package_pin_mismatch",
        "foreign_tenant",
        "device_key_invalid",
    ] {
        let g = guidance(code).unwrap_or_else(|| panic!("{code} has no guidance"));
        assert!(!g.cause.is_empty() && !g.fix.is_empty(), "{code}");
    }
    let mut codes: Vec<&str> = TABLE.iter().map(|(c, _, _)| *c).collect();
    let all = codes.len();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all, "a code is listed twice");
    assert_eq!(guidance("no_such_code"), None);
}
