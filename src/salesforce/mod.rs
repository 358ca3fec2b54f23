//! The Salesforce side: access tokens (JWT bearer), the Interaction Service API client, and the
//! error codes both understand.

pub mod auth;
pub mod codes;
pub mod events;
pub mod files;
pub mod isa;
pub mod pubsub;
pub mod types;
