//! One attempt of a restore job (issue 13 §5), run by the backup worker through the same queue, attempts,
//! progress, cancellation and outcome as a backup ([`BackupWorker::start_and_run`](super::BackupWorker)):
//!
//! 1. the snapshot's merged records of each data type are read through the record version index, as the
//!    snapshot routes and the export read them ([`Snapshots::all_records`]: one definition of the merged
//!    state as of a backup), once the index has merged the backup;
//! 2. the platform's current records of that data type are listed (the backup's connector and rate budget);
//! 3. each snapshot record is planned ([`plan`]: create, update, skip, cannot restore) and, unless the run
//!    is dry, written ([`Connector::write_record`](crate::connectors::Connector::write_record));
//! 4. a `RecordsRestored` is recorded per batch of [`BATCH`] records, and each record's outcome goes into the
//!    report, `report.ndjson.gz` (stored encrypted like a backup's files): one line per record,
//!    `{dataType, oldId, newId, action, reason?, error?}`;
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

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use listbackup_commands::jobs::{Progress, RestoredBatch, Succeeded};
use listbackup_commands::oauth::USE_WINDOW;
use listbackup_domain::job::restore::{plan, RestoreAction};
use listbackup_domain::job::{JobErrorCode, RestoreRequest};
use listbackup_domain::platform::writes::MatchBy;
use listbackup_domain::platform::Platform;
use serde_json::{json, Value};

use super::progress::ProgressReporter;
use super::{cancelled, BackupWorker, Run, RunFailure, CANCEL_CHECK};
use crate::connectors::{FetchError, FetchRequest, RecordWrite};
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
            source,
            artifacts,
        } = run;
        let connection_id = source.connection_id();
        let started_at = Utc::now();
        if let Err(err) = self
            .oauth
            .ensure_fresh(metadata, connection_id, USE_WINDOW)
            .await
        {
            tracing::debug!(%connection_id, error = &err as &dyn std::error::Error, "token refresh before the restore");
        }
        let credentials = self.credentials(metadata, connection_id).await?;
        let platform = platform_id.platform();
        let snapshots = Snapshots::new(self.db.clone(), std::sync::Arc::new(self.store.clone()));
        // The source aggregate accepted the snapshot as one of the source's stored backups: until the index
        // has merged it, it is not found there.
        let deadline = tokio::time::Instant::now() + INDEX_WAIT;
        loop {
            match snapshots
                .readable(&metadata.account_id, source.id(), &request.snapshot)
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
        for data_type in &request.data_types {
            progress.current_data_type = Some(data_type.clone());
            reporter.boundary(&progress).await?;
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
            let records = snapshots
                .all_records(
                    &metadata.account_id,
                    source.id(),
                    &request.snapshot,
                    data_type,
                )
                .await?;
            let current = match self
                .current_records(
                    connection_id,
                    platform,
                    data_type,
                    credentials.expose(),
                    id_field,
                )
                .await
            {
                Ok(current) => current,
                Err(err) => {
                    let _ = report.abort().await;
                    return Err(err.into());
                }
            };
            // The platform's records that no snapshot record names, by what recognises them: each may be a
            // snapshot record re-created under a new id, claimed by at most one.
            let mut unclaimed: HashMap<String, Vec<String>> = HashMap::new();
            if writes.matched_by != MatchBy::Id {
                let in_snapshot: HashSet<String> = records
                    .iter()
                    .filter_map(|r| record_id(r, id_field))
                    .collect();
                let mut ids: Vec<&String> = current
                    .keys()
                    .filter(|id| !in_snapshot.contains(*id))
                    .collect();
                ids.sort();
                for id in ids {
                    if let Some(key) = writes.match_key(&current[id]) {
                        unclaimed.entry(key).or_default().push(id.clone());
                    }
                }
                // Claimed from the front: the oldest id first, whatever the listing's order.
                for ids in unclaimed.values_mut() {
                    ids.reverse();
                }
            }
            let mut batch = RestoredBatch {
                data_type: data_type.clone(),
                ..RestoredBatch::default()
            };
            let mut batches = 0u64;
            for record in &records {
                let Some(old_id) = record_id(record, id_field) else {
                    continue;
                };
                if let Some(only) = &request.record_ids {
                    if !only.contains(&old_id) {
                        continue;
                    }
                }
                // The record as it is on the platform now: under its own id, or re-created under another.
                let target = if current.contains_key(&old_id) {
                    Some(old_id.clone())
                } else {
                    writes
                        .match_key(record)
                        .and_then(|key| unclaimed.get_mut(&key)?.pop())
                };
                let planned = plan(
                    &writes,
                    record,
                    target.as_ref().and_then(|id| current.get(id)),
                    request.mode,
                );
                let mut line = json!({"dataType": data_type, "oldId": old_id, "newId": null,
                                      "action": planned.action, "dryRun": request.dry_run});
                if let Some(reason) = planned.reason {
                    line["reason"] = json!(reason);
                }
                let target = target.unwrap_or_else(|| old_id.clone());
                if target != old_id {
                    line["newId"] = json!(target);
                    line["matchedBy"] = json!(match writes.matched_by {
                        MatchBy::Key(pointer) => pointer,
                        _ => "content",
                    });
                }
                let mut action = planned.action;
                match planned.action {
                    RestoreAction::Create | RestoreAction::Update if !request.dry_run => {
                        let key = format!("listbackup-restore-{job_id}-{data_type}-{old_id}");
                        let write = RecordWrite {
                            connection_id,
                            platform,
                            writes: &writes,
                            credentials: credentials.expose(),
                            update: (planned.action == RestoreAction::Update)
                                .then_some(target.as_str()),
                            fields: &planned.fields,
                            idempotency_key: &key,
                        };
                        match self.connector.write_record(write).await {
                            Ok(new_id) => line["newId"] = json!(new_id),
                            // The platform refused this record (validation): reported, and the run goes on.
                            Err(
                                err @ FetchError::Platform {
                                    retryable: false, ..
                                },
                            ) => {
                                action = RestoreAction::CannotRestore;
                                line["action"] = json!(action);
                                line["error"] = json!(err.to_string());
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
                match action {
                    RestoreAction::Create => batch.created += 1,
                    RestoreAction::Update => batch.updated += 1,
                    RestoreAction::Skip => batch.skipped += 1,
                    RestoreAction::CannotRestore => batch.failed += 1,
                }
                report
                    .write_raw(&serde_json::value::to_raw_value(&line).map_err(|err| {
                        RunFailure {
                            code: JobErrorCode::Internal,
                            message: format!("a report line could not be written: {err}"),
                            retryable: false,
                        }
                    })?)
                    .await?;
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

    /// The platform's records of `data_type` now, by id, listed as a backup lists them.
    async fn current_records(
        &self,
        connection_id: &str,
        platform: &'static Platform,
        data_type: &str,
        credentials: &std::collections::BTreeMap<String, String>,
        id_field: &str,
    ) -> Result<HashMap<String, Value>, FetchError> {
        let mut current = HashMap::new();
        let mut pager = self.connector.pages(FetchRequest::new(
            connection_id,
            platform,
            data_type,
            credentials,
        ))?;
        while let Some(page) = pager.next_page().await? {
            for raw in page.records {
                let record: Value = serde_json::from_str(raw.get())
                    .map_err(|err| FetchError::InvalidResponse(err.to_string()))?;
                if let Some(id) = record_id(&record, id_field) {
                    current.insert(id, record);
                }
            }
        }
        Ok(current)
    }
}

/// A record's id as text (`"cus_…"`, or a number's digits): what the platform knows it by.
fn record_id(record: &Value, id_field: &str) -> Option<String> {
    match record.get(id_field)? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}
