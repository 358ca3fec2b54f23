//! Session lifecycle and remediation.

pub mod remediation;
