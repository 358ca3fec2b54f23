//! Session lifecycle (the sweeper, the purge of finished work) and remediation (the table, and
//! the failure type the relay decides by).

pub mod failure;
pub mod pauses;
pub mod purge;
pub mod remediation;
pub mod seal;
pub mod sweeper;
