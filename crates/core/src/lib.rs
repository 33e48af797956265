//! Pure domain of Rampart: the settings catalog, policy validation, group
//! rules and per-device resolution.
//!
//! This crate does no IO and never reads the clock: the server, the CLI's
//! offline `plan` and the tests all call the same functions with the same
//! inputs, so a plan computed on a laptop is what devices get.

pub mod catalog;
pub mod documents;
pub mod error;
pub mod group_rule;
pub mod intune;
pub mod model;
pub mod names;
pub mod resolve;
pub mod rollout;
pub mod schema;
pub mod suggest;
pub mod text;
pub mod validate;
pub mod value;
