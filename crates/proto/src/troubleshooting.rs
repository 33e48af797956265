//! Every enrollment and connectivity failure the agent or the server can
//! name, with its cause and its fix: one table that `rampart-agent status`,
//! the admin API (and so `rampart device show` and the console) and
//! `docs/troubleshooting.md` all read.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a stable code means and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Guidance {
    pub code: String,
    pub cause: String,
    pub fix: String,
}

/// `(code, cause, fix)`, in the order the docs list them.
pub const TABLE: &[(&str, &str, &str)] = &[
    (
        "server_unreachable",
        "The agent got no answer from the server: the network, a firewall or DNS is in the way, or the server is down.",
        "Check that the device reaches the server URL of its onboarding package (the device channel, port 8443 by default) and that rampart-server answers on /readyz. The agent keeps enforcing its last verified policy and retries.",
    ),
    (
        "server_certificate_untrusted",
        "The server's certificate is not from the CA the onboarding package pins: a wrong server URL, a TLS-inspecting proxy in the path, or a package from another installation.",
        "Point the agent at the server that made the package, exempt the device channel from TLS inspection, or onboard with a package from this server. The agent keeps its last verified policy meanwhile.",
    ),
    (
        "clock_skew",
        "The server's certificate is not valid at this device's time (not yet valid, or expired): the device's clock is wrong, or the server's certificate has expired.",
        "Set the device's clock (enable NTP). If the clock is right, check the validity of the server's device-channel certificate. The agent keeps its last verified policy meanwhile.",
    ),
    (
        "package_invalid",
        "The onboarding package cannot be read, or fields are missing from it.",
        "Create a package again (`rampart onboarding create --out package.json`) and copy the whole file to the device.",
    ),
    (
        "package_pin_mismatch",
        "The package's server CA does not match the pin the package carries: the file was altered or damaged.",
        "Create a new package and copy it unchanged.",
    ),
    (
        "token_expired",
        "The package's onboarding token is past its expiry.",
        "Create a new package: `rampart onboarding create --expires 24h --out package.json`.",
    ),
    (
        "token_exhausted",
        "The onboarding token has been used as many times as it allows.",
        "Create a package that allows more devices (`--max-uses`), or a new one for this device.",
    ),
    (
        "token_unknown",
        "The server does not know the token: it was revoked, or the package is from another server or tenant.",
        "Create a package on the server and tenant the device should join (`rampart onboarding list` shows the tokens that are valid).",
    ),
    (
        "foreign_tenant",
        "The device is already onboarded to another tenant.",
        "Run `rampart-agent offboard` first, then onboard with the new package.",
    ),
    (
        "device_name_taken",
        "Another device is enrolled under this name, and no re-enrollment of it was approved.",
        "Onboard under another name (`--device-name`), or, for a reinstalled machine, approve one re-enrollment: `rampart device reenroll NAME`.",
    ),
    (
        "device_offboarded",
        "The tenant deleted the device: the agent verified the server's signed notice and removed the settings Rampart had set.",
        "If the device should be managed, onboard it again with a new package.",
    ),
    (
        "device_revoked",
        "The server no longer accepts this device's certificate.",
        "Nothing at first: the agent proves itself with its enrolled key at the next check-in. If that is refused (`attestation_invalid`), approve a re-enrollment and onboard again.",
    ),
    (
        "certificate_unknown",
        "The server does not know the device's certificate (for example after a database restore).",
        "Nothing: the agent re-attests with its enrolled key at the next check-in and keeps its settings. If it keeps failing, `rampart device reenroll NAME` and onboard again.",
    ),
    (
        "certificate_superseded",
        "A newer certificate was issued to this device than the one it presented.",
        "Nothing: the agent re-attests with its enrolled key. If another machine took the device's name, delete that one.",
    ),
    (
        "device_unknown",
        "The server has no device with this certificate's id: it was removed without a notice, or the database was restored from before the device enrolled.",
        "Nothing at first: the agent re-attests with its enrolled key. If that is refused, onboard the device again with a new package.",
    ),
    (
        "attestation_invalid",
        "The agent's proof with its enrolled key was refused: the key is not the one this device enrolled with.",
        "Approve a re-enrollment (`rampart device reenroll NAME`) and onboard the device again.",
    ),
    (
        "device_key_invalid",
        "The device's private key in the agent's state directory is missing or damaged.",
        "Approve a re-enrollment (`rampart device reenroll NAME`) and onboard the device again.",
    ),
    (
        "policy_bad_signature",
        "A policy did not verify against the tenant's signing key; it was not enforced and the last verified policy stays.",
        "The agent asks for the policy again. If it persists, look for something altering the traffic, and check that the server's database was restored with its own master key.",
    ),
    (
        "managed_by_other_authority",
        "Another management authority (an MDM, Configuration Manager, managed preferences…) manages the device, so Rampart leaves it alone.",
        "Remove the other authority from the device, or let Rampart take over: `rampart tenant set --allow-takeover true`.",
    ),
    (
        "platform_not_enabled",
        "The tenant's enforcement scope is off for this device's platform.",
        "`rampart tenant set --enforcement PLATFORM=all` (or `=tagged` to manage only devices with the pilot tag); `--dry-run` shows which devices that affects.",
    ),
    (
        "pilot_tag_missing",
        "The device's platform is in pilot mode (`tagged`) and the device does not carry the pilot tag.",
        "Tag the device (`rampart device tag NAME --add TAG`, or `tags` in the agent's configuration), or set the platform to `all`.",
    ),
    (
        "os_unsupported",
        "The device reports an operating system Rampart does not manage.",
        "Check the facts it reports (`rampart device show NAME`) and any `--facts` override given at onboarding.",
    ),
    (
        "domain_controller_not_allowed",
        "The device is a Windows domain controller, and the tenant does not manage domain controllers.",
        "When you mean it: `rampart tenant set --manage-domain-controllers true`.",
    ),
];

/// The guidance for `code`, when the table has it.
pub fn guidance(code: &str) -> Option<Guidance> {
    TABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(code, cause, fix)| Guidance {
            code: (*code).to_string(),
            cause: (*cause).to_string(),
            fix: (*fix).to_string(),
        })
}

/// `docs/troubleshooting.md`, generated from [`TABLE`].
pub fn document() -> String {
    let mut out = String::from(
        "# Troubleshooting enrollment and connectivity\n\n\
         <!-- Generated from crates/proto/src/troubleshooting.rs; regenerate with\n     \
         RAMPART_UPDATE_DOCS=1 cargo test -p rampart-proto --test troubleshooting -->\n\n\
         Each failure has a stable code. `rampart-agent status` shows the device's last\n\
         one with its cause and fix; `rampart device show NAME`, the console's device\n\
         page and the admin API (a device's `enrollment.help`) show those of the\n\
         server's enrollment state.\n\n\
         | code | cause | fix |\n|---|---|---|\n",
    );
    for (code, cause, fix) in TABLE {
        out.push_str(&format!(
            "| `{code}` | {} | {} |\n",
            cause.replace('|', "\\|"),
            fix.replace('|', "\\|")
        ));
    }
    out
}
