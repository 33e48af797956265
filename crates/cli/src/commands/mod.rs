//! One module per top-level command.

pub mod apply;
pub mod audit;
pub mod catalog;
pub mod device;
pub mod group;
pub mod intune;
pub mod onboarding;
pub mod plan;
pub mod policy;
pub mod report;
pub mod rollout;
pub mod tenant;
pub mod token;
pub mod user;
pub mod whoami;
