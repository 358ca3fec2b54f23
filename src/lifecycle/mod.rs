//! Session lifecycle and remediation.

pub mod purge;
pub mod remediation;
pub mod sweeper;
