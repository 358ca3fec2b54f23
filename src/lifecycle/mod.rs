//! Session lifecycle and remediation.

pub mod pauses;
pub mod purge;
pub mod remediation;
pub mod sweeper;
