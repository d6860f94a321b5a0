//! One attempt of a restore job (issue 13 §5), run by the backup worker through the same queue, attempts,
//! progress, cancellation and outcome as a backup ([`BackupWorker::start_and_run`](super::BackupWorker)):
//!
//! 1. the snapshot's merged records of each data type are read through the record version index, as the
//!    snapshot routes and the export read them ([`Snapshots::all_records`]: one definition of the merged
//!    state as of a backup), once the index has merged the backup;
//! 2. the platform's current records of that data type are listed (the backup's connector and rate budget);
//! 3. each snapshot record is planned ([`plan`]: create, update, skip, cannot restore) and, unless the run
//!    is dry, written ([`Connector::write_record`](crate::connectors::Connector::write_record)), then each
//!    of its data type's set-valued fields that the plan changes is written by its follow-up call
//!    ([`Connector::write_set`](crate::connectors::Connector::write_set), a Mailchimp member's tags); an
//!    update that changes sets only makes the follow-ups alone. A follow-up the platform refuses leaves the
//!    record written and reports it `cannot_restore` with the error;
//! 4. a `RecordsRestored` is recorded per batch of [`BATCH`] records, and each record's outcome goes into the
//!    report, `report.ndjson.gz` (stored encrypted like a backup's files): one line per record,
//!    `{dataType, oldId, newId, action, reason?, error?, dryRun, sets?}`, `sets` naming per set-valued field
//!    what the follow-up sets and unsets (`{"tags": {"active": [...], "inactive": [...]}}`), dry runs too;
//! 5. the report's manifest is written and the job succeeds. A record the platform refuses is counted as
//!    failed and reported; a failure of the connection or of our own infrastructure fails the job.
//!
//! Every write carries an idempotency key made of the job, the data type and the record's old id, sent where
//! the platform honours one (Stripe), so the next attempt of a job whose worker died does not create a record
//! twice. Where it does not, a snapshot record missing under its id is first looked for under another one by
//! its data type's [`MatchBy`](listbackup_domain::platform::writes::MatchBy) (an e-mail address, a handle, or
//! everything a create sends) among the platform's records that are not themselves in the snapshot: found,
//! it is that record re-created (by an earlier attempt, an earlier restore or by hand), compared and updated
//! like any present record, and the report maps the old id to it.
//!
//! **Records created by an earlier restore are recognised by id too.** Each create's old → new id is written
//! to `restore_id_map` (migration 0160) as soon as the platform answers it; a later restore of the same source
//! that does not find a record under its backed-up id follows that map (old → new, and onwards when the new
//! one was itself re-created) and takes the first id the platform holds now as the record (`matchedBy:
//! "restoreIdMap"` in the report), before any [`MatchBy`](listbackup_domain::platform::writes::MatchBy) match;
//! so restoring a Stripe snapshot twice in `missing` mode leaves one copy. **References follow re-created
//! records**: data types are restored in [`restore_order`] (a Stripe price after products), and a field naming
//! another record (a price's `product`) is sent, and compared, with the id that record has now.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use listbackup_commands::jobs::{Progress, RestoredBatch, Succeeded};
use listbackup_commands::oauth::USE_WINDOW;
use listbackup_domain::job::restore::{plan, RestoreAction};
use listbackup_domain::job::{JobErrorCode, RestoreRequest};
use listbackup_domain::platform::writes::{restore_order, MatchBy, RecordWrites};
use listbackup_domain::platform::Platform;
use listbackup_domain::ErrorChain;
use serde_json::{json, Value};

use super::progress::ProgressReporter;
use super::{cancelled, BackupWorker, Run, RunFailure, CANCEL_CHECK};
use crate::connectors::stored::{self, StoredFields};
use crate::connectors::{FetchError, FetchRequest, RecordWrite, SetWrite};
use crate::record_index::{content_hash, index_key};
use crate::storage::NdjsonWriter;
use listbackup_commands::snapshots::{SnapshotError, Snapshots};

/// Records per `RecordsRestored`.
pub const BATCH: u64 = 100;

/// The report's name in the job's directory (`report.ndjson.gz`).
pub const REPORT: &str = "report";

/// How long a restore waits for the record indexer to merge its snapshot's backup (it does so moments after
/// the backup's end; a restore asked for at once may get there first).
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl From<SnapshotError> for RunFailure {
    fn from(err: SnapshotError) -> Self {
        let (code, retryable) = match &err {
            // Our own database or storage: another attempt may succeed.
            SnapshotError::Database(_)
            | SnapshotError::Pool(_)
            | SnapshotError::Storage { .. }
            | SnapshotError::Io(_) => (JobErrorCode::StorageError, true),
            // Not indexed in time: the next attempt waits again.
            SnapshotError::SnapshotNotFound => (JobErrorCode::StorageError, true),
            // Expired, erased, damaged: no attempt can read it.
            SnapshotError::RecordNotFound
            | SnapshotError::Expired { .. }
            | SnapshotError::ChainExpired { .. }
            | SnapshotError::Erased { .. }
            | SnapshotError::BadCursor
            | SnapshotError::Damaged { .. }
            | SnapshotError::MissingLine { .. }
            | SnapshotError::UnknownBackup { .. }
            | SnapshotError::Zip(_)
            | SnapshotError::Csv(_) => (JobErrorCode::ValidationError, false),
        };
        Self {
            code,
            message: listbackup_commands::error_chain(&err),
            retryable,
        }
    }
}

impl BackupWorker {
    /// Runs one attempt of a restore (see the module). `Err` when the attempt failed as a whole: the caller
    /// discards the report and records JobFailed, or confirms a cancellation.
    pub(super) async fn restore(
        &self,
        run: Run<'_>,
        request: &RestoreRequest,
    ) -> Result<(), RunFailure> {
        let Run {
            metadata,
            worker,
            job_id,
            attempt,
            platform_id,
            source_id,
            source,
            artifacts,
        } = run;
        let connection = listbackup_commands::sources::connection_of(source)?;
        // The platform client and the restore's id map key the connection and the source by their text.
        let connection_text = connection.to_string();
        let connection_id = connection_text.as_str();
        let source_text = source_id.to_string();
        let started_at = Utc::now();
        if let Err(err) = self
            .oauth
            .ensure_fresh(metadata, &connection, USE_WINDOW)
            .await
        {
            tracing::debug!(%connection_id, error = %ErrorChain(&err), "token refresh before the restore");
        }
        let credentials = self.credentials(metadata, connection).await?;
        let platform = platform_id.platform();
        let snapshots = Snapshots::new(self.db.clone(), std::sync::Arc::new(self.store.clone()));
        // The source aggregate accepted the snapshot as one of the source's stored backups: until the index
        // has merged it, it is not found there.
        let deadline = tokio::time::Instant::now() + INDEX_WAIT;
        loop {
            match snapshots
                .readable(&metadata.account_id, source_id, request.snapshot)
                .await
            {
                Err(SnapshotError::SnapshotNotFound) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err.into()),
                Ok(_) => break,
            }
        }
        let mut report = artifacts.data_type_writer(REPORT).await?;
        let mut progress = Progress {
            data_types_done: 0,
            data_types_total: request.data_types.len() as u32,
            current_data_type: None,
            records: 0,
            bytes: 0,
        };
        let mut reporter = ProgressReporter::new(
            &self.nats,
            self.names.progress_subject(job_id),
            &self.jobs,
            metadata,
            job_id,
            worker,
            attempt,
        );
        let mut last_check = tokio::time::Instant::now();
        let mut ids = IdMap::load(&self.db, &source_text).await?;
        let order = restore_order(&request.data_types, |d| {
            platform.data_type(d).and_then(|d| d.writes)
        });
        // The requested ids (`recordIds`) some data type's snapshot holds, or that named several of its
        // records: the others are reported at the end.
        let mut named: HashSet<String> = HashSet::new();
        let data_types = order.len();
        for (position, data_type) in order.into_iter().enumerate() {
            progress.current_data_type = Some(data_type.clone());
            reporter.boundary(&progress).await?;
            // A file platform's files: uploaded into a new folder (`restore_files`).
            if let Some(files) = platform.data_type(data_type).and_then(|d| d.file_writes) {
                let restored = self
                    .restore_files(super::restore_files::FilesRun {
                        metadata,
                        worker,
                        job_id,
                        attempt,
                        source_id,
                        connection_id,
                        platform,
                        data_type,
                        writes: &files,
                        credentials: credentials.expose(),
                        request,
                        snapshots: &snapshots,
                        report: &mut report,
                        progress: &mut progress,
                        reporter: &mut reporter,
                        last_check: &mut last_check,
                    })
                    .await;
                if let Err(err) = restored {
                    let _ = report.abort().await;
                    return Err(err);
                }
                progress.data_types_done += 1;
                continue;
            }
            // The source aggregate let only writable data types in.
            let Some(writes) = platform.data_type(data_type).and_then(|d| d.writes) else {
                let _ = report.abort().await;
                return Err(RunFailure {
                    code: JobErrorCode::ValidationError,
                    message: format!("{data_type} is not writable"),
                    retryable: false,
                });
            };
            let id_field = platform.listing(data_type).map_or("id", |l| l.id_field);
            // Each record under its key in the index (`<list_id>/<id>` for a Mailchimp member).
            // Each record as a `Value` to plan with, and its writable fields as stored, which the writes
            // send as backed up (values no `Value` holds exactly included: see `connectors::stored`).
            let stored_records = snapshots
                .all_records::<Box<serde_json::value::RawValue>>(
                    &metadata.account_id,
                    source_id,
                    request.snapshot,
                    data_type,
                )
                .await?;
            let mut records = Vec::with_capacity(stored_records.len());
            let mut stored = Vec::with_capacity(stored_records.len());
            for (key, text) in stored_records {
                let read = stored::lenient(text.get()).and_then(|record| {
                    Ok((record, StoredFields::of(text.get(), writes.fields_at)?))
                });
                match read {
                    Ok((record, fields)) => {
                        records.push((key, record));
                        stored.push(fields);
                    }
                    Err(err) => {
                        let _ = report.abort().await;
                        return Err(FetchError::Undecodable {
                            context: format!("the stored record {key} of {data_type} is not JSON"),
                            source: err.into(),
                        }
                        .into());
                    }
                }
            }
            let current = match self
                .current_records(connection_id, platform, data_type, credentials.expose())
                .await
            {
                Ok(current) => current,
                Err(err) => {
                    let _ = report.abort().await;
                    return Err(err.into());
                }
            };
            let mut batch = RestoredBatch {
                data_type: data_type.clone(),
                ..RestoredBatch::default()
            };
            // The records `recordIds` names, by key: each requested id is a key, or a plain id that one
            // record of the snapshot has (a member's id alone names it in each audience it is in: the key
            // says which); an id naming several is reported so rather than guessed.
            let selected: Option<HashSet<&str>> = match &request.record_ids {
                None => None,
                Some(requested) => {
                    let mut by_plain_id: HashMap<String, Vec<&str>> = HashMap::new();
                    let keys: HashSet<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
                    for (key, record) in &records {
                        if let Some(id) = record_id(record, id_field) {
                            if id != *key {
                                by_plain_id.entry(id).or_default().push(key);
                            }
                        }
                    }
                    let mut selected = HashSet::new();
                    for asked in requested {
                        if keys.contains(asked.as_str()) {
                            selected.insert(asked.as_str());
                            named.insert(asked.clone());
                            continue;
                        }
                        match by_plain_id.get(asked).map(Vec::as_slice) {
                            Some([key]) => {
                                selected.insert(*key);
                                named.insert(asked.clone());
                            }
                            Some(several) if several.len() > 1 => {
                                named.insert(asked.clone());
                                let line = json!({"dataType": data_type, "oldId": asked, "newId": null,
                                    "action": RestoreAction::CannotRestore, "dryRun": request.dry_run,
                                    "reason": format!(
                                        "the id names {} records of the snapshot ({}): name one by its key",
                                        several.len(), several.join(", "))});
                                write_line(&mut report, &line).await?;
                                batch.failed += 1;
                                progress.records += 1;
                            }
                            _ => {}
                        }
                    }
                    Some(selected)
                }
            };
            // The platform's records that no snapshot record names, by what recognises them: each may be a
            // snapshot record re-created under a new id, claimed by at most one.
            let mut unclaimed: HashMap<String, Vec<String>> = HashMap::new();
            if writes.matched_by != MatchBy::Id {
                let in_snapshot: HashSet<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
                let mut keys: Vec<&String> = current
                    .keys()
                    .filter(|key| !in_snapshot.contains(key.as_str()))
                    .collect();
                keys.sort();
                for key in keys {
                    if let Some(matched) = writes.match_key(&current[key].record) {
                        unclaimed.entry(matched).or_default().push(key.clone());
                    }
                }
                // Claimed from the front: the oldest id first, whatever the listing's order.
                for keys in unclaimed.values_mut() {
                    keys.reverse();
                }
            }
            let mut batches = 0u64;
            for ((old_id, record), stored) in records.iter().zip(&stored) {
                if selected
                    .as_ref()
                    .is_some_and(|only| !only.contains(old_id.as_str()))
                {
                    continue;
                }
                // A record stored without an id (its key is its content's hash) cannot be told apart from
                // the platform's records, nor written back as itself: reported, not guessed.
                let Some(own_id) = record_id(record, id_field) else {
                    let line = json!({"dataType": data_type, "oldId": old_id, "newId": null,
                        "action": RestoreAction::CannotRestore, "dryRun": request.dry_run,
                        "reason": format!("the snapshot holds the record without its id ({id_field}), \
                                           so it cannot be matched with the platform's records")});
                    write_line(&mut report, &line).await?;
                    batch.failed += 1;
                    progress.records += 1;
                    continue;
                };
                // A per-parent listing's record is `<parent>/<id>`: a record created again under a new id
                // is keyed under the same parent.
                let parent = parent_of(old_id, &own_id);
                let record = &ids.with_references(&writes, record);
                // The record as it is on the platform now: under its own key, under the one an earlier
                // restore gave it, or re-created under another that its data type's match recognises.
                let by_id = ids.current_id(data_type, old_id, |key| current.contains_key(key));
                let target = by_id.clone().or_else(|| {
                    writes
                        .match_key(record)
                        .and_then(|key| unclaimed.get_mut(&key)?.pop())
                });
                if let Some(target) = &target {
                    ids.resolve(data_type, old_id, target);
                }
                let now = target.as_ref().and_then(|key| current.get(key));
                let mut planned = plan(&writes, record, now.map(|c| &c.record), request.mode);
                let mut reason = planned.reason.map(str::to_owned);
                // An update whose fields are all the same changes sets only: no update call of its own.
                let update_call =
                    planned.action == RestoreAction::Update && !planned.fields.is_empty();
                // The write's path, and its follow-ups', from the record they are made of: a record lacking a
                // field of them cannot be written (a Mailchimp member without its `list_id`). A create's
                // follow-ups name the record by the id it had (the new one is not known yet).
                let made_of = match planned.action {
                    RestoreAction::Create => Some((Some(own_id.as_str()), record)),
                    RestoreAction::Update => now.map(|now| (now.id.as_deref(), &now.record)),
                    _ => None,
                };
                let mut paths = Vec::new();
                if let Some((id, made_of)) = made_of {
                    match planned.action {
                        RestoreAction::Create => {
                            paths.push(writes.path(writes.create, None, made_of))
                        }
                        _ if update_call => {
                            if let Some(template) = writes.update {
                                paths.push(writes.path(template, id, made_of));
                            }
                        }
                        _ => {}
                    }
                    for set in &planned.sets {
                        paths.push(writes.path(set.set.path, id, made_of));
                    }
                }
                if let Some(Err(err)) = paths.into_iter().find(Result::is_err) {
                    planned.action = RestoreAction::CannotRestore;
                    planned.sets.clear();
                    reason = Some(format!("{err}: it cannot be written"));
                }
                let mut line = json!({"dataType": data_type, "oldId": old_id, "newId": null,
                                      "action": planned.action, "dryRun": request.dry_run});
                if let Some(reason) = reason {
                    line["reason"] = json!(reason);
                }
                // What each follow-up sets and unsets, dry or not.
                if !planned.sets.is_empty() {
                    line["sets"] = planned
                        .sets
                        .iter()
                        .map(|set| {
                            (
                                set.set.field.to_owned(),
                                json!({"active": set.active, "inactive": set.inactive}),
                            )
                        })
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                let target = target.unwrap_or_else(|| old_id.clone());
                if target != *old_id {
                    line["newId"] = json!(target);
                    line["matchedBy"] = json!(match writes.matched_by {
                        _ if by_id.is_some() => "restoreIdMap",
                        MatchBy::Key(pointer) => pointer,
                        _ => "content",
                    });
                }
                let mut action = planned.action;
                let key = format!("listbackup-restore-{job_id}-{data_type}-{old_id}");
                // The record's id on the platform once written, for its follow-ups.
                let mut written: Option<String> = None;
                match planned.action {
                    RestoreAction::Update if !request.dry_run && !update_call => {
                        line["newId"] = json!(target);
                        written = now.and_then(|now| now.id.clone());
                    }
                    RestoreAction::Create | RestoreAction::Update if !request.dry_run => {
                        let update = planned.action == RestoreAction::Update;
                        let write = RecordWrite {
                            connection_id,
                            platform,
                            writes: &writes,
                            credentials: credentials.expose(),
                            update: if update {
                                now.and_then(|now| now.id.as_deref())
                            } else {
                                None
                            },
                            record: match now {
                                Some(now) if update => &now.record,
                                _ => record,
                            },
                            fields: &planned.fields,
                            stored: Some(stored),
                            idempotency_key: &key,
                        };
                        match self.connector.write_record(write).await {
                            Ok(id) if update => {
                                line["newId"] = json!(target);
                                written = Some(id);
                            }
                            Ok(new_id) => {
                                written = Some(new_id.clone());
                                let new_key = match parent {
                                    Some(parent) => format!("{parent}/{new_id}"),
                                    None => new_id,
                                };
                                // An upsert keyed by the record's own id (a Mailchimp member brought
                                // back from the archive) keeps its key: nothing to map.
                                if new_key == *old_id {
                                    ids.resolve(data_type, old_id, &new_key);
                                } else if let Err(err) = ids
                                    .record_created(
                                        &self.db,
                                        (&metadata.account_id, &source_text, &job_id.to_string()),
                                        data_type,
                                        old_id,
                                        &new_key,
                                    )
                                    .await
                                {
                                    let _ = report.abort().await;
                                    return Err(err);
                                }
                                line["newId"] = json!(new_key);
                            }
                            // The platform refused this record (validation, a forgotten Mailchimp
                            // member): reported with the platform's reason, and the run goes on.
                            Err(
                                err @ FetchError::Platform {
                                    retryable: false, ..
                                },
                            ) => {
                                action = RestoreAction::CannotRestore;
                                line["action"] = json!(action);
                                line["error"] = json!(listbackup_commands::error_chain(&err));
                            }
                            Err(err) => {
                                let _ = report.abort().await;
                                return Err(err.into());
                            }
                        }
                    }
                    RestoreAction::Update => line["newId"] = json!(target),
                    _ => {}
                }
                // The follow-ups of the sets (a Mailchimp member's tags), once the record is written: from
                // the record the write was made of, naming it by the id it has now.
                if !request.dry_run
                    && matches!(action, RestoreAction::Create | RestoreAction::Update)
                {
                    let made_of = match (action, now) {
                        (RestoreAction::Update, Some(now)) => &now.record,
                        _ => record,
                    };
                    for change in &planned.sets {
                        let write = SetWrite {
                            connection_id,
                            platform,
                            writes: &writes,
                            credentials: credentials.expose(),
                            id: written.as_deref(),
                            record: made_of,
                            change,
                            idempotency_key: &format!("{key}-{}", change.set.field),
                        };
                        match self.connector.write_set(write).await {
                            Ok(()) => {}
                            // The record is written but this set is not: reported so, with the
                            // platform's reason (the report's `newId` names where the record is).
                            Err(
                                err @ FetchError::Platform {
                                    retryable: false, ..
                                },
                            ) => {
                                action = RestoreAction::CannotRestore;
                                line["action"] = json!(action);
                                line["error"] = json!(format!(
                                    "the record was written but its {} were not: {}",
                                    change.set.field,
                                    listbackup_commands::error_chain(&err)
                                ));
                                break;
                            }
                            Err(err) => {
                                let _ = report.abort().await;
                                return Err(err.into());
                            }
                        }
                    }
                }
                match action {
                    RestoreAction::Create => batch.created += 1,
                    RestoreAction::Update => batch.updated += 1,
                    RestoreAction::Skip => batch.skipped += 1,
                    RestoreAction::CannotRestore => batch.failed += 1,
                }
                write_line(&mut report, &line).await?;
                progress.records += 1;
                if batch.created + batch.updated + batch.skipped + batch.failed >= BATCH {
                    self.jobs
                        .record_restored(
                            metadata,
                            job_id,
                            worker,
                            std::mem::replace(
                                &mut batch,
                                RestoredBatch {
                                    data_type: data_type.clone(),
                                    ..RestoredBatch::default()
                                },
                            ),
                        )
                        .await?;
                    batches += 1;
                    reporter.page(&progress, batches).await?;
                }
                if last_check.elapsed() >= CANCEL_CHECK {
                    last_check = tokio::time::Instant::now();
                    if self.cancel_requested(job_id).await? {
                        let _ = report.abort().await;
                        return Err(cancelled());
                    }
                }
            }
            // After the last data type: each requested id that no data type's snapshot holds is reported
            // (counted with the last data type, whose batch is the job's last).
            if position + 1 == data_types {
                if let Some(requested) = &request.record_ids {
                    let mut unknown: Vec<&String> =
                        requested.iter().filter(|id| !named.contains(*id)).collect();
                    unknown.sort();
                    unknown.dedup();
                    let asked = request.data_types.join(", ");
                    for id in unknown {
                        let line = json!({"dataType": (request.data_types.len() == 1).then_some(data_type),
                            "oldId": id, "newId": null, "action": RestoreAction::CannotRestore,
                            "dryRun": request.dry_run,
                            "reason": format!("not in the snapshot: no record of {asked} has this key or id")});
                        write_line(&mut report, &line).await?;
                        batch.failed += 1;
                        progress.records += 1;
                    }
                }
            }
            // The last batch, or an empty one: every data type shows what happened to it.
            if batches == 0 || batch.created + batch.updated + batch.skipped + batch.failed > 0 {
                self.jobs
                    .record_restored(metadata, job_id, worker, batch)
                    .await?;
            }
            progress.data_types_done += 1;
        }
        progress.current_data_type = None;
        reporter.boundary(&progress).await?;
        let file = report.finish().await?;
        let (job, _) = self.jobs.load(job_id).await?;
        if !job.is_run_by(worker) {
            return Err(RunFailure {
                code: JobErrorCode::Superseded,
                message: "another run owns the job now".into(),
                retryable: false,
            });
        }
        // A cancellation that came in during the last data type still wins, as for a backup.
        if job.cancel_requested() {
            return Err(cancelled());
        }
        let mut manifest = artifacts.new_manifest(platform_id.as_str(), attempt, started_at);
        manifest.add_file(file.manifest_file(None));
        manifest.finished_at = Utc::now();
        let (sha256, path) = artifacts.write_manifest(&manifest).await?;
        let outcome = Succeeded {
            manifest: path.to_string(),
            manifest_sha256: sha256,
            records: manifest.records,
            bytes: manifest.bytes,
            cursors: Default::default(),
        };
        self.jobs.succeed(metadata, job_id, worker, outcome).await?;
        Ok(())
    }

    /// The platform's records of `data_type` now, listed as a backup lists them, by their key in the index
    /// ([`index_key`]: the id, `<parent>/<id>` for a per-parent listing's records, the content's hash for
    /// a record without an id), as the snapshot's records are keyed.
    async fn current_records(
        &self,
        connection_id: &str,
        platform: &'static Platform,
        data_type: &str,
        credentials: &std::collections::BTreeMap<String, String>,
    ) -> Result<HashMap<String, Current>, FetchError> {
        let mut current = HashMap::new();
        let mut pager = self.connector.pages(FetchRequest::new(
            connection_id,
            platform,
            data_type,
            credentials,
        ))?;
        while let Some(page) = pager.next_page().await? {
            for (raw, id) in page.records.into_iter().zip(page.ids) {
                let record: Value =
                    stored::lenient(raw.get()).map_err(|err| FetchError::Undecodable {
                        context: format!("a record of {data_type} on the platform is not JSON"),
                        source: err.into(),
                    })?;
                let key = index_key(
                    page.parent.as_deref(),
                    id.as_deref(),
                    &content_hash(raw.get()),
                );
                current.insert(key, Current { id, record });
            }
        }
        Ok(current)
    }
}

/// One record of the platform as listed now.
struct Current {
    /// Its own id (what an update's path names), `None` for a record without one.
    id: Option<String>,
    record: Value,
}

/// The parent part of a per-parent listing's key `<parent>/<id>` (`own_id` the record's id), `None` for a
/// key that is the id alone.
fn parent_of<'a>(key: &'a str, own_id: &str) -> Option<&'a str> {
    key.strip_suffix(own_id)?
        .strip_suffix('/')
        .filter(|parent| !parent.is_empty())
}

/// Adds one line to the restore's report.
async fn write_line(report: &mut NdjsonWriter, line: &Value) -> Result<(), RunFailure> {
    let raw = serde_json::value::to_raw_value(line).map_err(|err| RunFailure {
        code: JobErrorCode::Internal,
        message: format!("a report line could not be written: {err}"),
        retryable: false,
    })?;
    report.write_raw(&raw).await?;
    Ok(())
}

/// A record's id as text (`"cus_…"`, or a number's digits): what the platform knows it by.
fn record_id(record: &Value, id_field: &str) -> Option<String> {
    match record.get(id_field)? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The old → new ids of the records restores created for one source (`restore_id_map`), and where each
/// record of this restore is now.
struct IdMap {
    /// `(data type, old id)` → the id a restore created the record under, as stored.
    created: HashMap<(String, String), String>,
    /// `(data type, backed-up id)` → the id the record has on the platform now, for the records this restore
    /// found or created: what a reference to it is rewritten to.
    resolved: HashMap<(String, String), String>,
}

/// Hops an old → new chain is followed at most (a record re-created this many times over is created again).
const MAX_HOPS: usize = 32;

impl IdMap {
    /// The source's map as earlier restores left it.
    async fn load(db: &deadpool_postgres::Pool, source_id: &str) -> Result<Self, RunFailure> {
        let client = db.get().await.map_err(id_map_failure)?;
        let rows = client
            .query(
                "SELECT data_type, old_id, new_id FROM restore_id_map WHERE source_id = $1::text::uuid",
                &[&source_id],
            )
            .await
            .map_err(id_map_failure)?;
        Ok(Self {
            created: rows
                .into_iter()
                .map(|row| ((row.get(0), row.get(1)), row.get(2)))
                .collect(),
            resolved: HashMap::new(),
        })
    }

    /// The id under which the platform holds record `old_id` of `data_type` now (`exists` says whether it
    /// holds an id): its own, else the first of the ids earlier restores created for it, in turn, that
    /// exists. `None`: missing.
    fn current_id(
        &self,
        data_type: &str,
        old_id: &str,
        exists: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let mut id = old_id.to_owned();
        for _ in 0..=MAX_HOPS {
            if exists(&id) {
                return Some(id);
            }
            id = self.created.get(&(data_type.to_owned(), id))?.clone();
        }
        None
    }

    /// Record `old_id` of `data_type` is `now` on the platform.
    fn resolve(&mut self, data_type: &str, old_id: &str, now: &str) {
        self.resolved
            .insert((data_type.to_owned(), old_id.to_owned()), now.to_owned());
    }

    /// The id a reference to record `id` of `data_type` is sent as: where this restore found or created
    /// it, else the last id earlier restores created for it, else `id` itself.
    fn referred(&self, data_type: &str, id: &str) -> String {
        if let Some(now) = self.resolved.get(&(data_type.to_owned(), id.to_owned())) {
            return now.clone();
        }
        let mut id = id.to_owned();
        for _ in 0..MAX_HOPS {
            match self.created.get(&(data_type.to_owned(), id.clone())) {
                Some(next) => id = next.clone(),
                None => break,
            }
        }
        id
    }

    /// `record` with each reference of `writes` naming the referred record as it is now.
    fn with_references(&self, writes: &RecordWrites, record: &Value) -> Value {
        let mut record = record.clone();
        for reference in writes.references {
            if let Some(Value::String(id)) = record.get(reference.field) {
                let now = self.referred(reference.data_type, id);
                record[reference.field] = Value::String(now);
            }
        }
        record
    }

    /// Records that the platform created `new_id` for backed-up record `old_id`, durably (see the module).
    async fn record_created(
        &mut self,
        db: &deadpool_postgres::Pool,
        (account_id, source_id, job_id): (&str, &str, &str),
        data_type: &str,
        old_id: &str,
        new_id: &str,
    ) -> Result<(), RunFailure> {
        let client = db.get().await.map_err(id_map_failure)?;
        client
            .execute(
                "INSERT INTO restore_id_map (source_id, data_type, old_id, new_id, account_id, job_id) \
                 VALUES ($1::text::uuid, $2, $3, $4, $5, $6::text::uuid) \
                 ON CONFLICT (source_id, data_type, old_id) DO UPDATE \
                 SET new_id = EXCLUDED.new_id, job_id = EXCLUDED.job_id, created_at = now()",
                &[&source_id, &data_type, &old_id, &new_id, &account_id, &job_id],
            )
            .await
            .map_err(id_map_failure)?;
        self.created
            .insert((data_type.to_owned(), old_id.to_owned()), new_id.to_owned());
        self.resolve(data_type, old_id, new_id);
        Ok(())
    }
}

/// The map's database could not be read or written: the attempt fails and is retried (the writes it made
/// are repeated under the same idempotency keys).
fn id_map_failure(err: impl std::error::Error + 'static) -> RunFailure {
    RunFailure {
        code: JobErrorCode::StorageError,
        message: format!(
            "the restore's id map could not be read or written: {}",
            listbackup_commands::error_chain(&err)
        ),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use listbackup_domain::platform::writes::Reference;

    fn map(pairs: &[(&str, &str, &str)]) -> IdMap {
        IdMap {
            created: pairs
                .iter()
                .map(|(d, o, n)| (((*d).to_owned(), (*o).to_owned()), (*n).to_owned()))
                .collect(),
            resolved: HashMap::new(),
        }
    }

    #[test]
    fn a_record_is_found_under_its_own_id_or_along_the_chain_of_ids_restores_gave_it() {
        let ids = map(&[
            ("customers", "cus_a", "cus_b"),
            ("customers", "cus_b", "cus_c"),
        ]);
        let only = |present: &'static [&'static str]| move |id: &str| present.contains(&id);
        assert_eq!(
            ids.current_id("customers", "cus_a", only(&["cus_a", "cus_c"])),
            Some("cus_a".into())
        );
        assert_eq!(
            ids.current_id("customers", "cus_a", only(&["cus_b"])),
            Some("cus_b".into())
        );
        assert_eq!(
            ids.current_id("customers", "cus_a", only(&["cus_c"])),
            Some("cus_c".into())
        );
        assert_eq!(ids.current_id("customers", "cus_a", only(&[])), None);
        assert_eq!(ids.current_id("products", "cus_a", only(&["cus_b"])), None);
        // A loop in the map (a record re-created under an id it once had) ends.
        let looped = map(&[("customers", "x", "y"), ("customers", "y", "x")]);
        assert_eq!(looped.current_id("customers", "x", only(&[])), None);
    }

    #[test]
    fn a_per_parent_key_gives_its_parent_and_a_plain_key_none() {
        assert_eq!(parent_of("a1b2c3d4e5/9f86d0", "9f86d0"), Some("a1b2c3d4e5"));
        assert_eq!(parent_of("cus_1", "cus_1"), None);
        assert_eq!(parent_of("/x", "x"), None);
        assert_eq!(parent_of("sha256:ab", "cus_1"), None);
    }

    #[test]
    fn a_reference_names_the_record_as_it_is_now() {
        const PRICES: RecordWrites = RecordWrites {
            create: "/prices",
            create_fields: &["product"],
            references: &[Reference {
                field: "product",
                data_type: "products",
            }],
            ..RecordWrites::BASE
        };
        let mut ids = map(&[("products", "prod_old", "prod_mid")]);
        let price = json!({"id": "price_1", "product": "prod_old", "unit_amount": 100});
        assert_eq!(
            ids.with_references(&PRICES, &price)["product"],
            "prod_mid",
            "the last id an earlier restore gave it"
        );
        ids.resolve("products", "prod_old", "prod_new");
        let sent = ids.with_references(&PRICES, &price);
        assert_eq!(sent["product"], "prod_new", "where this restore put it");
        assert_eq!(sent["unit_amount"], 100);
        let unrelated = json!({"id": "price_2", "product": "prod_other"});
        assert_eq!(
            ids.with_references(&PRICES, &unrelated)["product"],
            "prod_other"
        );
    }
}
