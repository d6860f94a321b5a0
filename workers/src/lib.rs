//! Everything that runs beside the API and reacts to the event log: the relay that publishes committed events
//! to NATS JetStream (and, with issue 5, the backup workers and the scheduler).

pub mod backup;
pub mod connectors;
pub mod log_follower;
pub mod metrics;
pub mod names;
pub mod notifications;
pub mod record_index;
pub mod relay;
pub mod retention;
pub mod sagas;
pub mod scheduler;
pub mod storage;
pub mod verifier;

pub use names::NatsNames;
pub use relay::Relay;
