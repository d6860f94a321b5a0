//! `GET /jobs/{id}/events`: a job's live progress as Server-Sent Events, until the job ends.
//!
//! Two sources, because neither alone is enough: the worker's fine progress on core NATS
//! (`<prefix>.progress.<jobId>`, every page, but not persisted: lost when nobody listens, absent when NATS is
//! down) and the job read model (every state change, but only as often as the projector catches up). The
//! stream starts with the job as it is, forwards every NATS message, and re-reads the job every
//! [`POLL_INTERVAL`], sending it whenever it changed; the job's end is always taken from the read model, so a
//! lost NATS message can delay a display but never leave a client waiting for an end that already happened.
//!
//! Events: `job` (a [`JobView`]), `progress` (the worker's message: `jobId, attempt, dataTypesDone,
//! dataTypesTotal, currentDataType, records, bytes, pages, at`) and, last, `end` (the finished [`JobView`]).

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{get, web, HttpResponse};
use futures::StreamExt;
use listbackup_domain::ErrorChain;
use listbackup_projections::read_models::jobs::{self as read, JobView};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{NoParams, PathId, QueryParams};
use crate::state::AppState;
use listbackup_domain::JobId;
use listbackup_domain::ResourceKind;

/// How often the job's read model is looked at while the stream is open (DESIGN's progress interval).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Live progress of a job as `text/event-stream`, ending with an `end` event once the job succeeded, failed
/// or was cancelled (at once for a job already ended).
#[utoipa::path(tag = "jobs", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, content_type = "text/event-stream",
               description = "events `job`, `progress` and a last `end`"),
              (status = 404, body = crate::error::Problem)))]
#[get("/jobs/{id}/events")]
pub async fn stream(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<JobId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let id = path.get()?;
    // Subscribe before the first read: a message published in between is then not lost.
    let progress = match &state.nats {
        Some(nats) => nats
            .subscribe(format!("{}.progress.{id}", state.nats_prefix))
            .await
            .map_err(|err| {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "progress subscription failed"
                )
            })
            .ok(),
        None => None,
    };
    let first = current(&state, &principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Job))?;
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let frame = receiver.recv().await?;
        Some((Ok::<_, actix_web::Error>(frame), receiver))
    });
    let account_id = principal.account_id.clone();
    actix_web::rt::spawn(follow(state, account_id, id, first, progress, sender));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        // Intermediaries must neither cache nor buffer a live stream.
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

async fn current(
    state: &AppState,
    account_id: &str,
    job_id: JobId,
) -> Result<Option<JobView>, ApiError> {
    let client = state.db.get().await?;
    Ok(read::get(&client, account_id, job_id).await?)
}

fn frame(event: &str, data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(data.len() + event.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    // JSON has no raw newlines, so one `data:` line carries the whole payload.
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

fn job_frame(event: &str, job: &JobView) -> Bytes {
    frame(event, &serde_json::to_vec(job).unwrap_or_default())
}

/// Feeds the client's stream until the job ends or the client goes away (a send then fails).
async fn follow(
    state: web::Data<AppState>,
    account_id: String,
    job_id: JobId,
    first: JobView,
    mut progress: Option<async_nats::Subscriber>,
    client: mpsc::Sender<Bytes>,
) {
    if first.has_ended() {
        let _ = client.send(job_frame("end", &first)).await;
        return;
    }
    if client.send(job_frame("job", &first)).await.is_err() {
        return;
    }
    let mut last = first;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.tick().await;
    loop {
        let sent = tokio::select! {
            message = next_progress(&mut progress) => match message {
                Some(message) => client.send(frame("progress", &message.payload)).await,
                // The subscription ended (NATS connection closed): carry on with the read model alone.
                None => {
                    progress = None;
                    Ok(())
                }
            },
            _ = poll.tick() => {
                match current(&state, &account_id, job_id).await {
                    Ok(Some(job)) if job.has_ended() => {
                        let _ = client.send(job_frame("end", &job)).await;
                        return;
                    }
                    Ok(Some(job)) if job != last => {
                        let sent = client.send(job_frame("job", &job)).await;
                        last = job;
                        sent
                    }
                    Ok(_) => Ok(()),
                    // A database hiccup skips one look; the next tick tries again.
                    Err(_) => Ok(()),
                }
            },
            _ = keep_alive.tick() => client.send(Bytes::from_static(b": keep-alive\n\n")).await,
            // The client went away: stop reading for it at once, not at the next send.
            _ = client.closed() => return,
            // The service is stopping: the client reconnects to another instance (or this one, restarted).
            _ = state.closing_streams.cancelled() => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The next NATS progress message, or never when there is no subscription.
async fn next_progress(
    progress: &mut Option<async_nats::Subscriber>,
) -> Option<async_nats::Message> {
    match progress {
        Some(subscriber) => subscriber.next().await,
        None => std::future::pending().await,
    }
}
