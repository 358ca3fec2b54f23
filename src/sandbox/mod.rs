//! Emulators of the services byocd talks to (Salesforce now; 8x8, Kaleyra and Pub/Sub later), for tests, the demo and benchmarks.

pub mod eightbyeight;
pub mod kaleyra;
mod net;
pub mod pubsub;
pub mod rep;
pub mod salesforce;
pub mod stack;
