//! The read-model tables, one module each. `apply` routes an event to the model that folds it.

pub mod connections;
pub mod jobs;
pub mod source_groups;
pub mod sources;

use deadpool_postgres::GenericClient;

use crate::{ReadError, StoredEvent};

/// Every read-model table, in the order a rebuild creates them: what a rebuild replaces and an as-of fold
/// shadows. A new read model adds its tables here.
pub const TABLES: &[&str] = &[
    "read_connections",
    "read_sources",
    "read_source_groups",
    "read_source_group_members",
    "read_jobs",
];

/// Folds one event into whichever read model cares about it. Events of aggregates with no read model yet
/// are passed over (the log keeps them; a later rebuild picks them up).
pub async fn apply(client: &impl GenericClient, event: &StoredEvent) -> Result<(), ReadError> {
    match event.aggregate_type.as_str() {
        listbackup_domain::connection::AGGREGATE_TYPE => connections::apply(client, event).await,
        listbackup_domain::source::AGGREGATE_TYPE => sources::apply(client, event).await,
        listbackup_domain::source_group::AGGREGATE_TYPE => {
            source_groups::apply(client, event).await
        }
        listbackup_domain::job::AGGREGATE_TYPE => jobs::apply(client, event).await,
        _ => Ok(()),
    }
}
