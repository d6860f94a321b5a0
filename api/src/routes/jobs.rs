//! `/jobs` and the sync routes that queue them. A job is queued by its source's `SyncRequested`; workers take
//! it from there (the Job aggregate), and the job read model follows both.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::Utc;

use listbackup_commands::sources::SyncRequest;
use listbackup_commands::{group_sync, restores};
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::job::manifest::MANIFEST_FILE as MANIFEST;
use listbackup_domain::job::retry::{plan_retry, ConnectionEvidence, EndedJob, RetryRefused};
use listbackup_domain::job::{JobKind, JobStatus, JobTrigger, RestoreMode, RestoreRequest};
use listbackup_domain::ErrorChain;
use listbackup_projections::read_models::connections as read_connections;
use listbackup_projections::read_models::jobs::{self as read, JobFilter, JobView};
use listbackup_projections::read_models::sources::SourceView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::consistency::{read_back, wait_for};
use crate::error::{ApiError, FieldError};
use crate::extract::{
    if_match, page_request, resource_id, JsonBody, NoBody, NoParams, PathId, QueryParams,
};
use crate::routes::metadata;
use crate::routes::sources::id_filter;
use crate::state::AppState;
use listbackup_domain::{ErrorKind, ResourceKind};
use listbackup_domain::{JobId, SourceGroupId, SourceId};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateJob {
    /// A live source of the account.
    #[schema(value_type = String, format = Uuid)]
    pub source_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `queued`, `running`, `succeeded`, `partial`, `failed` or `cancelled`.
    pub status: Option<String>,
    pub source_id: Option<String>,
    pub group_id: Option<String>,
    /// `backup` or `restore`.
    pub kind: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSyncResponse {
    /// One queued job per active member that had no job queued or running.
    pub jobs: Vec<JobView>,
}

/// Queues a job of the source ([`listbackup_commands::source_sync`]) and reads it back once projected.
async fn queue(
    state: &AppState,
    meta: &EventMetadata,
    source_id: &SourceId,
    sync: SyncRequest,
    expected: impl Into<listbackup_commands::ExpectedVersion>,
) -> Result<JobView, ApiError> {
    let job_id = JobId::new();
    let committed = listbackup_commands::source_sync::queue_sync(
        &state.sources,
        &state.jobs,
        meta,
        source_id,
        job_id,
        sync,
        expected,
    )
    .await?;
    read_back_job(state, meta, source_id, &job_id, committed.version).await
}

/// Reads job `job_id`, queued by source `source_id` at `version`, once projected.
async fn read_back_job(
    state: &AppState,
    meta: &EventMetadata,
    source_id: &SourceId,
    job_id: &JobId,
    version: u64,
) -> Result<JobView, ApiError> {
    // The job's row is written in the same projection step as the source's new version.
    wait_for::<SourceView>(state, *source_id, version).await?;
    let client = state.db.get().await?;
    read::get(&client, &meta.account_id, *job_id)
        .await?
        .ok_or_else(|| ApiError::from_unexpected("a queued job is missing"))
}

/// 202 with a job just queued, and its address in `Location`.
fn accepted(view: JobView) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/jobs/{}", view.job_id),
        ))
        .json(view)
}

/// Queues a backup of the source → 202 with the `queued` job (`Location: /jobs/{jobId}`); 409 while it has a
/// queued or running job; with `If-Match`, 412 unless the source is at that version.
#[utoipa::path(tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 202, body = JobView, headers(("Location" = String, description = "/jobs/{jobId}"))),
              (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem),
              (status = 412, body = crate::error::Problem)))]
#[post("/sources/{id}/sync")]
pub async fn sync_source(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let view = queue(
        &state,
        &metadata(&req, &principal),
        &id,
        SyncRequest::manual(),
        expected,
    )
    .await?;
    Ok(accepted(view))
}

/// `POST /sources/{id}/restores`: what to restore.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRestore {
    /// The job id of a succeeded or partial backup of this source (not expired).
    pub snapshot: String,
    /// Writable data types of the source's platform (`GET /platforms`: `writable`), at least one.
    pub data_types: Vec<String>,
    /// Only these records, each named by its key in the snapshot (the `recordId` of the snapshot and version
    /// routes: `<list_id>/<id>` for a Mailchimp member, `sha256:<hex>` for a record without an id) or by its
    /// id where one record of the data type has it; absent: every record of the data types. An id naming
    /// several records, or none, is reported in the report as `cannot_restore` with the reason.
    pub record_ids: Option<Vec<String>>,
    /// `missing`: re-create what was deleted; `overwrite`: also put back what changed.
    pub mode: RestoreMode,
    /// Plan only: the report says per record what a real run would do; nothing is written. Default false.
    #[serde(default)]
    pub dry_run: bool,
}

/// Queues a restore of a backup into the source's platform → 202 with the restore job (`kind: restore`,
/// `queued`; `Location: /jobs/{jobId}`). The workers run it like a backup (progress, `POST /jobs/{id}/cancel`,
/// `GET /jobs/{id}/events`); its report (one NDJSON line per record: old id → new id, action, reason or
/// error) is its file `report.ndjson.gz` (`GET /jobs/{id}/files`). 422 naming `snapshot` when it is not a
/// readable backup of this source, naming `dataTypes` when one is not writable or, unless the run is dry,
/// when the source's OAuth connection was not granted their `writeScopes` (`GET /platforms`; the problem
/// names the scopes: reconnect with `{"writeAccess": true}`); 409 while the source has a queued or running
/// job. Owners and managers.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = CreateRestore,
    responses((status = 202, body = JobView, headers(("Location" = String, description = "/jobs/{jobId}"))),
              (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
#[post("/sources/{id}/restores")]
pub async fn create_restore(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<CreateRestore>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let snapshot: JobId = body
        .snapshot
        .parse()
        .map_err(|_| ApiError::validation(vec![FieldError::new("snapshot", "is not a job id")]))?;
    let meta = metadata(&req, &principal);
    let request = RestoreRequest {
        snapshot,
        data_types: body.data_types,
        record_ids: body.record_ids,
        mode: body.mode,
        dry_run: body.dry_run,
    };
    // A snapshot that is not a readable backup of the source, or a data type the platform cannot write: the
    // request is well-formed but cannot be carried out (422, naming the field).
    let queued = restores::request_restore(&state.sources, &state.jobs, &meta, &id, request)
        .await
        .map_err(|err| match err {
            CommandError::Domain {
                kind: ErrorKind::Invalid,
                ..
            } => ApiError::from(err).with_status_422(),
            err => ApiError::from(err),
        })?;
    let view = read_back_job(&state, &meta, &id, &queued.job_id, queued.committed.version).await?;
    Ok(accepted(view))
}

/// Same as `POST /sources/{id}/sync` (202, `Location: /jobs/{jobId}`).
#[utoipa::path(tag = "jobs", security(("bearer" = [])), request_body = CreateJob,
    responses((status = 202, body = JobView, headers(("Location" = String, description = "/jobs/{jobId}"))),
              (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/jobs")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<CreateJob>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let source_id = body.source_id.parse::<SourceId>().map_err(|_| {
        ApiError::validation(vec![FieldError::new("sourceId", "is not a source id")])
    })?;
    let view = queue(
        &state,
        &metadata(&req, &principal),
        &source_id,
        SyncRequest::manual(),
        None,
    )
    .await?;
    Ok(accepted(view))
}

/// Queues one job per active member of the group (trigger `group`). A member that already has a queued or
/// running job is left alone: that job is its backup.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 202, body = GroupSyncResponse), (status = 404, body = crate::error::Problem)))]
#[post("/source-groups/{id}/sync")]
pub async fn sync_group(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceGroupId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let meta = metadata(&req, &principal);
    let queued = group_sync::sync_group(
        &state.source_groups,
        &state.sources,
        &state.jobs,
        &meta,
        &id,
    )
    .await?;
    let mut jobs = Vec::with_capacity(queued.len());
    for job in queued {
        jobs.push(
            read_back_job(
                &state,
                &meta,
                &job.source_id,
                &job.job_id,
                job.committed.version,
            )
            .await?,
        );
    }
    Ok(HttpResponse::Accepted().json(GroupSyncResponse { jobs }))
}

/// The account's jobs, newest first.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = JobList), (status = 400, body = crate::error::Problem)))]
#[get("/jobs")]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let mut errors = Vec::new();
    let status = params
        .status
        .as_deref()
        .and_then(|s| match s.parse::<JobStatus>() {
            Ok(status) => Some(status),
            Err(unknown) => {
                errors.push(FieldError::new("status", unknown.to_string()));
                None
            }
        });
    let source_id = id_filter(params.source_id, "sourceId", &mut errors);
    let group_id = id_filter(params.group_id, "groupId", &mut errors);
    let kind = params.kind.as_deref().and_then(|k| match k {
        "backup" => Some(JobKind::Backup),
        "restore" => Some(JobKind::Restore),
        _ => {
            errors.push(FieldError::new("kind", "must be backup or restore"));
            None
        }
    });
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = JobFilter {
        status,
        source_id,
        group_id,
        kind,
    };
    let client = state.db.get().await?;
    let page = read::list(&client, &principal.account_id, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(JobList {
        jobs: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One job.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), crate::routes::audit::GetParams),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem)))]
#[get("/jobs/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<JobId>,
    QueryParams(params): QueryParams<crate::routes::audit::GetParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let as_of = params.as_of(&principal)?;
    let id = path.get()?;
    if let Some(point) = as_of {
        return crate::routes::audit::resource_as_of(
            &state,
            &principal,
            crate::routes::audit::Resource::Job(id),
            point,
        )
        .await;
    }
    let client = state.db.get().await?;
    let view = read::get(&client, &principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Job))?;
    Ok(HttpResponse::Ok().json(view))
}

/// One stored file of a job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFile {
    /// `customers.ndjson.gz`, …, `manifest.json`, and for a file platform each file's bytes as
    /// `{dataType}/{id}`.
    pub name: String,
    /// The data type a data file holds; `null` for the manifest.
    pub data_type: Option<String>,
    /// Records of a data file; `null` for the manifest and a file's bytes.
    pub records: Option<u64>,
    /// Size of what a download gives (gzipped for data files, as the platform sent them for a file's bytes);
    /// `null` for the manifest. Files are stored encrypted (issue 13 §2): the stored object is the
    /// ciphertext the manifest's `encryption` describes, a few bytes larger.
    pub bytes: Option<u64>,
    /// Hex sha256 of what a download gives (the plaintext).
    pub sha256: Option<String>,
    /// A file's bytes: the file's id on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFileList {
    pub files: Vec<JobFile>,
}

/// The job's stored files, as its manifest lists them: a succeeded job's, or a partial job's (the data types
/// that were backed up; the manifest lists the others as failed). Other jobs have none.
async fn stored_files(
    state: &AppState,
    principal: &Principal,
    id: &JobId,
) -> Result<(JobView, Vec<JobFile>), ApiError> {
    let client = state.db.get().await?;
    let job = read::get(&client, &principal.account_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Job))?;
    drop(client);
    let Some(store) = &state.job_files else {
        return Err(ApiError::new(
            crate::error::ErrorCode::Unavailable,
            "backup storage is not configured",
        ));
    };
    if !matches!(job.status, JobStatus::Succeeded | JobStatus::Partial) {
        return Ok((job, Vec::new()));
    }
    if let Some(expired_at) = job.expired_at {
        return Err(expired(expired_at));
    }
    let location = listbackup_commands::artifacts::JobLocation {
        account_id: &principal.account_id,
        source_id: job.source_id,
        job_id: job.job_id,
    };
    let manifest = store
        .manifest(location)
        .await
        .map_err(ApiError::from_unexpected)?;
    // A job whose manifest is gone (retention): no files.
    let Some(manifest) = manifest else {
        return Ok((job, Vec::new()));
    };
    let files = manifest.files.into_iter().map(|f| JobFile {
        name: f.name,
        data_type: Some(f.data_type),
        records: Some(f.records),
        bytes: Some(f.bytes),
        sha256: Some(f.sha256),
        id: None,
    });
    // A file platform's file contents (`{dataType}/{key}`), with their size and sha256.
    let contents = manifest.contents.into_iter().map(|c| JobFile {
        name: c.name,
        data_type: Some(c.data_type),
        records: None,
        bytes: Some(c.bytes),
        sha256: Some(c.sha256),
        id: Some(c.id),
    });
    let mut stored: Vec<JobFile> = files.chain(contents).collect();
    if !stored.is_empty() {
        stored.push(JobFile {
            name: MANIFEST.into(),
            data_type: None,
            records: None,
            bytes: None,
            sha256: job.manifest_sha256.clone(),
            id: None,
        });
    }
    Ok((job, stored))
}

/// The 410 of a backup's files once its account is erased.
fn erased_account(at: chrono::DateTime<Utc>) -> ApiError {
    ApiError::new(
        crate::error::ErrorCode::Gone,
        format!(
            "the account was erased at {}: its backups' data key is destroyed and their files cannot be \
             decrypted",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
}

/// The 410 of a backup's files once retention has expired it.
fn expired(at: chrono::DateTime<Utc>) -> ApiError {
    ApiError::new(
        crate::error::ErrorCode::Gone,
        format!(
            "the backup expired at {} (retention): its files were deleted",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
}

/// The job's stored files: one gzip NDJSON per data type, and the manifest. 410 once retention has expired
/// the backup.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = JobFileList), (status = 404, body = crate::error::Problem),
              (status = 410, body = crate::error::Problem)))]
#[get("/jobs/{id}/files")]
pub async fn list_files(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let (_, stored) = stored_files(&state, &principal, &path.get()?).await?;
    Ok(HttpResponse::Ok().json(JobFileList { files: stored }))
}

/// Downloads one stored file (data files are gzip NDJSON), decrypted on the fly when it is stored encrypted
/// (issue 13 §2): the bytes and sha256 are the ones `GET /jobs/{id}/files` lists. 410 once retention has
/// expired the backup, or once the account is erased (its data key destroyed).
#[utoipa::path(tag = "jobs", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"),
              (status = 404, body = crate::error::Problem),
              (status = 410, body = crate::error::Problem)))]
// `{name:.*}`: a file's bytes are named `{dataType}/{key}`.
#[get("/jobs/{id}/files/{name:.*}")]
pub async fn download(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let (raw_id, name) = path.into_inner();
    let id: JobId = resource_id(&raw_id, ResourceKind::Job)?;
    let (job, stored) = stored_files(&state, &principal, &id).await?;
    // Only names the manifest lists: never a path a client makes up.
    if !stored.iter().any(|f| f.name == name) {
        return Err(ApiError::not_found(ResourceKind::JobFile));
    }
    let Some(store) = &state.job_files else {
        return Err(ApiError::not_found(ResourceKind::JobFile));
    };
    let location = listbackup_commands::artifacts::JobLocation {
        account_id: &principal.account_id,
        source_id: job.source_id,
        job_id: job.job_id,
    };
    // An erased account's backups are ciphertext whose key is destroyed (issue 13 §2).
    let client = state.db.get().await?;
    let erased = listbackup_commands::data_keys::erased_at(&client, &principal.account_id).await;
    drop(client);
    if let Some(at) = erased.map_err(ApiError::from_unexpected)? {
        return Err(erased_account(at));
    }
    let mut stream = store
        .open(location, &name)
        .await
        .map_err(ApiError::from_unexpected)?
        .ok_or_else(|| ApiError::not_found(ResourceKind::JobFile))?;
    // The first piece before the answer's status: a stored file that does not decrypt from its start (every
    // file smaller than one 64 KiB chunk fails here, whole) is a problem, not a 200 cut short. A later chunk
    // that does not authenticate ends the body early instead: it is never sent.
    let first = futures::StreamExt::next(&mut stream).await;
    if let Some(Err(err)) = &first {
        tracing::error!(job_id = %job.job_id, file = %name, error = %ErrorChain(&**err), "a stored file cannot be read back");
        return Err(ApiError::new(
            crate::error::ErrorCode::Internal,
            format!(
                "the stored file {name} cannot be read back: it was damaged or altered since it was stored \
                 (POST /jobs/{}/verify checks every file of the backup)",
                job.job_id
            ),
        ));
    }
    let stream = futures::StreamExt::chain(futures::stream::iter(first), stream);
    let content_type = if name == MANIFEST {
        "application/json"
    } else if name.contains('/') {
        // A file's bytes, as the platform sent them.
        "application/octet-stream"
    } else {
        "application/gzip"
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                name.rsplit('/').next().unwrap_or(&name)
            ),
        ))
        .streaming(futures::TryStreamExt::map_err(stream, |e| {
            actix_web::error::ErrorInternalServerError(e)
        })))
}

/// Runs a failed, partial or cancelled job again as a new job (`trigger: retry`, `retryOf` = this job) → 202
/// with the new job. A partial job, or a failed one whose data types all failed, runs only its failed data
/// types (those the source still selects; the new job's `dataTypes`); a cancelled job, or one that failed as a
/// whole, runs the source's. 409 for a job that has not ended badly, a failure no retry can fix (the rule in
/// `listbackup_domain::job::retry`, README "Retrying a job"; `detail` says why), failed data types all
/// deselected since, or while the source has another job queued or running. The new job's address is in
/// `Location`.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 202, body = JobView, headers(("Location" = String, description = "/jobs/{jobId}"))),
              (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)))]
#[post("/jobs/{id}/retry")]
pub async fn retry(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let job = {
        let client = state.db.get().await?;
        read::get(&client, &principal.account_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(ResourceKind::Job))?
    };
    // The read model is enough here: an ended job's outcome is final, so a job seen so stays so.
    let plan = {
        let client = state.db.get().await?;
        let connection = connection_evidence(&client, &principal.account_id, &job).await?;
        let failed_data_types = job.failed_data_types();
        let ended = EndedJob {
            status: job.status,
            failure: job.error.as_ref(),
            failed_data_types: &failed_data_types,
            data_type_count: job.data_types.len(),
        };
        plan_retry(ended, connection).map_err(|refused| match refused {
            RetryRefused::NotEnded(_) => ApiError::conflict(format!(
                "only a failed, partial or cancelled job can be retried; this one is {}",
                job.status
            )),
            RetryRefused::NothingToFix(why) => ApiError::conflict(why),
        })?
    };
    let sync = SyncRequest {
        trigger: JobTrigger::Retry,
        retry_of: Some(id),
        group_id: None,
        data_types: plan.data_types,
    };
    let view = queue(
        &state,
        &metadata(&req, &principal),
        &job.source_id,
        sync,
        None,
    )
    .await?;
    Ok(accepted(view))
}

/// What the retry rule needs of the job's connection: whether it is usable, and whether its credentials were
/// replaced, reauthorized or tested successfully after the job ended.
async fn connection_evidence(
    client: &deadpool_postgres::Client,
    account_id: &str,
    job: &JobView,
) -> Result<ConnectionEvidence, ApiError> {
    let Some(connection) = read_connections::get(client, account_id, job.connection_id).await?
    else {
        return Ok(ConnectionEvidence::default());
    };
    let fixed_at = read_connections::credentials_fixed_at(client, job.connection_id).await?;
    Ok(ConnectionEvidence {
        active: connection.status == "active",
        fixed_since_job_ended: match (fixed_at, job.finished_at) {
            (Some(fixed), Some(ended)) => fixed > ended,
            _ => false,
        },
    })
}

/// Cancels a job: a queued one at once (it never starts), a running one within one progress interval (its
/// worker stops, discards what it wrote, and confirms) → 202 with the job; 409 for a job that has ended.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 202, body = JobView), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)))]
#[post("/jobs/{id}/cancel")]
pub async fn cancel(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let job = {
        let client = state.db.get().await?;
        read::get(&client, &principal.account_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(ResourceKind::Job))?
    };
    // The aggregate refuses a job that has ended (it may have ended after the read above).
    let committed = state
        .jobs
        .request_cancel(&metadata(&req, &principal), id, job.source_id)
        .await?;
    let view = job_at(&state, &principal, id, committed.version).await?;
    Ok(HttpResponse::Accepted().json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlaceHold {
    /// Why the backup must be kept (1 to 500 characters), recorded with who placed the hold.
    pub reason: String,
}

/// Reads the job back once the projection has reached `version` of its stream.
async fn job_at(
    state: &AppState,
    principal: &Principal,
    id: JobId,
    version: u64,
) -> Result<JobView, ApiError> {
    read_back::<JobView>(state, &principal.account_id, id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Job))
}

/// The job of this account that holds a backup, from the read model: another account's is the one 404, a
/// job that is not succeeded or partial a 409 (a queued job has no stream for the aggregate to answer).
async fn owned_job(
    state: &AppState,
    principal: &Principal,
    id: JobId,
) -> Result<JobView, ApiError> {
    let client = state.db.get().await?;
    let job = read::get(&client, &principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Job))?;
    if !matches!(job.status, JobStatus::Succeeded | JobStatus::Partial) {
        return Err(ApiError::conflict(format!(
            "the job is {}: only a succeeded or partial job holds a backup",
            job.status
        )));
    }
    Ok(job)
}

/// Puts the backup under a hold: retention does not expire it until the hold is released. Recorded as
/// `BackupHeld` with who (the caller) and why (`reason`) → 200 with the job (`hold`). 409 for a job that
/// holds no backup (not succeeded or partial), 410 once it has expired.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)), request_body = PlaceHold,
    responses((status = 200, body = JobView), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
              (status = 410, body = crate::error::Problem)))]
#[post("/jobs/{id}/hold")]
pub async fn place_hold(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<PlaceHold>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    owned_job(&state, &principal, id).await?;
    let committed = state
        .jobs
        .place_hold(&metadata(&req, &principal), id, &body.reason)
        .await?;
    Ok(HttpResponse::Ok().json(job_at(&state, &principal, id, committed.version).await?))
}

/// Releases the backup's hold (`BackupHoldReleased`, with who): retention applies to it again → 200 with
/// the job. Releasing a backup that is not held changes nothing.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 410, body = crate::error::Problem)))]
#[delete("/jobs/{id}/hold")]
pub async fn release_hold(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    owned_job(&state, &principal, id).await?;
    let committed = state
        .jobs
        .release_hold(&metadata(&req, &principal), id)
        .await?;
    Ok(HttpResponse::Ok().json(job_at(&state, &principal, id, committed.version).await?))
}

/// What `POST /jobs/{id}/verify` found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    #[schema(value_type = String, format = Uuid)]
    pub job_id: String,
    /// `verified` (every file matches the manifest, and the manifest the job's `manifestSha256`) or
    /// `corrupted`.
    pub status: String,
    /// Files read back and their bytes (verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The first file that does not match (corrupted): a file's name as `GET /jobs/{id}/files` lists it,
    /// or `manifest.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Its sha256 as read now, or `missing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

/// Re-reads the backup's stored files, checks each against the manifest's sha256 and the manifest against
/// the hash its job recorded, and records `BackupVerified` or `BackupCorrupted` → 200 with the result (a
/// corrupted backup is a finding, not an error). 409 for a job that holds no backup, 410 once expired.
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = VerifyResult), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 410, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)))]
#[post("/jobs/{id}/verify")]
pub async fn verify(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    owned_job(&state, &principal, id).await?;
    let Some(verifier) = &state.verifier else {
        return Err(ApiError::new(
            crate::error::ErrorCode::Unavailable,
            "backup storage is not configured",
        ));
    };
    let (outcome, committed) = verifier.verify(&metadata(&req, &principal), id).await?;
    // Read-your-writes: the job's `verification` shows this outcome to a GET that follows.
    job_at(&state, &principal, id, committed.version).await?;
    let result = match outcome {
        listbackup_domain::job::Verification::Verified { files, bytes } => VerifyResult {
            job_id: id.to_string(),
            status: "verified".into(),
            files: Some(files),
            bytes: Some(bytes),
            file: None,
            expected: None,
            found: None,
        },
        listbackup_domain::job::Verification::Corrupted {
            file,
            expected,
            found,
        } => VerifyResult {
            job_id: id.to_string(),
            status: "corrupted".into(),
            files: None,
            bytes: None,
            file: Some(file),
            expected: Some(expected),
            found: Some(found),
        },
    };
    Ok(HttpResponse::Ok().json(result))
}
