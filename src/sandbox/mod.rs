//! Emulators of the services byocd talks to (Salesforce's token endpoint and Interaction Service,
//! Pub/Sub, 8x8 and Kaleyra), for tests, the demo and benchmarks. Built only with the `sandbox`
//! feature: the production build leaves them out.

pub mod eightbyeight;
pub mod kaleyra;
mod net;
pub mod pubsub;
pub mod rep;
pub mod salesforce;
pub mod stack;
