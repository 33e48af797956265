//! The domain's nouns: platforms, families, devices, groups, policies and the
//! tenant settings that scope enforcement.
//!
//! Values here are already checked: a `Policy` exists only after its draft was
//! validated against the catalog (`validate::validate_policy`), so the rest of
//! the core never re-checks a setting's type or bounds.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::group_rule::GroupRule;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the value's exact spelling.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// All spellings, for "expected one of" messages.
            pub fn expected() -> String {
                [$($text),+].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The operating system family of a device and the platform of a policy.
    Platform { Linux => "linux", Windows => "windows", Macos => "macos" }
);

string_enum!(
    /// Endpoint-security policy families, as in the seed documents.
    Family {
        Antivirus => "antivirus",
        AntivirusExclusions => "antivirus_exclusions",
        Firewall => "firewall",
        FirewallRules => "firewall_rules",
        Edr => "edr",
        Asr => "asr",
    }
);

string_enum!(
    /// Workstation or server.
    DeviceType { Workstation => "workstation", Server => "server" }
);

string_enum!(
    /// Per-platform enforcement scope of a tenant (the seeds' "enforcement
    /// scope"): off, every device, or only devices with the pilot tag.
    Enforcement { Off => "off", All => "all", Tagged => "tagged" }
);

string_enum!(
    /// What happens when two policies give one setting different values.
    ConflictPolicy { Report => "report", MostSecureWins => "most_secure_wins" }
);

string_enum!(
    /// What an administrator may do. Each role includes the ones below it:
    /// `global_admin` ⊃ `security_manager` ⊃ `read_only`.
    Role {
        ReadOnly => "read_only",
        SecurityManager => "security_manager",
        GlobalAdmin => "global_admin",
    }
);

impl Role {
    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A device as the engine sees it: the attributes group rules and scope use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub os: Platform,
    pub os_version: String,
    pub device_type: DeviceType,
    pub tags: Vec<String>,
}

impl Device {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}

/// How a group chooses its members.
#[derive(Debug, Clone, PartialEq)]
pub enum Membership {
    /// Listed device names.
    Static(Vec<String>),
    /// A rule over device attributes, kept with its source text.
    Dynamic(GroupRule),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub membership: Membership,
}

impl Group {
    pub fn contains(&self, device: &Device) -> bool {
        match &self.membership {
            Membership::Static(names) => names.iter().any(|n| n == &device.name),
            Membership::Dynamic(rule) => rule.matches(device),
        }
    }
}

/// The target meaning "every device of the tenant".
pub const ALL_DEVICES: &str = "all-devices";

/// Which devices a policy targets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignments {
    /// Group names, or [`ALL_DEVICES`].
    pub include: Vec<String>,
    /// Group names; exclusion beats inclusion.
    pub exclude: Vec<String>,
}

/// A validated endpoint-security policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub family: Family,
    pub platform: Platform,
    /// Setting id → normalized value (see `value::normalize`).
    pub settings: BTreeMap<String, serde_json::Value>,
    pub assignments: Assignments,
    /// Monotonic version, bumped on each change; 1 for a new policy.
    pub version: u64,
    /// When it was last modified, in seconds since the epoch; breaks ties under
    /// `most_secure_wins` (the most recently modified policy wins).
    pub modified_at: i64,
    /// How a change to it is released; resolution does not read it.
    pub rollout: crate::rollout::RolloutChoice,
}

/// The tenant settings the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    pub enforcement: BTreeMap<Platform, Enforcement>,
    pub pilot_tag: String,
    pub conflict_policy: ConflictPolicy,
    /// Whether devices another management authority manages may be taken
    /// over. The engine does not use it; the device channel does.
    pub allow_takeover: bool,
    /// Whether domain controllers are managed. Off by default, so that no
    /// one cuts off a domain controller's firewall by accident; the device
    /// channel refuses a device whose facts say domain controller until it
    /// is on.
    pub manage_domain_controllers: bool,
    /// How a policy change is released when the policy does not say
    /// (`None`: everywhere at once).
    pub default_rollout: Option<crate::rollout::RolloutSpec>,
}

/// The tag that marks pilot devices unless the tenant chooses another.
pub const DEFAULT_PILOT_TAG: &str = "MDE-Management";

impl Default for TenantSettings {
    /// Enforcement on for every platform, conflicts reported: what a new
    /// tenant gets, so that a first plan shows something.
    fn default() -> Self {
        TenantSettings {
            enforcement: Platform::ALL
                .iter()
                .map(|p| (*p, Enforcement::All))
                .collect(),
            pilot_tag: DEFAULT_PILOT_TAG.to_string(),
            conflict_policy: ConflictPolicy::Report,
            allow_takeover: false,
            manage_domain_controllers: false,
            default_rollout: None,
        }
    }
}

impl TenantSettings {
    pub fn enforcement_for(&self, platform: Platform) -> Enforcement {
        self.enforcement
            .get(&platform)
            .copied()
            .unwrap_or(Enforcement::Off)
    }
}
