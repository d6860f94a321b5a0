//! Restore jobs (issue 13 §5): what a restore asks for, and the plan of one record — pure, so the dry run and
//! the real run decide alike.
//!
//! A restore is a job of kind [`JobKind::Restore`]: queued by the source's `RestoreRequested`, run by the
//! backup workers through the same queue, attempts, progress, cancellation and outcome events as a backup,
//! recording `RecordsRestored` per batch instead of `ResourceBackedUp`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::platform::writes::{RecordWrites, SetChange};

/// What a job does: back a source up (every job before restores), or write a backup's records back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    #[default]
    Backup,
    Restore,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
        }
    }

    /// Serde's `skip_serializing_if`: a backup's events stay as they were before restores.
    pub fn is_backup(&self) -> bool {
        *self == Self::Backup
    }
}

/// Which records of the snapshot a restore writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Only records missing from the platform are created again; existing ones are left as they are.
    Missing,
    /// Missing records are created again and existing ones that differ from the snapshot are put back.
    Overwrite,
}

/// A restore as requested (`POST /sources/{id}/restores`), recorded in `RestoreRequested`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    /// The backup to restore from: the job id of a succeeded or partial backup of the same source. Its
    /// records are the merged state as of that backup (the full backup before it and the incrementals up to
    /// it, the last version of each record winning).
    pub snapshot: crate::JobId,
    /// Writable data types of the source's platform (see the catalog's `writable`), in the order restored.
    pub data_types: Vec<String>,
    /// Only these records: each a record's key in the snapshot's index (its id, `<parent id>/<id>` for a
    /// per-parent listing's record, `sha256:<hex>` for one without an id), or a plain id that one record of
    /// a data type has; absent: every record of the snapshot's data types. The worker reports an id that
    /// names several records, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_ids: Option<Vec<String>>,
    pub mode: RestoreMode,
    /// Plan only: compare the platform with the snapshot and report, write nothing.
    pub dry_run: bool,
}

/// What a restore does (or, dry, would do) with one record of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreAction {
    /// Missing from the platform: created again (under a new id, the platform's to choose).
    Create,
    /// Present but different (mode `overwrite`): its fields are put back as backed up.
    Update,
    /// Nothing to write: unchanged, or present while the mode is `missing`.
    Skip,
    /// The platform cannot take the write (the record is immutable, or it refused it).
    CannotRestore,
}

/// The plan of one record: its action, why, and the fields to send.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRecord {
    pub action: RestoreAction,
    /// Why a record is skipped or cannot be restored.
    pub reason: Option<&'static str>,
    /// The fields the write sends (empty for skip and cannot-restore). On update, a field the backup holds
    /// as `null` or lacks is sent as `null`: the writer unsets it; the fields of
    /// [`RecordWrites::update_current`] are added as the platform's record holds them now. An update whose
    /// fields are empty changes only [`PlannedRecord::sets`]: the record's own update call is not made.
    pub fields: Map<String, Value>,
    /// The follow-up writes of [`RecordWrites::set_fields`] after the create or the update, one per set that
    /// changes (empty for skip and cannot-restore).
    pub sets: Vec<SetChange>,
}

/// Decides what to do with `backed_up` (a record of the snapshot) given `current`, the same record on the
/// platform now (`None`: missing, deleted since). Both are whole records as listed; their writable fields are
/// read under [`RecordWrites::fields_at`].
pub fn plan(
    writes: &RecordWrites,
    backed_up: &Value,
    current: Option<&Value>,
    mode: RestoreMode,
) -> PlannedRecord {
    let skip = |reason| PlannedRecord {
        action: RestoreAction::Skip,
        reason: Some(reason),
        fields: Map::new(),
        sets: Vec::new(),
    };
    // Removed on the platform at the time of the snapshot (an archived Mailchimp member): nothing to put
    // back. Removed now although still listed: missing.
    if writes.is_removed(backed_up) {
        return skip("removed from the platform at the time of the snapshot (an archived member)");
    }
    let empty = Map::new();
    let backed_up = writes.fields_of(backed_up).unwrap_or(&empty);
    // A `null` and an absent field are the same: no value.
    let value = |record: &Map<String, Value>, field: &str| {
        record.get(field).filter(|v| !v.is_null()).cloned()
    };
    // Each set as the snapshot holds it, made the platform's: every element of the snapshot set, and each
    // of `now`'s that the snapshot lacks unset. `None` where they already hold the same.
    let set_changes = |now: Option<&Map<String, Value>>| -> Vec<SetChange> {
        writes
            .set_fields
            .iter()
            .filter_map(|set| {
                let wanted = set.names(backed_up);
                let held = now.map(|now| set.names(now)).unwrap_or_default();
                let kept: Vec<String> = wanted.iter().map(|n| n.to_lowercase()).collect();
                (wanted != held).then(|| SetChange {
                    set: *set,
                    inactive: held
                        .into_iter()
                        .filter(|n| !kept.contains(&n.to_lowercase()))
                        .collect(),
                    active: wanted,
                })
            })
            .collect()
    };
    let Some(current) = current.filter(|c| !writes.is_removed(c)) else {
        let fields = writes
            .create_fields
            .iter()
            .filter_map(|f| Some(((*f).to_owned(), value(backed_up, f)?)))
            .collect();
        // A record the platform still lists in a removed state (an archived member) comes back holding
        // what it held then: the sets end as the snapshot's all the same.
        let removed = current.and_then(|c| writes.fields_of(c));
        return PlannedRecord {
            action: RestoreAction::Create,
            reason: None,
            fields,
            sets: set_changes(removed),
        };
    };
    let record = current;
    let current = writes.fields_of(current).unwrap_or(&empty);
    let mut changed: Map<String, Value> = writes
        .update_fields
        .iter()
        .filter(|f| value(backed_up, f) != value(current, f))
        .map(|f| ((*f).to_owned(), value(backed_up, f).unwrap_or(Value::Null)))
        .collect();
    let sets = set_changes(Some(current));
    let immutable_changed = writes
        .immutable_fields
        .iter()
        .any(|f| value(backed_up, f) != value(current, f));
    if changed.is_empty() && sets.is_empty() && !immutable_changed {
        if writes
            .kept_fields
            .iter()
            .any(|f| value(backed_up, f) != value(current, f))
        {
            return skip(
                "changed since the snapshot only in what a restore leaves as it is now (a Mailchimp \
                 member's status: a restore never subscribes or unsubscribes anyone)",
            );
        }
        return skip("unchanged since the snapshot");
    }
    if mode == RestoreMode::Missing {
        return skip("changed since the snapshot, but mode missing leaves existing records alone");
    }
    if immutable_changed {
        return PlannedRecord {
            action: RestoreAction::CannotRestore,
            reason: Some(
                "changed since the snapshot in a field the platform does not let change once created \
                 (for a Stripe price: its amount, currency, product or recurrence); a new record would \
                 not be the one other records refer to, so it is left for a person to decide",
            ),
            fields: Map::new(),
            sets: Vec::new(),
        };
    }
    if writes.update.is_none() && !changed.is_empty() {
        return PlannedRecord {
            action: RestoreAction::CannotRestore,
            reason: Some(
                "changed since the snapshot, and the platform cannot update it once created",
            ),
            fields: Map::new(),
            sets: Vec::new(),
        };
    }
    // The record's version as it is now (QuickBooks' `Id` and `SyncToken`), sent along as listed with an
    // update that is made (not with sets changed alone).
    if !changed.is_empty() {
        for field in writes.update_current {
            if let Some(value) = record.get(*field).filter(|v| !v.is_null()) {
                changed.insert((*field).to_owned(), value.clone());
            }
        }
    }
    PlannedRecord {
        action: RestoreAction::Update,
        reason: None,
        fields: changed,
        sets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::writes::WriteBody;
    use serde_json::json;

    const WRITES: RecordWrites = RecordWrites {
        create: "/customers",
        update: Some("/customers/{id}"),
        create_fields: &["name", "email", "metadata"],
        update_fields: &["name", "email", "metadata"],
        body: WriteBody::BracketedForm,
        ..RecordWrites::BASE
    };

    #[test]
    fn a_missing_record_is_created_from_its_writable_fields() {
        let backed_up = json!({"id": "cus_1", "name": "Ada", "email": null, "created": 1});
        let planned = plan(&WRITES, &backed_up, None, RestoreMode::Missing);
        assert_eq!(planned.action, RestoreAction::Create);
        assert_eq!(Value::Object(planned.fields), json!({"name": "Ada"}));
    }

    #[test]
    fn an_unchanged_record_is_skipped_in_either_mode() {
        let record = json!({"id": "cus_1", "name": "Ada", "created": 1});
        let current = json!({"id": "cus_1", "name": "Ada", "created": 2});
        for mode in [RestoreMode::Missing, RestoreMode::Overwrite] {
            let planned = plan(&WRITES, &record, Some(&current), mode);
            assert_eq!(planned.action, RestoreAction::Skip);
        }
    }

    #[test]
    fn a_changed_record_is_updated_only_in_overwrite_mode_with_the_changed_fields() {
        let backed_up = json!({"id": "cus_1", "name": "Ada", "email": "a@x"});
        let current = json!({"id": "cus_1", "name": "Bob", "email": "a@x", "metadata": {"k": "v"}});
        let missing = plan(&WRITES, &backed_up, Some(&current), RestoreMode::Missing);
        assert_eq!(missing.action, RestoreAction::Skip);
        let overwrite = plan(&WRITES, &backed_up, Some(&current), RestoreMode::Overwrite);
        assert_eq!(overwrite.action, RestoreAction::Update);
        assert_eq!(
            Value::Object(overwrite.fields),
            json!({"name": "Ada", "metadata": null})
        );
    }

    #[test]
    fn an_update_carries_the_records_current_version_and_a_create_does_not() {
        // QuickBooks: `Id` and `SyncToken` as listed now, whatever the backup held.
        let writes = RecordWrites {
            update_current: &["Id", "SyncToken"],
            ..WRITES
        };
        let backed_up = json!({"Id": "7", "SyncToken": "2", "name": "Ada"});
        let current = json!({"Id": "7", "SyncToken": "5", "name": "Bob"});
        let updated = plan(&writes, &backed_up, Some(&current), RestoreMode::Overwrite);
        assert_eq!(updated.action, RestoreAction::Update);
        assert_eq!(
            Value::Object(updated.fields),
            json!({"name": "Ada", "Id": "7", "SyncToken": "5"})
        );
        let created = plan(&writes, &backed_up, None, RestoreMode::Overwrite);
        assert_eq!(Value::Object(created.fields), json!({"name": "Ada"}));
        // Only the version differing is no change.
        let same = json!({"Id": "7", "SyncToken": "9", "name": "Ada"});
        let skipped = plan(&writes, &backed_up, Some(&same), RestoreMode::Overwrite);
        assert_eq!(skipped.action, RestoreAction::Skip);
    }

    #[test]
    fn a_kept_field_is_never_written_and_a_removed_record_is_missing() {
        use crate::platform::writes::FieldIs;
        let writes = RecordWrites {
            create_fields: &["email_address", "status", "merge_fields"],
            update_fields: &["merge_fields"],
            kept_fields: &["status"],
            removed_when: &[FieldIs {
                field: "/status",
                value: "archived",
            }],
            ..WRITES
        };
        let backed_up = json!({"id": "h", "email_address": "a@x", "status": "subscribed",
                               "merge_fields": {"FNAME": "Ada"}});
        // Unsubscribed since: left so, and the report says why.
        let unsubscribed = json!({"id": "h", "email_address": "a@x", "status": "unsubscribed",
                                  "merge_fields": {"FNAME": "Ada"}});
        let planned = plan(
            &writes,
            &backed_up,
            Some(&unsubscribed),
            RestoreMode::Overwrite,
        );
        assert_eq!(planned.action, RestoreAction::Skip);
        assert!(planned.reason.unwrap().contains("status"), "{planned:?}");
        // Renamed too: the merge fields go back, the status does not.
        let renamed = json!({"id": "h", "email_address": "a@x", "status": "unsubscribed",
                             "merge_fields": {"FNAME": "Bob"}});
        let planned = plan(&writes, &backed_up, Some(&renamed), RestoreMode::Overwrite);
        assert_eq!(planned.action, RestoreAction::Update);
        assert_eq!(
            Value::Object(planned.fields),
            json!({"merge_fields": {"FNAME": "Ada"}})
        );
        // Archived since: created again, with every create field.
        let archived = json!({"id": "h", "email_address": "a@x", "status": "archived"});
        let planned = plan(&writes, &backed_up, Some(&archived), RestoreMode::Missing);
        assert_eq!(planned.action, RestoreAction::Create);
        assert_eq!(planned.fields["status"], "subscribed");
        // Archived in the snapshot: nothing to restore.
        let planned = plan(&writes, &archived, None, RestoreMode::Overwrite);
        assert_eq!(planned.action, RestoreAction::Skip);
    }

    #[test]
    fn an_immutable_record_that_changed_cannot_be_restored() {
        let writes = RecordWrites {
            update: None,
            ..WRITES
        };
        let planned = plan(
            &writes,
            &json!({"name": "A"}),
            Some(&json!({"name": "B"})),
            RestoreMode::Overwrite,
        );
        assert_eq!(planned.action, RestoreAction::CannotRestore);
        assert!(planned.reason.is_some());
    }

    #[test]
    fn nested_fields_are_planned_where_the_record_keeps_them() {
        let writes = RecordWrites {
            create: "/crm/v3/objects/contacts",
            update: Some("/crm/v3/objects/contacts/{id}"),
            create_fields: &["email", "firstname", "phone"],
            update_fields: &["email", "firstname", "phone"],
            fields_at: "/properties",
            ..RecordWrites::BASE
        };
        let backed_up = json!({"id": "1", "properties": {"email": "a@x", "firstname": "Ada",
                                                         "phone": null, "hs_object_id": "1"}});
        let created = plan(&writes, &backed_up, None, RestoreMode::Missing);
        assert_eq!(
            Value::Object(created.fields),
            json!({"email": "a@x", "firstname": "Ada"})
        );
        // A null there and an absent field are the same; a property set since is cleared.
        let current = json!({"id": "1", "properties": {"email": "a@x", "firstname": "Bob",
                                                       "phone": "555"}});
        let updated = plan(&writes, &backed_up, Some(&current), RestoreMode::Overwrite);
        assert_eq!(updated.action, RestoreAction::Update);
        assert_eq!(
            Value::Object(updated.fields),
            json!({"firstname": "Ada", "phone": null})
        );
        let same = json!({"id": "1", "properties": {"email": "a@x", "firstname": "Ada"}});
        let skipped = plan(&writes, &backed_up, Some(&same), RestoreMode::Overwrite);
        assert_eq!(skipped.action, RestoreAction::Skip);
    }

    #[test]
    fn a_changed_immutable_field_cannot_be_restored_in_place_and_is_left_alone_in_missing_mode() {
        let writes = RecordWrites {
            immutable_fields: &["unit_amount"],
            ..WRITES
        };
        let backed_up = json!({"name": "A", "unit_amount": 1000});
        let current = json!({"name": "B", "unit_amount": 1500});
        let overwrite = plan(&writes, &backed_up, Some(&current), RestoreMode::Overwrite);
        assert_eq!(overwrite.action, RestoreAction::CannotRestore);
        assert!(overwrite.reason.unwrap().contains("once created"));
        assert!(overwrite.fields.is_empty());
        let missing = plan(&writes, &backed_up, Some(&current), RestoreMode::Missing);
        assert_eq!(missing.action, RestoreAction::Skip);
        // Only the immutable field differs: still not an update.
        let same_name = json!({"name": "A", "unit_amount": 1500});
        let overwrite = plan(
            &writes,
            &backed_up,
            Some(&same_name),
            RestoreMode::Overwrite,
        );
        assert_eq!(overwrite.action, RestoreAction::CannotRestore);
    }

    // Mailchimp's member tags: the set-valued field these tests plan.
    use crate::platform::mailchimp::MEMBER_TAGS as TAGS;

    fn member(status: &str, tags: &[&str]) -> Value {
        let tags: Vec<Value> = tags
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"id": i + 100, "name": t}))
            .collect();
        json!({"id": "h", "email_address": "a@x", "status": status, "vip": false, "tags": tags})
    }

    #[test]
    fn a_set_field_is_planned_by_name_as_a_follow_up_of_the_create_or_the_update() {
        use crate::platform::writes::FieldIs;
        let writes = RecordWrites {
            create_fields: &["email_address", "status", "vip"],
            update_fields: &["vip"],
            kept_fields: &["status"],
            removed_when: &[FieldIs {
                field: "/status",
                value: "archived",
            }],
            set_fields: &[TAGS],
            ..WRITES
        };
        let backed_up = member("subscribed", &["VIP", "early"]);
        // Missing: created, every backed-up tag set.
        let created = plan(&writes, &backed_up, None, RestoreMode::Missing);
        assert_eq!(created.action, RestoreAction::Create);
        assert_eq!(created.sets.len(), 1);
        assert_eq!(created.sets[0].active, ["VIP", "early"]);
        assert!(created.sets[0].inactive.is_empty());
        assert_eq!(
            created.sets[0].body(),
            json!({"tags": [{"name": "VIP", "status": "active"},
                            {"name": "early", "status": "active"}], "is_syncing": true})
        );
        assert!(!created.fields.contains_key("tags"), "not the create's");
        // Archived and still listed with a tag added since: brought back with the snapshot's tags only.
        let archived = member("archived", &["early", "spam"]);
        let created = plan(&writes, &backed_up, Some(&archived), RestoreMode::Missing);
        assert_eq!(created.action, RestoreAction::Create);
        assert_eq!(created.sets[0].active, ["VIP", "early"]);
        assert_eq!(created.sets[0].inactive, ["spam"]);
        // A member without tags is created without a follow-up.
        let plain = plan(
            &writes,
            &member("subscribed", &[]),
            None,
            RestoreMode::Missing,
        );
        assert!(plain.sets.is_empty(), "{plain:?}");
        // Same tags in another order, under other ids: unchanged.
        let same = json!({"id": "h", "email_address": "a@x", "status": "subscribed", "vip": false,
                          "tags": [{"id": 7, "name": "early"}, {"id": 9, "name": "VIP"}]});
        let skipped = plan(&writes, &backed_up, Some(&same), RestoreMode::Overwrite);
        assert_eq!(skipped.action, RestoreAction::Skip, "{skipped:?}");
        // Tags changed only: an update of the tags alone in mode overwrite, nothing in mode missing.
        let retagged = member("subscribed", &["early", "spam"]);
        let missing = plan(&writes, &backed_up, Some(&retagged), RestoreMode::Missing);
        assert_eq!(missing.action, RestoreAction::Skip);
        assert!(missing.sets.is_empty());
        let updated = plan(&writes, &backed_up, Some(&retagged), RestoreMode::Overwrite);
        assert_eq!(updated.action, RestoreAction::Update);
        assert!(updated.fields.is_empty(), "no update call: {updated:?}");
        assert_eq!(updated.sets[0].active, ["VIP", "early"]);
        assert_eq!(updated.sets[0].inactive, ["spam"]);
        assert_eq!(
            updated.sets[0].body()["tags"][2],
            json!({"name": "spam", "status": "inactive"})
        );
        // Every tag removed since the snapshot, and the status changed: the tags come back, the status
        // stays.
        let bare = member("unsubscribed", &[]);
        let updated = plan(&writes, &backed_up, Some(&bare), RestoreMode::Overwrite);
        assert_eq!(updated.action, RestoreAction::Update);
        assert!(updated.fields.is_empty());
        assert_eq!(updated.sets[0].active, ["VIP", "early"]);
        // A snapshot member without tags: the ones added since are removed.
        let untagged = plan(
            &writes,
            &member("subscribed", &[]),
            Some(&retagged),
            RestoreMode::Overwrite,
        );
        assert!(untagged.sets[0].active.is_empty());
        assert_eq!(untagged.sets[0].inactive, ["early", "spam"]);
        // A tag whose case changed since is set as backed up and never unset under its other case.
        let recased = member("subscribed", &["vip", "early"]);
        let updated = plan(&writes, &backed_up, Some(&recased), RestoreMode::Overwrite);
        assert_eq!(updated.sets[0].active, ["VIP", "early"]);
        assert!(updated.sets[0].inactive.is_empty(), "{updated:?}");
    }

    #[test]
    fn a_change_of_sets_alone_does_not_carry_the_records_version() {
        let writes = RecordWrites {
            update_fields: &["name"],
            update_current: &["SyncToken"],
            set_fields: &[TAGS],
            ..WRITES
        };
        let backed_up = json!({"name": "A", "SyncToken": "1", "tags": ["x"]});
        let current = json!({"name": "A", "SyncToken": "4", "tags": []});
        let planned = plan(&writes, &backed_up, Some(&current), RestoreMode::Overwrite);
        assert_eq!(planned.action, RestoreAction::Update);
        assert!(planned.fields.is_empty(), "{planned:?}");
        assert_eq!(planned.sets[0].active, ["x"], "plain names are names");
        let renamed = json!({"name": "B", "SyncToken": "4", "tags": ["x"]});
        let planned = plan(&writes, &backed_up, Some(&renamed), RestoreMode::Overwrite);
        assert_eq!(
            Value::Object(planned.fields),
            json!({"name": "A", "SyncToken": "4"})
        );
        assert!(planned.sets.is_empty());
    }
}
