//! Session lifecycle and remediation.

pub mod remediation;
pub mod sweeper;
