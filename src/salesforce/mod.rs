//! Salesforce side.

pub mod codes;
