//! One module per top-level command.

pub mod catalog;
pub mod plan;
