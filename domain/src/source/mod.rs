//! The Source aggregate: which data types of one connection to back up, on what schedule, kept how long.

mod aggregate;
mod commands;
mod events;
pub mod schedule;
mod scheduling;
pub mod values;

#[cfg(test)]
mod tests;

pub use aggregate::{Source, SourceError, SourceStatus};
pub use commands::{SourceChanges, SourceCommand, WantedStatus};
pub use events::{SourceEvent, SyncOutcome};
pub use schedule::{Schedule, ScheduleProblem, ScheduleSpec};
pub use scheduling::{scheduled_job_id, SkipReason};
pub use values::{DataTypes, KeepLast, RetentionDays};

/// The aggregate type name in the event store and in NATS subjects.
pub const AGGREGATE_TYPE: &str = "source";
