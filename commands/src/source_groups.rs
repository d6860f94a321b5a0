//! Source-group use cases. Membership commands retry on concurrency conflicts (without `If-Match`), so
//! many sources added to one group at once all land.

use listbackup_domain::source::Source;
use listbackup_domain::source_group::{Description, SourceGroup, SourceGroupCommand};
use listbackup_domain::values::DisplayName;
use listbackup_domain::ResourceKind;

use crate::bus::{CommandBus, CommandError, Committed};
use crate::metadata::EventMetadata;
use crate::sources::account;

pub struct SourceGroupCommands {
    bus: CommandBus<SourceGroup>,
    sources: CommandBus<Source>,
}

impl SourceGroupCommands {
    pub fn new(bus: CommandBus<SourceGroup>, sources: CommandBus<Source>) -> Self {
        Self { bus, sources }
    }

    pub async fn create(
        &self,
        metadata: &EventMetadata,
        group_id: &listbackup_domain::SourceGroupId,
        name: DisplayName,
        description: Option<Description>,
    ) -> Result<Committed, CommandError> {
        let command = SourceGroupCommand::Create {
            group_id: *group_id,
            account_id: account(metadata)?,
            name,
            description,
        };
        self.bus.execute(group_id, command, metadata, None).await
    }

    pub async fn update(
        &self,
        metadata: &EventMetadata,
        group_id: &listbackup_domain::SourceGroupId,
        expected_version: impl Into<crate::ExpectedVersion>,
        name: Option<DisplayName>,
        description: Option<Option<Description>>,
    ) -> Result<Committed, CommandError> {
        let command = SourceGroupCommand::Update {
            account_id: account(metadata)?,
            name,
            description,
        };
        self.bus
            .execute(group_id, command, metadata, expected_version)
            .await
    }

    pub async fn delete(
        &self,
        metadata: &EventMetadata,
        group_id: &listbackup_domain::SourceGroupId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let command = SourceGroupCommand::Delete {
            account_id: account(metadata)?,
        };
        self.bus
            .execute(group_id, command, metadata, expected_version)
            .await
    }

    /// The group as the write side knows it, if it is a live group of the caller's account; otherwise not
    /// found.
    pub async fn live(
        &self,
        metadata: &EventMetadata,
        group_id: &listbackup_domain::SourceGroupId,
    ) -> Result<(SourceGroup, u64), CommandError> {
        let (group, version) = self.bus.load(group_id).await?;
        if group.is_live_for(&metadata.account_id) {
            Ok((group, version))
        } else {
            Err(CommandError::not_found(ResourceKind::SourceGroup))
        }
    }

    /// Adds a live source of the caller's account; a deleted or foreign source is not found. Adding a
    /// member again records nothing.
    ///
    /// The group is checked first (a missing group is the 404 that matters most), then the source. A source
    /// deleted between that check and the commit is taken out again by the membership saga, which reacts to
    /// SourceAddedToGroup as well as to SourceDeleted.
    pub async fn add_source(
        &self,
        metadata: &EventMetadata,
        group_id: &listbackup_domain::SourceGroupId,
        source_id: &listbackup_domain::SourceId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let (group, _) = self.bus.load(group_id).await?;
        if !group.is_live_for(&metadata.account_id) {
            return Err(CommandError::not_found(ResourceKind::SourceGroup));
        }
        let (source, _) = self.sources.load(source_id).await?;
        if !source.is_live_for(&metadata.account_id) {
            return Err(CommandError::not_found_field(
                ResourceKind::Source,
                "sourceId",
            ));
        }
        let command = SourceGroupCommand::AddSource {
            account_id: account(metadata)?,
            source_id: *source_id,
        };
        self.bus
            .execute(group_id, command, metadata, expected_version)
            .await
    }

    pub async fn remove_source(
        &self,
        metadata: &EventMetadata,
        group_id: &listbackup_domain::SourceGroupId,
        source_id: &listbackup_domain::SourceId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let command = SourceGroupCommand::RemoveSource {
            account_id: account(metadata)?,
            source_id: *source_id,
        };
        self.bus
            .execute(group_id, command, metadata, expected_version)
            .await
    }
}
