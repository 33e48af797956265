//! `rampart-agent`: the device side of Rampart (DESIGN.md §5 and §6).
//!
//! The agent surveys the device, establishes a trust with its tenant
//! (`onboard`), then (`run`) checks in over mutual TLS, verifies the signed
//! effective policy it receives, enforces it through providers, and reports
//! every setting's status through a durable outbox. `status` is the local
//! view; `offboard` ends the trust. The protocol is `docs/device-channel.md`.
//!
//! Each module has one job:
//!
//! - `config` — the agent's TOML configuration, checked once.
//! - `state` — the state directory's layout and atomic writes.
//! - `outbox` — the durable queue of status reports.
//! - `facts`, `survey` — what the device is, and who else manages it;
//!   `windows_facts` reads a Windows device's registry for them.
//! - `verify` — the signed-policy checks, and nothing else.
//! - `providers` — the provider framework and one folder per provider.
//! - `enforce` — a verified resolution → providers → per-setting statuses.
//! - `channel` — the HTTP client of the device channel.
//! - `onboard`, `run`, `offboard`, `status` — the commands.

pub mod channel;
pub mod clock;
pub mod config;
pub mod enforce;
pub mod error;
pub mod facts;
pub mod offboard;
pub mod onboard;
pub mod outbox;
pub mod providers;
pub mod run;
pub mod state;
pub mod status;
pub mod survey;
pub mod verify;
pub mod windows_facts;

#[cfg(test)]
pub(crate) mod testutil;

pub use error::{Error, Result};
