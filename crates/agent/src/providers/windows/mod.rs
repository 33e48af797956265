//! The Windows policy registry: the values Group Policy writes under
//! `HKLM\SOFTWARE\Policies\Microsoft\…` and that Defender Antivirus,
//! attack surface reduction, Defender for Endpoint and Windows Firewall
//! honour (`docs/windows-registry.md` lists every value with its source).
//!
//! - `map.rs` — pure: setting → key, value name, type and encoding.
//! - `firewall_rule.rs` — pure: a rule → its [MS-GPFAS] rule string.
//! - `render.rs` — pure: desired settings → the values Rampart owns; the
//!   registry's values → each setting's read-back.
//! - `ledger.rs` — the values Rampart wrote, so that it touches only those.
//! - `registry.rs`, `provider.rs` — Windows only: the I/O and the
//!   [`Provider`](crate::providers::Provider).

pub mod config;
pub mod firewall_rule;
pub mod ledger;
pub mod map;
pub mod render;

#[cfg(windows)]
mod provider;
#[cfg(windows)]
mod registry;

#[cfg(windows)]
pub use provider::RegistryProvider;
