//! The Job aggregate: one backup run of one source, from the worker that starts it to its outcome.
//!
//! A job is *queued* before it has a stream: it exists only as the source's `SyncRequested`. The worker that
//! picks the message up starts it with `JobStarted` as the stream's first event (sequence 1), so two workers
//! handed the same message cannot both run it: the loser's append conflicts and it drops the message.

mod aggregate;
mod code;
mod commands;
mod events;
pub mod manifest;
mod outcome;
pub mod restore;
pub mod retention;
pub mod retry;
mod verification;

#[cfg(test)]
mod tests;

pub use aggregate::{Job, JobError, JobStatus, UnknownJobStatus};
pub use code::{JobErrorCode, UnknownJobErrorCode};
pub use commands::JobCommand;
pub use events::{DataTypeFailure, JobEvent, JobTrigger, QueuedJob};
pub use outcome::{summarise, Failure};
pub use restore::{JobKind, RestoreAction, RestoreMode, RestoreRequest};
pub use verification::Verification;

/// The aggregate type name in the event store and in NATS subjects.
pub const AGGREGATE_TYPE: &str = "job";
