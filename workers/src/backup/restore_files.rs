//! A restore of a file platform's files (Google Drive, Dropbox, Box; issue 13 §5), one data type of a restore
//! job, as its [`FileWrites`] declares it:
//!
//! - **Nothing existing is touched.** The restore creates one new folder, `ListBackup restore <snapshot's end,
//!   UTC> <job>` (and `(attempt N)` from a job's second attempt on, so a retry never collides with the first
//!   attempt's folder), in the platform's root, and every file goes beneath it: nothing is overwritten,
//!   moved or deleted. A second restore creates a second folder. Both modes (`missing`, `overwrite`) do the
//!   same: there is nothing existing to compare with.
//! - **Folders as backed up.** Beneath the restore folder, each file goes in the folders it was in as far as
//!   its record tells ([`FileWrites::folders_of`]: Dropbox's `path_display`, Box's `path_collection`, Drive's
//!   `parents`); each folder is created once, when its first file needs it. Folder records are reported
//!   `skip`.
//! - **Bytes from the backup.** Each file's bytes are those the snapshot's manifest lists for it (stored by
//!   that backup or an earlier one it refers to), streamed from the store and decrypted as a download is, and
//!   uploaded as they come: memory stays flat whatever the size. A Google Doc backed up as an export is
//!   uploaded as that file (`Report.docx`), not converted back to a Google Doc.
//! - **Reported per file.** `create` with the new file's id and `restoredInto` (the folder path on the
//!   platform), or `cannot_restore` with why: no bytes in the backup (with the backup's own reason), over the
//!   single-request limit without a large-file mechanism, or refused by the platform (its error). A dry run
//!   plans `create` for each file it would upload and writes nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use listbackup_commands::artifacts::{JobFiles, JobLocation};
use listbackup_commands::jobs::{Progress, RestoredBatch};
use listbackup_commands::snapshots::Snapshots;
use listbackup_commands::EventMetadata;
use listbackup_domain::job::restore::RestoreAction;
use listbackup_domain::job::{JobErrorCode, RestoreRequest};
use listbackup_domain::platform::writes::{export_extension, FileWrites};
use listbackup_domain::platform::Platform;
use listbackup_domain::SourceId;
use serde_json::{json, Value};

use super::progress::ProgressReporter;
use super::restore::BATCH;
use super::{cancelled, BackupWorker, RunFailure, CANCEL_CHECK};
use crate::connectors::{FetchError, FileTarget, FileUpload, UploadStream};
use crate::storage::NdjsonWriter;

/// What one data type's file restore works with, from the restore's run.
pub(super) struct FilesRun<'a, 'r> {
    pub metadata: &'a EventMetadata,
    pub worker: &'a str,
    pub job_id: listbackup_domain::JobId,
    pub attempt: u32,
    pub source_id: SourceId,
    pub connection_id: &'a str,
    pub platform: &'static Platform,
    pub data_type: &'a str,
    pub writes: &'a FileWrites,
    pub credentials: &'a std::collections::BTreeMap<String, String>,
    pub request: &'a RestoreRequest,
    pub snapshots: &'a Snapshots,
    pub report: &'a mut NdjsonWriter,
    pub progress: &'a mut Progress,
    pub reporter: &'a mut ProgressReporter<'r>,
    pub last_check: &'a mut tokio::time::Instant,
}

/// The name of the folder a restore creates: the snapshot's end and the job, told apart from any other.
pub fn restore_folder_name(snapshot_end: DateTime<Utc>, job_id: &str, attempt: u32) -> String {
    // A UUID v7's last characters are random (its first are the time, shared by jobs of the same minute).
    let job: String = job_id
        .chars()
        .filter(|c| *c != '-')
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut name = format!(
        "ListBackup restore {} UTC {job}",
        snapshot_end.format("%Y-%m-%d %H.%M.%S")
    );
    if attempt > 1 {
        name.push_str(&format!(" (attempt {attempt})"));
    }
    name
}

/// A file's name on the platform: its backed-up name, with the export's extension when the bytes are an
/// export (a Google Doc as `.docx`) and the name does not end with it already.
fn upload_name(name: &str, export_as: Option<&str>) -> String {
    match export_as.and_then(export_extension) {
        Some(ext) if !name.to_lowercase().ends_with(&format!(".{ext}")) => format!("{name}.{ext}"),
        _ => name.to_owned(),
    }
}

/// Why this file alone could not be restored (the run goes on), or `None` when the failure is the run's.
fn the_files_own(err: &FetchError) -> bool {
    matches!(
        err,
        FetchError::Platform {
            retryable: false,
            ..
        } | FetchError::Unsupported { .. }
            | FetchError::InvalidResponse(_)
            | FetchError::Undecodable { .. }
    )
}

async fn write_report_line(report: &mut NdjsonWriter, line: &Value) -> Result<(), RunFailure> {
    let raw = serde_json::value::to_raw_value(line).map_err(|err| RunFailure {
        code: JobErrorCode::Internal,
        message: format!("a report line could not be written: {err}"),
        retryable: false,
    })?;
    report.write_raw(&raw).await?;
    Ok(())
}

impl BackupWorker {
    /// Restores the files of one data type (see the module).
    pub(super) async fn restore_files(&self, run: FilesRun<'_, '_>) -> Result<(), RunFailure> {
        let FilesRun {
            metadata,
            worker,
            job_id,
            attempt,
            source_id,
            connection_id,
            platform,
            data_type,
            writes,
            credentials,
            request,
            snapshots,
            report,
            progress,
            reporter,
            last_check,
        } = run;
        let account_id = metadata.account_id.as_str();
        let point = snapshots
            .readable(account_id, source_id, request.snapshot)
            .await?;
        let records = snapshots
            .all_records::<serde_json::Value>(account_id, source_id, request.snapshot, data_type)
            .await?;
        let location = JobLocation {
            account_id,
            source_id,
            job_id: request.snapshot,
        };
        let manifest = self
            .store
            .job_at(location)
            .read_manifest()
            .await?
            .ok_or_else(|| RunFailure {
                code: JobErrorCode::StorageError,
                message: format!("the manifest of backup {} cannot be read", request.snapshot),
                retryable: false,
            })?;
        let contents: HashMap<&str, _> = manifest
            .contents
            .iter()
            .filter(|c| c.data_type == data_type)
            .map(|c| (c.id.as_str(), c))
            .collect();
        let not_stored: HashMap<&str, _> = manifest
            .contents_not_stored
            .iter()
            .filter(|c| c.data_type == data_type)
            .map(|c| (c.id.as_str(), c))
            .collect();
        // Each record with its key in the index: a file's id (the files listings are not per parent).
        let by_id: HashMap<String, Value> = records.iter().cloned().collect();
        let target = FileTarget {
            connection_id,
            platform,
            writes,
            credentials,
        };
        let restore_folder = restore_folder_name(point.finished_at, &job_id.to_string(), attempt);
        // Folder path beneath the restore folder (empty: the restore folder itself) → its reference.
        let mut folders: HashMap<Vec<String>, String> = HashMap::new();
        let mut batch = RestoredBatch {
            data_type: data_type.to_owned(),
            ..RestoredBatch::default()
        };
        let mut batches = 0u64;
        // `recordIds` naming no file of the snapshot are reported, as for records.
        if let Some(requested) = &request.record_ids {
            let mut unknown: Vec<&String> = requested
                .iter()
                .filter(|id| !by_id.contains_key(*id))
                .collect();
            unknown.sort();
            unknown.dedup();
            for id in unknown {
                let line = json!({"dataType": data_type, "oldId": id, "newId": null,
                    "action": RestoreAction::CannotRestore, "dryRun": request.dry_run,
                    "reason": format!("not in the snapshot: no record of {data_type} has this id")});
                write_report_line(report, &line).await?;
                batch.failed += 1;
                progress.records += 1;
            }
        }
        for (old_id, record) in &records {
            let old_id = old_id.clone();
            if let Some(only) = &request.record_ids {
                if !only.contains(&old_id) {
                    continue;
                }
            }
            let mut line = json!({"dataType": data_type, "oldId": old_id, "newId": null,
                                  "dryRun": request.dry_run});
            let action = if let Some(content) = contents.get(old_id.as_str()) {
                let name = record
                    .pointer(writes.name)
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&old_id);
                let name = upload_name(name, content.export_as.as_deref());
                let path = writes.folders_of(record, &by_id);
                line["restoredInto"] = json!(std::iter::once(restore_folder.clone())
                    .chain(path.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("/"));
                line["name"] = json!(name);
                let upload = writes.upload;
                if content.bytes > upload.max_bytes && upload.large.is_none() {
                    line["reason"] = json!(format!(
                        "{} bytes: over the {} bytes {} documents for one upload request, and ListBackup \
                         does not use its large-file uploads for it yet",
                        content.bytes, upload.max_bytes, platform.name
                    ));
                    RestoreAction::CannotRestore
                } else if request.dry_run {
                    RestoreAction::Create
                } else {
                    let uploaded = match self
                        .folder_for(target, &restore_folder, &path, &mut folders)
                        .await
                    {
                        Ok(parent) => {
                            let mime_type = content
                                .export_as
                                .as_deref()
                                .or_else(|| record.get("mimeType").and_then(Value::as_str))
                                .unwrap_or("application/octet-stream");
                            let stored_name = content.name.as_str();
                            let open = || async move {
                                match JobFiles::open(&self.store, location, stored_name).await {
                                    Ok(Some(stream)) => Ok(stream as UploadStream),
                                    Ok(None) => Err(FetchError::Sink(
                                        format!("the backup's file {stored_name} is not stored")
                                            .into(),
                                    )),
                                    Err(err) => Err(FetchError::Sink(err)),
                                }
                            };
                            self.connector
                                .upload_file(
                                    target,
                                    FileUpload {
                                        parent: &parent,
                                        name: &name,
                                        mime_type,
                                        size: content.bytes,
                                    },
                                    open,
                                )
                                .await
                        }
                        Err(err) => Err(err),
                    };
                    match uploaded {
                        Ok(new_id) => {
                            line["newId"] = json!(new_id);
                            RestoreAction::Create
                        }
                        Err(err) if the_files_own(&err) => {
                            line["error"] = json!(listbackup_commands::error_chain(&err));
                            RestoreAction::CannotRestore
                        }
                        Err(FetchError::Sink(err)) => {
                            return Err(RunFailure {
                                code: JobErrorCode::StorageError,
                                message: format!(
                                    "the backed-up bytes of {old_id} could not be read: {}",
                                    listbackup_commands::error_chain(&*err)
                                ),
                                retryable: true,
                            })
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            } else if writes.is_folder(record) {
                line["reason"] = json!(
                    "a folder: created again inside the restore folder when a restored file was in it"
                );
                RestoreAction::Skip
            } else if let Some(missing) = not_stored.get(old_id.as_str()) {
                line["reason"] = json!("the backup holds no bytes for this file");
                line["error"] = json!(missing.message);
                RestoreAction::CannotRestore
            } else {
                line["reason"] = json!(
                    "the backup holds no bytes for it: a platform-native item with no downloadable form \
                     (a Dropbox Paper doc, a Google Form or shortcut)"
                );
                RestoreAction::CannotRestore
            };
            line["action"] = json!(action);
            match action {
                RestoreAction::Create => batch.created += 1,
                RestoreAction::Update => batch.updated += 1,
                RestoreAction::Skip => batch.skipped += 1,
                RestoreAction::CannotRestore => batch.failed += 1,
            }
            write_report_line(report, &line).await?;
            progress.records += 1;
            if batch.created + batch.updated + batch.skipped + batch.failed >= BATCH {
                let full = std::mem::replace(
                    &mut batch,
                    RestoredBatch {
                        data_type: data_type.to_owned(),
                        ..RestoredBatch::default()
                    },
                );
                self.jobs
                    .record_restored(metadata, job_id, worker, full)
                    .await?;
                batches += 1;
                reporter.page(progress, batches).await?;
            }
            if last_check.elapsed() >= CANCEL_CHECK {
                *last_check = tokio::time::Instant::now();
                if self.cancel_requested(job_id).await? {
                    return Err(cancelled());
                }
            }
        }
        if batches == 0 || batch.created + batch.updated + batch.skipped + batch.failed > 0 {
            self.jobs
                .record_restored(metadata, job_id, worker, batch)
                .await?;
        }
        Ok(())
    }

    /// The reference of folder `path` beneath the restore folder, created (with the restore folder and every
    /// folder above it) the first time a file needs it.
    async fn folder_for(
        &self,
        target: FileTarget<'_>,
        restore_folder: &str,
        path: &[String],
        folders: &mut HashMap<Vec<String>, String>,
    ) -> Result<String, FetchError> {
        for depth in 0..=path.len() {
            let key = path[..depth].to_vec();
            if folders.contains_key(&key) {
                continue;
            }
            let (parent, name) = match depth {
                0 => (target.writes.root.to_owned(), restore_folder),
                _ => (
                    folders[&path[..depth - 1]].clone(),
                    path[depth - 1].as_str(),
                ),
            };
            let created = self.connector.create_folder(target, &parent, name).await?;
            folders.insert(key, created);
        }
        Ok(folders[path].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_folder_names_its_snapshot_and_its_job_and_an_export_gets_its_extension() {
        let end = DateTime::parse_from_rfc3339("2026-11-30T21:04:02Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            restore_folder_name(end, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 1),
            "ListBackup restore 2026-11-30 21.04.02 UTC 2e3f4a5b"
        );
        assert!(
            restore_folder_name(end, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 2)
                .ends_with("2e3f4a5b (attempt 2)")
        );
        let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        assert_eq!(upload_name("Plan", Some(docx)), "Plan.docx");
        assert_eq!(upload_name("Plan.DOCX", Some(docx)), "Plan.DOCX");
        assert_eq!(upload_name("a.bin", None), "a.bin");
    }
}
