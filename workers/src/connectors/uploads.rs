//! Putting a file platform's files back (restore, issue 13 §5): creating a folder and uploading one file's
//! bytes, as the data type's [`FileWrites`] declares them (`listbackup_domain::platform::writes`); nothing
//! here is about one platform. Requests go through the connection's rate budget with its auth, like every
//! other request of the connector.
//!
//! **Streamed.** An upload's body is the file's bytes as the backup store hands them over (decrypted chunk by
//! chunk), wrapped between the multipart framing when the platform wants one; its `Content-Length` is known
//! beforehand (the framing plus the file's size in the manifest), so memory stays flat whatever the size.
//! Because a body that was sent cannot be sent again, an upload retries by opening the stored file again:
//! 429 (`Retry-After`), 5xx and dropped connections are retried up to the policy's bounds. A single-request
//! upload starts again from the first byte. Large files resume as each platform documents: Drive's resumable
//! upload asks how far it got and sends the rest; a Dropbox session's chunk applied before its answer was
//! lost is recognised by the offset the session answers; a Box part sent again is the same part, which Box
//! takes again.
//!
//! **Answers lost after the platform took the upload.** Where the platform declares how
//! ([`UploadRequest::lost_answer`](listbackup_domain::platform::writes::UploadRequest::lost_answer),
//! Dropbox's `files/get_metadata`), the file is looked up at its path before
//! a single request is sent again, and when a session's finish finds the session closed (committed before
//! its answer was lost): the file there is the upload when its size and content hash
//! ([`ContentHash`], computed as the bytes stream out, memory flat) are those of the bytes sent. Otherwise a
//! single request is sent again, which may leave a second copy (Dropbox names it `name (1)`), never an
//! overwrite; a closed session fails.

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use listbackup_domain::platform::listing::scalar_text;
use listbackup_domain::platform::writes::{
    fill_template, ContentHash, FileWrites, LargeUpload, UploadBody, UploadLookup,
};
use listbackup_domain::platform::{ContentHost, ErrorMatch, Platform};
use serde_json::Value;

use super::content::ascii_json;
use super::transport::{BodyError, Call, Counters};
use super::{apply_auth, choose_auth, Connector, FetchError, RateBudget, RetryPolicy};

/// A stored file's bytes, as the backup store streams them back (decrypted).
pub type UploadStream = BoxStream<'static, Result<Bytes, listbackup_commands::BoxError>>;

/// Where files go: the connection and the data type's declaration.
#[derive(Debug, Clone, Copy)]
pub struct FileTarget<'a> {
    /// Keys the rate budget, shared with the connection's fetches.
    pub connection_id: &'a str,
    pub platform: &'static Platform,
    pub writes: &'a FileWrites,
    pub credentials: &'a BTreeMap<String, String>,
}

impl<'a> FileTarget<'a> {
    /// A [`Call`] to this target's platform with its credentials, over `http`, paced by `budget` and retried
    /// by `policy`.
    fn call<'b>(
        &self,
        http: &'b reqwest::Client,
        budget: &'b RateBudget,
        policy: &'b RetryPolicy,
    ) -> Call<'b>
    where
        'a: 'b,
    {
        Call::new(http, budget, policy, self.platform, self.credentials)
    }
}

/// One file to upload.
#[derive(Debug, Clone, Copy)]
pub struct FileUpload<'a> {
    /// The folder it goes in, as [`FolderRequest::new_ref`](listbackup_domain::platform::writes::FolderRequest)
    /// names it (an id; Dropbox: a path).
    pub parent: &'a str,
    pub name: &'a str,
    /// Its media type (Drive's metadata takes it; the others ignore it).
    pub mime_type: &'a str,
    /// Its size in bytes: what the stored file streams back, exactly.
    pub size: u64,
}

/// An upload session's requests (see [`LargeUpload::Session`]).
struct Session {
    header: &'static str,
    /// start, append, finish.
    paths: [&'static str; 3],
    chunk: usize,
    /// A chunk sent at an offset the session is not at, and where its answer names the session's.
    wrong_offset: (ErrorMatch, &'static str),
    /// A finish sent to a session no longer open.
    closed: ErrorMatch,
}

/// How an upload whose answer was lost is recognised
/// ([`UploadRequest::lost_answer`](listbackup_domain::platform::writes::UploadRequest::lost_answer)): the
/// lookup, and the upload's template values (`{name}`, `{parent}`) that name its path.
#[derive(Clone, Copy)]
struct Recognise<'a> {
    lookup: UploadLookup,
    values: &'a [(&'a str, &'a str)],
}

/// What an upload's path holds, looked up after its answer was lost.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// The file sent: its id.
    Ours(String),
    /// Nothing.
    Nothing,
    /// Something else: what differs.
    Other(String),
}

/// A multipart body's framing around the file's bytes.
struct Framing {
    content_type: String,
    before: Bytes,
    after: Bytes,
}

impl Connector {
    /// Creates folder `name` in folder `parent` (a reference as [`FileWrites::root`] or an earlier answer
    /// names it) and returns the new folder's reference. A name in use is the platform's 4xx
    /// ([`FetchError::Platform`], not retryable): nothing existing is touched.
    pub async fn create_folder(
        &self,
        target: FileTarget<'_>,
        parent: &str,
        name: &str,
    ) -> Result<String, FetchError> {
        let request = target.writes.create_folder;
        let body = fill_template(request.body, &[("name", name), ("parent", parent)])
            .map_err(|err| template_error("create_folder.body", err))?
            .to_string();
        let url = self.host_url(target, request.host, request.path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let call = target.call(&self.http, &budget, &self.retry);
        let mut counters = Counters::default();
        let credentials = target.credentials;
        let platform = target.platform;
        call.send(
            &mut counters,
            |http| {
                let builder = http
                    .post(&url)
                    .query(request.query)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                let builder = platform
                    .api_headers
                    .iter()
                    .fold(builder, |b, (name, value)| b.header(*name, *value));
                apply_auth(builder, auth, credentials).map_err(FetchError::from)
            },
            |response| {
                let answer: Value = serde_json::from_slice(&response.body)
                    .map_err(|err| BodyError::from_json(err, &response))?;
                answer
                    .pointer(request.new_ref)
                    .and_then(scalar_text)
                    .map(|text| text.into_owned())
                    .ok_or_else(|| {
                        BodyError::Invalid(FetchError::InvalidResponse(format!(
                            "the platform's answer to a folder's creation names no folder at {}",
                            request.new_ref
                        )))
                    })
            },
        )
        .await
    }

    /// Uploads one file's bytes (`open` streams them, again for each attempt) and returns the new file's id.
    /// A file over the declared single-request limit without a declared large-file mechanism is refused
    /// before any request ([`FetchError::Unsupported`]); a file the platform refuses is
    /// [`FetchError::Platform`] with `retryable: false`.
    pub async fn upload_file<F, Fut>(
        &self,
        target: FileTarget<'_>,
        file: FileUpload<'_>,
        open: F,
    ) -> Result<String, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let upload = target.writes.upload;
        let values = [
            ("name", file.name),
            ("parent", file.parent),
            ("mimeType", file.mime_type),
        ];
        let metadata = fill_template(upload.metadata, &values)
            .map_err(|err| template_error("upload.metadata", err))?;
        let max_bytes = self
            .upload_request_max
            .map_or(upload.max_bytes, |max| max.min(upload.max_bytes));
        if file.size > max_bytes {
            return match upload.large {
                Some(LargeUpload::Resumable { path, query }) => {
                    self.upload_resumable(target, (path, query), &metadata, file, &open)
                        .await
                }
                Some(LargeUpload::Session {
                    start,
                    append,
                    finish,
                    chunk_bytes,
                    wrong_offset,
                    correct_offset,
                    closed,
                }) => {
                    let UploadBody::ArgHeader(header) = upload.body else {
                        return Err(FetchError::InvalidResponse(
                            "the catalog declares an upload session without an argument header"
                                .into(),
                        ));
                    };
                    let session = Session {
                        header,
                        paths: [start, append, finish],
                        chunk: chunk_bytes.min(max_bytes).max(1) as usize,
                        wrong_offset: (wrong_offset, correct_offset),
                        closed,
                    };
                    let recognise = upload.lost_answer.map(|lookup| Recognise {
                        lookup,
                        values: &values,
                    });
                    self.upload_session(target, session, (&metadata, file, recognise), &open)
                        .await
                }
                Some(LargeUpload::Parts {
                    create,
                    session,
                    part,
                    commit,
                }) => {
                    let args = fill_template(session, &values)
                        .map_err(|err| template_error("upload.large.session", err))?;
                    self.upload_parts(target, (create, part, commit), args, file, &open)
                        .await
                }
                None => Err(too_large(target.platform)),
            };
        }
        let url = self.host_url(target, upload.host, upload.path)?;
        let (framing, arg) = match upload.body {
            UploadBody::ArgHeader(header) => (None, Some((header, ascii_json(&metadata)))),
            UploadBody::FormData {
                metadata: field,
                file: file_field,
            } => {
                let boundary = boundary();
                let before = format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\
                     Content-Type: application/json\r\n\r\n{metadata}\r\n--{boundary}\r\n\
                     Content-Disposition: form-data; name=\"{file_field}\"; filename=\"{}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n",
                    form_filename(file.name)
                );
                (
                    Some(Framing {
                        content_type: format!("multipart/form-data; boundary={boundary}"),
                        before: Bytes::from(before),
                        after: Bytes::from(format!("\r\n--{boundary}--\r\n")),
                    }),
                    None,
                )
            }
            UploadBody::Related => {
                let boundary = boundary();
                let before = format!(
                    "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
                     --{boundary}\r\nContent-Type: {}\r\n\r\n",
                    header_safe(file.mime_type)
                );
                (
                    Some(Framing {
                        content_type: format!("multipart/related; boundary={boundary}"),
                        before: Bytes::from(before),
                        after: Bytes::from(format!("\r\n--{boundary}--\r\n")),
                    }),
                    None,
                )
            }
        };
        let length = file.size
            + framing
                .as_ref()
                .map_or(0, |f| (f.before.len() + f.after.len()) as u64);
        let content_type = framing.as_ref().map_or_else(
            || "application/octet-stream".to_owned(),
            |f| f.content_type.clone(),
        );
        let new_id = upload.new_id;
        let recognise = upload.lost_answer.map(|lookup| Recognise {
            lookup,
            values: &values,
        });
        self.send_streamed(
            target,
            (&open, file.size, recognise),
            |http, stream| {
                let body = match &framing {
                    None => reqwest::Body::wrap_stream(stream),
                    Some(framing) => reqwest::Body::wrap_stream(
                        futures::stream::iter([Ok(framing.before.clone())])
                            .chain(stream)
                            .chain(futures::stream::iter([Ok(framing.after.clone())])),
                    ),
                };
                let mut builder = http
                    .post(&url)
                    .query(upload.query)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                    .header(reqwest::header::CONTENT_LENGTH, length)
                    .body(body);
                if let Some((header, value)) = &arg {
                    builder = builder.header(*header, value.as_str());
                }
                builder
            },
            move |answer| id_at(&answer, new_id),
        )
        .await
    }

    /// A resumable upload (Drive, <https://developers.google.com/drive/api/guides/manage-uploads#resumable>):
    /// the session first, then every byte in one `PUT` to its URI.
    ///
    /// An interrupted `PUT` (a dropped connection, a 5xx, a rate limit) is not sent again whole: after the
    /// policy's wait, an empty `PUT` with `Content-Range: bytes */<size>` asks how far it got: `308 Resume
    /// Incomplete` with `Range: bytes=0-<last>` (without `Range`: nothing), or `200`/`201` with the file when
    /// every byte had arrived. The next `PUT` sends the rest, `Content-Range: bytes <last+1>-<size-1>/<size>`,
    /// from the stored file opened again, the bytes Drive holds dropped as they stream by. A `404` is a
    /// session that expired: a new one, from the first byte. Interruptions and expired sessions together are
    /// bounded by the policy's attempts, rate limits by its own bound.
    async fn upload_resumable<F, Fut>(
        &self,
        target: FileTarget<'_>,
        (path, query): (&'static str, &'static [(&'static str, &'static str)]),
        metadata: &Value,
        file: FileUpload<'_>,
        open: &F,
    ) -> Result<String, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let size = file.size;
        let mime_type = header_safe(file.mime_type);
        let mut session = self
            .resumable_session(target, (path, query), metadata, &mime_type, size)
            .await?;
        // The bytes Drive holds.
        let mut held = 0u64;
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let put = self
                .resumable_put(target, &session, &mime_type, size, held, open)
                .await;
            let interrupted = match put {
                Ok(Resumed::Done(id)) => return Ok(id),
                // Drive says itself how far it got.
                Ok(Resumed::Holds(bytes)) => {
                    held = bytes;
                    None
                }
                Err(err) => Some(err),
            };
            let wait = match &interrupted {
                Some(FetchError::RateLimited { retry_after }) => {
                    rate_limited += 1;
                    let wait = retry_after.unwrap_or_else(|| self.retry.backoff(rate_limited));
                    if rate_limited > self.retry.max_rate_limited
                        || wait > self.retry.max_retry_after
                    {
                        return Err(FetchError::RateLimited {
                            retry_after: *retry_after,
                        });
                    }
                    wait
                }
                Some(FetchError::Gone { .. }) | None => {
                    failures += 1;
                    if failures >= self.retry.max_attempts {
                        return Err(interrupted.unwrap_or_else(|| {
                            FetchError::InvalidResponse(format!(
                                "Drive's upload session stays incomplete ({held} of {size} bytes)"
                            ))
                        }));
                    }
                    self.retry.backoff(failures)
                }
                Some(err) if err.retryable() => {
                    failures += 1;
                    if failures >= self.retry.max_attempts {
                        return Err(interrupted.expect("an interruption"));
                    }
                    self.retry.backoff(failures)
                }
                Some(_) => return Err(interrupted.expect("an interruption")),
            };
            tokio::time::sleep(wait).await;
            let expired = match interrupted {
                Some(FetchError::Gone { .. }) => true,
                None => false,
                // How far did it get?
                Some(_) => match self.resumable_status(target, &session, size).await {
                    Ok(Resumed::Done(id)) => return Ok(id),
                    Ok(Resumed::Holds(bytes)) => {
                        held = bytes;
                        false
                    }
                    Err(FetchError::Gone { .. }) => true,
                    Err(err) => return Err(err),
                },
            };
            if expired {
                session = self
                    .resumable_session(target, (path, query), metadata, &mime_type, size)
                    .await?;
                held = 0;
            }
        }
    }

    /// Opens a resumable upload session (the metadata `POST`ed to `path?query`) and returns its URI.
    async fn resumable_session(
        &self,
        target: FileTarget<'_>,
        (path, query): (&'static str, &'static [(&'static str, &'static str)]),
        metadata: &Value,
        mime_type: &str,
        size: u64,
    ) -> Result<url::Url, FetchError> {
        let upload = target.writes.upload;
        let url = self.host_url(target, upload.host, path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let credentials = target.credentials;
        let body = metadata.to_string();
        let call = Call::new(
            &self.http,
            &budget,
            &self.retry,
            target.platform,
            credentials,
        );
        let mut counters = Counters::default();
        let location = call
            .send(
                &mut counters,
                |http| {
                    let builder = http
                        .post(&url)
                        .query(query)
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/json; charset=UTF-8",
                        )
                        .header("X-Upload-Content-Type", mime_type)
                        .header("X-Upload-Content-Length", size)
                        .body(body.clone());
                    apply_auth(builder, auth, credentials).map_err(FetchError::from)
                },
                |response| {
                    response
                        .headers
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            BodyError::Invalid(FetchError::InvalidResponse(
                                "the platform opened an upload session without a Location".into(),
                            ))
                        })
                },
            )
            .await?;
        url::Url::parse(&location)
            .or_else(|_| url::Url::parse(&url).and_then(|base| base.join(&location)))
            .map_err(|_| {
                FetchError::InvalidResponse("the upload session's Location is not a URL".into())
            })
    }

    /// One `PUT` of the bytes from `held` on to a resumable upload session, in one attempt: the file, how
    /// far Drive got (a `308`), or why it failed (a `404`: [`FetchError::Gone`]).
    async fn resumable_put<F, Fut>(
        &self,
        target: FileTarget<'_>,
        session: &url::Url,
        mime_type: &str,
        size: u64,
        held: u64,
        open: &F,
    ) -> Result<Resumed, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let new_id = target.writes.upload.new_id;
        let stream = skip_bytes(open().await?, held);
        self.stream_once(
            target,
            stream,
            (Some(&[]), &[INCOMPLETE]),
            |http, stream| {
                let builder = http
                    .put(session.clone())
                    .header(reqwest::header::CONTENT_TYPE, mime_type)
                    .header(reqwest::header::CONTENT_LENGTH, size - held)
                    .body(reqwest::Body::wrap_stream(stream));
                if held == 0 {
                    builder
                } else {
                    builder.header(
                        reqwest::header::CONTENT_RANGE,
                        format!("bytes {held}-{}/{size}", size - 1),
                    )
                }
            },
            |response| resumed(response, size, new_id),
        )
        .await
    }

    /// Asks a resumable upload session how far it got (an empty `PUT` with `Content-Range: bytes
    /// */<size>`), retried by the transport.
    async fn resumable_status(
        &self,
        target: FileTarget<'_>,
        session: &url::Url,
        size: u64,
    ) -> Result<Resumed, FetchError> {
        let new_id = target.writes.upload.new_id;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let call = Call {
            gone: Some(&[]),
            answers: &[INCOMPLETE],
            ..target.call(&self.content_http, &budget, &self.retry)
        };
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let builder = http
                    .put(session.clone())
                    .header(reqwest::header::CONTENT_RANGE, format!("bytes */{size}"))
                    .header(reqwest::header::CONTENT_LENGTH, 0)
                    .body(Bytes::new());
                let builder = target
                    .platform
                    .api_headers
                    .iter()
                    .fold(builder, |b, (name, value)| b.header(*name, *value));
                apply_auth(builder, auth, target.credentials).map_err(FetchError::from)
            },
            |response| resumed(response, size, new_id),
        )
        .await
    }

    /// An upload session (Dropbox): the stored file read once, chunk by chunk, each chunk one request
    /// (retried by the transport like any small request: it is held in memory), then the finish.
    ///
    /// A retried request the platform had applied before its answer was lost is answered with the offset
    /// the session is at ([`LargeUpload::Session`]'s `wrong_offset`): at the end of the chunk, it was applied
    /// and the upload carries on; before it, the upload goes on from there (the stored file is opened again
    /// and read up to that offset); past it (bytes never sent), the upload fails rather than guess. Going
    /// back is bounded by the policy's attempts.
    ///
    /// A finish answered `closed` (sent again after its answer was lost: the session is committed) is the
    /// file at the commit's path when `recognise` finds there the size and content hash of the bytes sent
    /// (hashed as they are read); anything else fails the upload.
    async fn upload_session<F, Fut>(
        &self,
        target: FileTarget<'_>,
        session: Session,
        (commit, file, recognise): (&Value, FileUpload<'_>, Option<Recognise<'_>>),
        open: &F,
    ) -> Result<String, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let upload = target.writes.upload;
        let [start, append, finish] = session.paths;
        let mut stream = open().await?;
        let mut pending = bytes::BytesMut::new();
        // The bytes the session holds.
        let mut offset = 0u64;
        // Where the stored file is read, and the hash of every byte read so far.
        let mut read_at = 0u64;
        let mut hasher = recognise.map(|r| ContentHasher::new(r.lookup.hash_kind));
        let mut session_id: Option<String> = None;
        let mut ended = false;
        let mut rewinds = 0u32;
        loop {
            // The next chunk: `session.chunk` bytes, or what is left.
            while !ended && pending.len() < session.chunk {
                match stream.next().await {
                    Some(Ok(bytes)) => {
                        if let Some(hasher) = &mut hasher {
                            hasher.saw(read_at, &bytes);
                        }
                        read_at += bytes.len() as u64;
                        pending.extend_from_slice(&bytes);
                    }
                    Some(Err(err)) => return Err(FetchError::Sink(err)),
                    None => ended = true,
                }
            }
            let take = pending.len().min(session.chunk);
            let chunk = pending.split_to(take).freeze();
            // Every byte is in the session: the finish, with no bytes.
            let finishing = chunk.is_empty() && session_id.is_some();
            let (path, arg) = match &session_id {
                None => (start, serde_json::json!({"close": false})),
                Some(id) if finishing => (
                    finish,
                    serde_json::json!({"cursor": {"session_id": id, "offset": offset}, "commit": commit}),
                ),
                Some(id) => (
                    append,
                    serde_json::json!({"cursor": {"session_id": id, "offset": offset}, "close": false}),
                ),
            };
            let end = offset + chunk.len() as u64;
            let sent = self
                .send_chunk(
                    target,
                    upload.host,
                    path,
                    (session.header, &arg),
                    chunk,
                    (session.wrong_offset, finishing.then_some(session.closed)),
                )
                .await?;
            match sent {
                Chunk::Taken(answer) if finishing => return id_at(&answer, upload.new_id),
                // Committed by a finish whose answer was lost, or gone: is the file there the one sent?
                Chunk::Closed => {
                    let (Some(recognise), Some(hasher)) = (recognise, &hasher) else {
                        return Err(FetchError::InvalidResponse(
                            "the upload session was closed before its finish was answered, and the \
                             platform declares no way to look the file up"
                                .into(),
                        ));
                    };
                    let hash = hasher.hash(offset).ok_or_else(|| {
                        FetchError::InvalidResponse(format!(
                            "the upload session was closed before its finish was answered, and the \
                             {offset} bytes sent were not all hashed to recognise the file"
                        ))
                    })?;
                    return match self
                        .look_up_upload(target, recognise, offset, &hash)
                        .await?
                    {
                        Found::Ours(id) => Ok(id),
                        Found::Nothing => Err(FetchError::InvalidResponse(format!(
                            "the upload session was closed before its finish was answered, and no \
                             file {} is in {}",
                            file.name, file.parent
                        ))),
                        Found::Other(why) => Err(FetchError::InvalidResponse(format!(
                            "the upload session was closed before its finish was answered, and the \
                             file {} in {} is not the one sent: {why}",
                            file.name, file.parent
                        ))),
                    };
                }
                Chunk::Taken(answer) => {
                    if session_id.is_none() {
                        session_id = Some(
                            answer
                                .get("session_id")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .ok_or_else(|| {
                                    FetchError::InvalidResponse(
                                        "the platform opened an upload session without a session_id"
                                            .into(),
                                    )
                                })?,
                        );
                    }
                    offset = end;
                }
                // Applied by an attempt whose answer was lost.
                Chunk::At(at) if at == end && !finishing => offset = end,
                // The session holds less than was sent: on from there.
                Chunk::At(at) if at < end => {
                    rewinds += 1;
                    if rewinds >= self.retry.max_attempts {
                        return Err(FetchError::InvalidResponse(format!(
                            "the upload session keeps going back (to {at} of {end} bytes sent)"
                        )));
                    }
                    stream = skip_bytes(open().await?, at);
                    pending.clear();
                    ended = false;
                    offset = at;
                    read_at = at;
                }
                Chunk::At(at) => {
                    return Err(FetchError::InvalidResponse(format!(
                        "the upload session says it holds {at} bytes, but {end} were sent"
                    )))
                }
            }
        }
    }

    /// A chunked upload session (Box, [`LargeUpload::Parts`]): the session, then the stored file read once,
    /// part by part in the session's `part_size` (each part held while sent, retried by the transport like
    /// any small request), then the commit (a `202 Accepted` waited out by its `Retry-After`). A session
    /// that fails is aborted (`DELETE` on the part path), best effort.
    async fn upload_parts<F, Fut>(
        &self,
        target: FileTarget<'_>,
        (create, part, commit): (&'static str, &'static str, &'static str),
        mut args: Value,
        file: FileUpload<'_>,
        open: &F,
    ) -> Result<String, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let upload = target.writes.upload;
        if let Value::Object(map) = &mut args {
            map.insert("file_size".into(), Value::from(file.size));
        }
        let session = self
            .upload_request(target, reqwest::Method::POST, create, &[], args.to_string())
            .await?;
        let session_id = session
            .get("id")
            .and_then(scalar_text)
            .map(|text| text.into_owned())
            .filter(|id| {
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
            .ok_or_else(|| {
                FetchError::InvalidResponse(
                    "the platform opened an upload session without a usable id".into(),
                )
            })?;
        let part_size = session
            .get("part_size")
            .and_then(Value::as_u64)
            .filter(|size| (1..=PART_SIZE_MAX).contains(size))
            .ok_or_else(|| {
                FetchError::InvalidResponse(format!(
                    "the platform's upload session names no part_size from 1 to {PART_SIZE_MAX} bytes"
                ))
            })? as usize;
        let part_path = part.replace("{id}", &session_id);
        let sent = self
            .send_parts(target, &part_path, part_size, file.size, open)
            .await;
        let committed = match sent {
            Ok((parts, whole)) => {
                let commit_path = commit.replace("{id}", &session_id);
                let body = serde_json::json!({ "parts": parts }).to_string();
                let digest = [("Digest", format!("sha={whole}"))];
                self.commit_parts(target, &commit_path, &digest, body).await
            }
            Err(err) => Err(err),
        };
        match committed {
            Ok(answer) => id_at(&answer, upload.new_id),
            Err(err) => {
                // The parts sent are of no use any more; the platform drops the session when it expires anyway.
                let _ = self
                    .upload_request(
                        target,
                        reqwest::Method::DELETE,
                        &part_path,
                        &[],
                        String::new(),
                    )
                    .await;
                Err(err)
            }
        }
    }

    /// Sends the stored file's parts and returns them as the platform answered them, with the base64 SHA-1
    /// of the whole file.
    async fn send_parts<F, Fut>(
        &self,
        target: FileTarget<'_>,
        part_path: &str,
        part_size: usize,
        size: u64,
        open: &F,
    ) -> Result<(Vec<Value>, String), FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        use base64::Engine;
        use sha1::Digest;
        let mut stream = open().await?;
        let mut whole = sha1::Sha1::new();
        let mut pending = bytes::BytesMut::new();
        let mut offset = 0u64;
        let mut parts = Vec::new();
        let mut ended = false;
        while offset < size {
            while !ended && pending.len() < part_size {
                match stream.next().await {
                    Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                    Some(Err(err)) => return Err(FetchError::Sink(err)),
                    None => ended = true,
                }
            }
            let take = pending.len().min(part_size);
            let chunk = pending.split_to(take).freeze();
            let last = offset + chunk.len() as u64;
            if chunk.is_empty() || last > size || (chunk.len() < part_size && last != size) {
                return Err(stored_size_mismatch(size));
            }
            whole.update(&chunk);
            let digest =
                base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&chunk));
            let headers = [
                (
                    "Content-Range",
                    format!("bytes {offset}-{}/{size}", last - 1),
                ),
                ("Digest", format!("sha={digest}")),
            ];
            let answer = self
                .upload_bytes(target, reqwest::Method::PUT, part_path, &headers, chunk)
                .await?;
            let part = answer
                .get("part")
                .cloned()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    FetchError::InvalidResponse(
                        "the platform's answer to a part names no part".into(),
                    )
                })?;
            parts.push(part);
            offset = last;
        }
        if !pending.is_empty() || (!ended && stream.next().await.is_some()) {
            return Err(stored_size_mismatch(size));
        }
        let whole = base64::engine::general_purpose::STANDARD.encode(whole.finalize());
        Ok((parts, whole))
    }

    /// Commits a chunked upload session: a `202 Accepted` (parts still being processed) is asked again after
    /// its `Retry-After`, within the policy's bounds for rate limits.
    async fn commit_parts(
        &self,
        target: FileTarget<'_>,
        path: &str,
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<Value, FetchError> {
        let mut waits = 0u32;
        loop {
            let answer = self
                .upload_call(
                    target,
                    reqwest::Method::POST,
                    path,
                    headers,
                    Bytes::from(body.clone()),
                    true,
                )
                .await?;
            let retry_after = match answer {
                Pending::Done(answer) => return Ok(answer),
                Pending::Wait(retry_after) => retry_after,
            };
            waits += 1;
            let wait = retry_after.unwrap_or_else(|| self.retry.backoff(waits));
            if waits > self.retry.max_rate_limited || wait > self.retry.max_retry_after {
                return Err(FetchError::RateLimited { retry_after });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A JSON request (`body`, may be empty) to the upload's host, answered JSON (an empty answer is `null`).
    async fn upload_request(
        &self,
        target: FileTarget<'_>,
        method: reqwest::Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<Value, FetchError> {
        self.upload_answer(target, method, path, headers, Bytes::from(body))
            .await
    }

    /// Bytes (`application/octet-stream`) to the upload's host, answered JSON.
    async fn upload_bytes(
        &self,
        target: FileTarget<'_>,
        method: reqwest::Method,
        path: &str,
        headers: &[(&'static str, String)],
        bytes: Bytes,
    ) -> Result<Value, FetchError> {
        let mut headers = headers.to_vec();
        headers.push(("Content-Type", "application/octet-stream".to_owned()));
        self.upload_answer(target, method, path, &headers, bytes)
            .await
    }

    /// [`Self::upload_call`] for a request whose answer is final (a 202 is not waited for: only a commit is).
    async fn upload_answer(
        &self,
        target: FileTarget<'_>,
        method: reqwest::Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<Value, FetchError> {
        match self
            .upload_call(target, method, path, headers, body, false)
            .await?
        {
            Pending::Done(answer) => Ok(answer),
            Pending::Wait(_) => unreachable!("upload_call answers Wait only when asked to"),
        }
    }

    /// One request to the upload's host, retried by the transport (the body is held); `accepted`: a 202 is
    /// [`Pending::Wait`] rather than an answer.
    async fn upload_call(
        &self,
        target: FileTarget<'_>,
        method: reqwest::Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        accepted: bool,
    ) -> Result<Pending, FetchError> {
        let upload = target.writes.upload;
        let url = self.host_url(target, upload.host, path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let call = target.call(&self.content_http, &budget, &self.retry);
        let json_body = !headers.iter().any(|(name, _)| *name == "Content-Type");
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let mut builder = http
                    .request(method.clone(), &url)
                    .header(reqwest::header::ACCEPT, "application/json");
                if json_body && !body.is_empty() {
                    builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                for (name, value) in headers {
                    builder = builder.header(*name, value.as_str());
                }
                let builder = target
                    .platform
                    .api_headers
                    .iter()
                    .fold(builder.body(body.clone()), |b, (name, value)| {
                        b.header(*name, *value)
                    });
                apply_auth(builder, auth, target.credentials).map_err(FetchError::from)
            },
            |response| {
                if accepted && response.status == reqwest::StatusCode::ACCEPTED {
                    return Ok(Pending::Wait(super::transport::retry_after(
                        &response.headers,
                        std::time::SystemTime::now(),
                    )));
                }
                if response.body.is_empty() {
                    return Ok(Pending::Done(Value::Null));
                }
                serde_json::from_slice(&response.body)
                    .map(Pending::Done)
                    .map_err(|err| BodyError::from_json(err, &response))
            },
        )
        .await
    }

    /// One request of an upload session: `chunk` as the body, `arg` in the argument header. The platform's
    /// answer to a wrong offset (`wrong_offset`: the rule, the pointer to the session's offset) is the
    /// offset it names; with `closed`, its answer to a session no longer open is [`Chunk::Closed`].
    async fn send_chunk(
        &self,
        target: FileTarget<'_>,
        host: ContentHost,
        path: &str,
        (header, arg): (&str, &Value),
        chunk: Bytes,
        ((wrong_offset, correct_offset), closed): ((ErrorMatch, &'static str), Option<ErrorMatch>),
    ) -> Result<Chunk, FetchError> {
        let url = self.host_url(target, host, path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let answers: Vec<ErrorMatch> = std::iter::once(wrong_offset).chain(closed).collect();
        let call = Call {
            answers: &answers,
            ..target.call(&self.content_http, &budget, &self.retry)
        };
        let arg = ascii_json(arg);
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let builder = http
                    .post(&url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(header, arg.as_str())
                    .body(chunk.clone());
                apply_auth(builder, auth, target.credentials).map_err(FetchError::from)
            },
            |response| {
                if !response.status.is_success() {
                    let answer: Value = serde_json::from_slice(&response.body)
                        .map_err(|err| BodyError::from_json(err, &response))?;
                    if closed.is_some_and(|c| c.matches(response.status.as_u16(), &answer)) {
                        return Ok(Chunk::Closed);
                    }
                    return answer
                        .pointer(correct_offset)
                        .and_then(Value::as_u64)
                        .map(Chunk::At)
                        .ok_or_else(|| {
                            BodyError::Invalid(FetchError::InvalidResponse(format!(
                                "the platform's answer to a wrong offset names none at {correct_offset}"
                            )))
                        });
                }
                // `append_v2` answers `null`.
                if response.body.is_empty() {
                    return Ok(Chunk::Taken(Value::Null));
                }
                serde_json::from_slice(&response.body)
                    .map(Chunk::Taken)
                    .map_err(|err| BodyError::from_json(err, &response))
            },
        )
        .await
    }

    /// Sends a request whose body is the stored file (`open` streams it, `size` bytes), once per attempt:
    /// the transport's retries cannot send a streamed body twice, so each retry opens the file again here.
    ///
    /// An attempt that failed after it may have been served (a dropped connection, a damaged answer, a
    /// 5xx; not a 429 or another 4xx) is, with `recognise`, looked up after the wait: the file at its path
    /// with the size and content hash of the bytes sent (hashed as they streamed out) is the upload, and is
    /// not sent again. Nothing there, or another file: sent again.
    async fn send_streamed<F, Fut>(
        &self,
        target: FileTarget<'_>,
        (open, size, recognise): (&F, u64, Option<Recognise<'_>>),
        build: impl Fn(&reqwest::Client, UploadStream) -> reqwest::RequestBuilder,
        decode: impl Fn(Value) -> Result<String, FetchError>,
    ) -> Result<String, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let hasher = recognise.map(|r| {
            std::sync::Arc::new(std::sync::Mutex::new(ContentHasher::new(
                r.lookup.hash_kind,
            )))
        });
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let stream = open().await?;
            let stream = match &hasher {
                Some(hasher) => hashed(stream, hasher.clone()),
                None => stream,
            };
            let sent = self
                .stream_once(target, stream, (None, &[]), &build, |response| {
                    let answer: Value = serde_json::from_slice(&response.body)
                        .map_err(|err| BodyError::from_json(err, &response))?;
                    decode(answer).map_err(BodyError::Invalid)
                })
                .await;
            let err = match sent {
                Ok(id) => return Ok(id),
                Err(err) => err,
            };
            // Whether the platform may have taken it, and whether this was the last attempt.
            let (wait, served, last) = match &err {
                FetchError::RateLimited { retry_after } => {
                    rate_limited += 1;
                    let wait = retry_after.unwrap_or_else(|| self.retry.backoff(rate_limited));
                    if rate_limited > self.retry.max_rate_limited
                        || wait > self.retry.max_retry_after
                    {
                        return Err(err);
                    }
                    (wait, false, false)
                }
                err if err.retryable() => {
                    failures += 1;
                    (
                        self.retry.backoff(failures),
                        true,
                        failures >= self.retry.max_attempts,
                    )
                }
                _ => return Err(err),
            };
            let look = recognise.zip(hasher.as_ref()).filter(|_| served);
            if last && look.is_none() {
                return Err(err);
            }
            // Also before a last look: an upload being committed as its answer was lost has settled.
            tokio::time::sleep(wait).await;
            if let Some((recognise, hasher)) = look {
                // Every byte went out, or the platform cannot hold the file.
                let hash = hasher.lock().expect("not poisoned").hash(size);
                if let Some(hash) = hash {
                    if let Found::Ours(id) =
                        self.look_up_upload(target, recognise, size, &hash).await?
                    {
                        return Ok(id);
                    }
                }
            }
            if last {
                return Err(err);
            }
        }
    }

    /// What the path of an upload (`recognise`) holds: the file sent (its `size` and content `hash`), nothing,
    /// or another file. The lookup is retried by the transport like any small request.
    async fn look_up_upload(
        &self,
        target: FileTarget<'_>,
        recognise: Recognise<'_>,
        size: u64,
        hash: &str,
    ) -> Result<Found, FetchError> {
        let lookup = recognise.lookup;
        let body = fill_template(lookup.body, recognise.values)
            .map_err(|err| template_error("upload.lost_answer.body", err))?
            .to_string();
        let url = self.host_url(target, lookup.host, lookup.path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let answers = [lookup.not_found];
        let call = Call {
            answers: &answers,
            ..target.call(&self.http, &budget, &self.retry)
        };
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let builder = http
                    .post(&url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                let builder = target
                    .platform
                    .api_headers
                    .iter()
                    .fold(builder, |b, (name, value)| b.header(*name, *value));
                apply_auth(builder, auth, target.credentials).map_err(FetchError::from)
            },
            |response| {
                // The one answer besides a 2xx: `not_found`.
                if !response.status.is_success() {
                    return Ok(Found::Nothing);
                }
                let answer: Value = serde_json::from_slice(&response.body)
                    .map_err(|err| BodyError::from_json(err, &response))?;
                Ok(judge(&answer, &lookup, size, hash))
            },
        )
        .await
    }

    /// One attempt of a request whose body is `stream` (the caller retries, with the file opened again),
    /// through the rate budget with the connection's auth; `(gone, answers)` as in [`Call`].
    async fn stream_once<T>(
        &self,
        target: FileTarget<'_>,
        stream: UploadStream,
        (gone, answers): (Option<&[ErrorMatch]>, &[ErrorMatch]),
        build: impl Fn(&reqwest::Client, UploadStream) -> reqwest::RequestBuilder,
        decode: impl Fn(super::transport::Response) -> Result<T, BodyError>,
    ) -> Result<T, FetchError> {
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        // One request: the transport cannot send a streamed body twice.
        let once = RetryPolicy {
            max_attempts: 1,
            max_rate_limited: 0,
            ..self.retry
        };
        let call = Call {
            gone,
            answers,
            ..target.call(&self.content_http, &budget, &once)
        };
        let slot = std::sync::Mutex::new(Some(stream));
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let stream = slot.lock().expect("not poisoned").take().ok_or_else(|| {
                    FetchError::Network {
                        what: "an upload's body was sent",
                        source: None,
                    }
                })?;
                let builder = build(http, stream);
                let builder = target
                    .platform
                    .api_headers
                    .iter()
                    .fold(builder, |b, (name, value)| b.header(*name, *value));
                apply_auth(builder, auth, target.credentials).map_err(FetchError::from)
            },
            decode,
        )
        .await
    }

    fn host_url(
        &self,
        target: FileTarget<'_>,
        host: ContentHost,
        path: &str,
    ) -> Result<String, FetchError> {
        let base = self
            .endpoints
            .host_base(target.platform, host, target.credentials)?;
        Ok(format!("{base}{path}"))
    }
}

/// The largest part a chunked upload session may ask for (Box's are 8 to 128 MiB by the file's size): the
/// memory one upload holds.
const PART_SIZE_MAX: u64 = 256 * 1024 * 1024;

/// Drive's answer to a resumable upload that has not every byte yet: `308 Resume Incomplete`.
const INCOMPLETE: ErrorMatch = ErrorMatch::status(308);

/// Where a resumable upload stands.
enum Resumed {
    /// Every byte arrived: the new file's id.
    Done(String),
    /// Drive holds this many bytes, from the first.
    Holds(u64),
}

/// Reads a resumable upload's answer to a `PUT`: `308` with `Range: bytes=0-<last>` (none: no byte yet), or
/// the file (`200`, `201`) with its id at `new_id`.
fn resumed(
    response: super::transport::Response,
    size: u64,
    new_id: &str,
) -> Result<Resumed, BodyError> {
    if response.status.as_u16() == INCOMPLETE.status {
        let Some(range) = response.headers.get(reqwest::header::RANGE) else {
            return Ok(Resumed::Holds(0));
        };
        let last = range
            .to_str()
            .ok()
            .and_then(|range| range.trim().strip_prefix("bytes=0-"))
            .and_then(|last| last.parse::<u64>().ok())
            // A `308` with every byte would be an upload that cannot finish.
            .filter(|last| last.saturating_add(1) < size)
            .ok_or_else(|| {
                BodyError::Invalid(FetchError::InvalidResponse(format!(
                    "Drive's upload session answered an incomplete upload with Range {range:?}, \
                     not bytes=0-<last> short of {size} bytes"
                )))
            })?;
        return Ok(Resumed::Holds(last + 1));
    }
    let answer: Value = serde_json::from_slice(&response.body)
        .map_err(|err| BodyError::from_json(err, &response))?;
    id_at(&answer, new_id)
        .map(Resumed::Done)
        .map_err(BodyError::Invalid)
}

/// An upload session's answer to a chunk.
enum Chunk {
    /// Taken: the platform's answer (`null` when empty).
    Taken(Value),
    /// Sent at an offset the session is not at: the session holds this many bytes.
    At(u64),
    /// The session is not open any more (a finish: committed, or expired).
    Closed,
}

/// Whether `answer`, the lookup's answer for an upload's path, is the file sent (`size` bytes whose
/// content hash is `hash`).
fn judge(answer: &Value, lookup: &UploadLookup, size: u64, hash: &str) -> Found {
    if !lookup.kind.holds(answer) {
        return Found::Other("it is not a file".into());
    }
    match answer.pointer(lookup.size).and_then(Value::as_u64) {
        Some(found) if found == size => {}
        Some(found) => return Found::Other(format!("it holds {found} bytes, not {size}")),
        None => return Found::Other(format!("its answer names no size at {}", lookup.size)),
    }
    match answer.pointer(lookup.hash).and_then(Value::as_str) {
        Some(found) if found.eq_ignore_ascii_case(hash) => {}
        Some(_) => return Found::Other("its content hash differs".into()),
        None => return Found::Other(format!("its answer names no hash at {}", lookup.hash)),
    }
    match id_at(answer, lookup.new_id) {
        Ok(id) => Found::Ours(id),
        Err(err) => Found::Other(err.to_string()),
    }
}

/// A file's content hash as its platform computes it ([`ContentHash`]), fed the bytes as they are read:
/// each byte once, in order, however often it is read again (a retry opens the stored file from its first
/// byte, a session going back reads from an offset). Memory: one block's digest state.
#[derive(Clone)]
struct ContentHasher {
    block_bytes: u64,
    /// The bytes hashed, from the first.
    seen: u64,
    /// Bytes past `seen` were read before those at `seen`: no hash.
    gap: bool,
    block: sha2::Sha256,
    block_len: u64,
    whole: sha2::Sha256,
}

impl ContentHasher {
    fn new(kind: ContentHash) -> Self {
        use sha2::Digest;
        let ContentHash::Sha256OfBlocks { block_bytes } = kind;
        Self {
            block_bytes: block_bytes.max(1),
            seen: 0,
            gap: false,
            block: sha2::Sha256::new(),
            block_len: 0,
            whole: sha2::Sha256::new(),
        }
    }

    /// `bytes`, the file's from offset `at`: those not hashed yet are.
    fn saw(&mut self, at: u64, bytes: &[u8]) {
        use sha2::Digest;
        if at > self.seen {
            self.gap = true;
            return;
        }
        let skip = (self.seen - at).min(bytes.len() as u64) as usize;
        let mut rest = &bytes[skip..];
        while !rest.is_empty() {
            let room = (self.block_bytes - self.block_len).min(rest.len() as u64) as usize;
            self.block.update(&rest[..room]);
            self.block_len += room as u64;
            self.seen += room as u64;
            rest = &rest[room..];
            if self.block_len == self.block_bytes {
                let block = std::mem::replace(&mut self.block, sha2::Sha256::new());
                self.whole.update(block.finalize());
                self.block_len = 0;
            }
        }
    }

    /// The lower-case hex hash of the file, when exactly its `size` bytes were all seen.
    fn hash(&self, size: u64) -> Option<String> {
        use sha2::Digest;
        if self.gap || self.seen != size {
            return None;
        }
        let mut whole = self.whole.clone();
        if self.block_len > 0 {
            whole.update(self.block.clone().finalize());
        }
        Some(hex::encode(whole.finalize()))
    }
}

/// `stream`, the stored file from its first byte, its bytes shown to `hasher` as they go by.
fn hashed(
    stream: UploadStream,
    hasher: std::sync::Arc<std::sync::Mutex<ContentHasher>>,
) -> UploadStream {
    let mut at = 0u64;
    stream
        .map(move |item| {
            if let Ok(bytes) = &item {
                hasher.lock().expect("not poisoned").saw(at, bytes);
                at += bytes.len() as u64;
            }
            item
        })
        .boxed()
}

/// `stream` without its first `skip` bytes, dropped as they stream by (memory stays one piece).
fn skip_bytes(stream: UploadStream, skip: u64) -> UploadStream {
    let mut left = skip;
    stream
        .filter_map(move |item| {
            let item = match item {
                Ok(mut bytes) if left > 0 => {
                    let cut = left.min(bytes.len() as u64);
                    left -= cut;
                    let rest = bytes.split_off(cut as usize);
                    (!rest.is_empty()).then_some(Ok(rest))
                }
                other => Some(other),
            };
            futures::future::ready(item)
        })
        .boxed()
}

/// A commit's answer: the file, or wait (`Retry-After`, if given) and ask again.
enum Pending {
    Done(Value),
    Wait(Option<std::time::Duration>),
}

/// The stored file streamed back more or fewer bytes than its manifest says.
fn stored_size_mismatch(size: u64) -> FetchError {
    FetchError::Sink(
        format!("the stored file does not hold the {size} bytes its manifest names").into(),
    )
}

/// The new file's id at `pointer` of an upload's answer.
fn id_at(answer: &Value, pointer: &str) -> Result<String, FetchError> {
    answer
        .pointer(pointer)
        .and_then(scalar_text)
        .map(|text| text.into_owned())
        .ok_or_else(|| {
            FetchError::InvalidResponse(format!(
                "the platform's answer to an upload names no file at {pointer}"
            ))
        })
}

/// A file over the single-request limit, on a platform whose large-file mechanism ListBackup lacks.
fn too_large(platform: &Platform) -> FetchError {
    FetchError::Unsupported {
        platform: platform.id.to_owned(),
        data_type: "files".to_owned(),
        reason:
            "the file is over the size one upload request may carry, and ListBackup does not use \
                 this platform's chunked uploads yet",
    }
}

fn template_error(what: &str, err: serde_json::Error) -> FetchError {
    FetchError::Undecodable {
        context: format!("the catalog's {what} template is not JSON"),
        source: err.into(),
    }
}

/// A multipart boundary no file's framing holds: random.
fn boundary() -> String {
    format!("listbackup-{}", uuid::Uuid::new_v4().simple())
}

/// A value fit for a header or a multipart header line: no control characters.
fn header_safe(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// A file name in a `Content-Disposition` `filename="…"`, escaped as the HTML form encoding does (`"` as
/// `%22`, CR and LF as `%0D` and `%0A`).
fn form_filename(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn skipping_drops_the_first_bytes_across_pieces() {
        let pieces: Vec<Result<Bytes, listbackup_commands::BoxError>> =
            [&b"abc"[..], b"defg", b"hi"]
                .into_iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect();
        let skipped: Vec<Bytes> = skip_bytes(futures::stream::iter(pieces).boxed(), 5)
            .map(|piece| piece.unwrap())
            .collect()
            .await;
        assert_eq!(
            skipped,
            [Bytes::from_static(b"fg"), Bytes::from_static(b"hi")]
        );
    }

    fn answer(
        status: u16,
        range: Option<&str>,
        body: &'static str,
    ) -> super::super::transport::Response {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(range) = range {
            headers.insert(reqwest::header::RANGE, range.parse().unwrap());
        }
        super::super::transport::Response {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn a_resumable_uploads_answer_says_how_far_it_got() {
        let holds = |status, range| match resumed(answer(status, range, ""), 100, "/id") {
            Ok(Resumed::Holds(n)) => Some(n),
            _ => None,
        };
        assert_eq!(holds(308, Some("bytes=0-41")), Some(42));
        // No `Range`: no byte yet.
        assert_eq!(holds(308, None), Some(0));
        // Every byte (or more) is not an incomplete upload; nor is a range that does not start at 0.
        assert_eq!(holds(308, Some("bytes=0-99")), None);
        assert_eq!(holds(308, Some("bytes=5-41")), None);
        assert!(matches!(
            resumed(answer(200, None, r#"{"id":"f1"}"#), 100, "/id"),
            Ok(Resumed::Done(id)) if id == "f1"
        ));
    }

    /// Dropbox's content hash of `bytes` in blocks of `block` bytes, written out as its reference page does.
    fn by_hand(bytes: &[u8], block: usize) -> String {
        use sha2::Digest;
        let digests: Vec<u8> = bytes
            .chunks(block)
            .flat_map(|b| sha2::Sha256::digest(b).to_vec())
            .collect();
        hex::encode(sha2::Sha256::digest(&digests))
    }

    #[test]
    fn the_content_hash_is_dropboxs_whatever_pieces_the_bytes_come_in() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let kind = ContentHash::Sha256OfBlocks { block_bytes: 4096 };
        // Pieces that straddle the blocks' ends.
        let mut hasher = ContentHasher::new(kind);
        let mut at = 0;
        for piece in bytes.chunks(1000) {
            hasher.saw(at, piece);
            at += piece.len() as u64;
        }
        assert_eq!(hasher.hash(10_000), Some(by_hand(&bytes, 4096)));
        // Not every byte, or more: no hash.
        assert_eq!(hasher.hash(9_999), None);
        // Read again from the start (a retry) or from an offset (a session going back): each byte once.
        let mut again = ContentHasher::new(kind);
        again.saw(0, &bytes[..6000]);
        again.saw(0, &bytes[..3000]);
        again.saw(4096, &bytes[4096..10_000]);
        assert_eq!(again.hash(10_000), Some(by_hand(&bytes, 4096)));
        // Bytes read past a gap are not hashed.
        let mut gap = ContentHasher::new(kind);
        gap.saw(0, &bytes[..1000]);
        gap.saw(2000, &bytes[2000..]);
        assert_eq!(gap.hash(10_000), None);
        // An empty file: the SHA-256 of nothing (no block).
        assert_eq!(
            ContentHasher::new(kind).hash(0).as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        // Dropbox's 4 MiB blocks: one block and one byte more is two digests.
        let big = vec![7u8; 4 * 1024 * 1024 + 1];
        let mut dropbox = ContentHasher::new(ContentHash::Sha256OfBlocks {
            block_bytes: 4 * 1024 * 1024,
        });
        dropbox.saw(0, &big);
        assert_eq!(
            dropbox.hash(big.len() as u64),
            Some(by_hand(&big, 4 * 1024 * 1024))
        );
        assert_ne!(by_hand(&big, 4 * 1024 * 1024), by_hand(&big, big.len()));
    }

    #[test]
    fn a_file_found_after_a_lost_answer_is_ours_only_with_the_size_and_hash_sent() {
        let lookup = listbackup_domain::platform::find("dropbox")
            .unwrap()
            .data_type("files")
            .unwrap()
            .file_writes
            .unwrap()
            .upload
            .lost_answer
            .unwrap();
        let file = |size: u64, hash: &str| serde_json::json!({".tag": "file", "id": "id:a1", "size": size, "content_hash": hash});
        assert_eq!(
            judge(&file(10, "AB12"), &lookup, 10, "ab12"),
            Found::Ours("id:a1".into())
        );
        assert!(matches!(
            judge(&file(9, "ab12"), &lookup, 10, "ab12"),
            Found::Other(why) if why.contains("9 bytes, not 10")
        ));
        assert!(matches!(
            judge(&file(10, "ab13"), &lookup, 10, "ab12"),
            Found::Other(why) if why.contains("content hash")
        ));
        let folder = serde_json::json!({".tag": "folder", "id": "id:f1"});
        assert!(matches!(
            judge(&folder, &lookup, 10, "ab12"),
            Found::Other(_)
        ));
    }

    #[test]
    fn a_form_filename_cannot_break_its_header() {
        assert_eq!(form_filename("a\"b\r\nc.txt"), "a%22b%0D%0Ac.txt");
        assert_eq!(header_safe("text/plain\r\nX: y"), "text/plainX: y");
        assert_eq!(
            ascii_json(&serde_json::json!({"path": "/Café/☕"})),
            r#"{"path":"/Caf\u00e9/\u2615"}"#
        );
    }
}
