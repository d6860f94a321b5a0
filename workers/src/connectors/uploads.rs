//! Putting a file platform's files back (restore, issue 13 §5): creating a folder and uploading one file's
//! bytes, as the data type's [`FileWrites`] declares them (`listbackup_domain::platform::writes`); nothing
//! here is about one platform. Requests go through the connection's rate budget with its auth, like every
//! other request of the connector.
//!
//! **Streamed.** An upload's body is the file's bytes as the backup store hands them over (decrypted chunk by
//! chunk), wrapped between the multipart framing when the platform wants one; its `Content-Length` is known
//! beforehand (the framing plus the file's size in the manifest), so memory stays flat whatever the size.
//! Because a body that was sent cannot be sent again, an upload retries by opening the stored file again:
//! 429 (`Retry-After`), 5xx and dropped connections are retried up to the policy's bounds, each time from the
//! first byte. A retry after an answer that was lost may leave a second copy on the platform (Dropbox names it
//! `name (1)`); never an overwrite.

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use listbackup_domain::platform::listing::scalar_text;
use listbackup_domain::platform::writes::{fill_template, FileWrites, LargeUpload, UploadBody};
use listbackup_domain::platform::{ContentHost, Platform};
use serde_json::Value;

use super::content::ascii_json;
use super::transport::{BodyError, Call, Counters};
use super::{apply_auth, choose_auth, Connector, FetchError, RetryPolicy};

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
        let call = Call {
            http: &self.http,
            budget: &budget,
            policy: &self.retry,
            platform: target.platform,
            credentials: target.credentials,
            gone: None,
        };
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
                    };
                    self.upload_session(target, session, &metadata, &open).await
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
        self.send_streamed(
            target,
            &open,
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

    /// A resumable upload (Drive): the session first, then every byte in one `PUT` to its URI.
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
        let upload = target.writes.upload;
        let url = self.host_url(target, upload.host, path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let credentials = target.credentials;
        let mime_type = header_safe(file.mime_type);
        let body = metadata.to_string();
        let size = file.size;
        let new_id = upload.new_id;
        // Each upload opens its own session; a broken transfer is sent again whole, in a new `PUT`.
        let call = Call {
            http: &self.http,
            budget: &budget,
            policy: &self.retry,
            platform: target.platform,
            credentials,
            gone: None,
        };
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
                        .header("X-Upload-Content-Type", mime_type.as_str())
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
        let location = url::Url::parse(&location)
            .or_else(|_| url::Url::parse(&url).and_then(|base| base.join(&location)))
            .map_err(|_| {
                FetchError::InvalidResponse("the upload session's Location is not a URL".into())
            })?;
        self.send_streamed(
            target,
            open,
            |http, stream| {
                http.put(location.clone())
                    .header(reqwest::header::CONTENT_TYPE, mime_type.as_str())
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream))
            },
            move |answer| id_at(&answer, new_id),
        )
        .await
    }

    /// An upload session (Dropbox): the stored file read once, chunk by chunk, each chunk one request
    /// (retried by the transport like any small request: it is held in memory).
    async fn upload_session<F, Fut>(
        &self,
        target: FileTarget<'_>,
        session: Session,
        commit: &Value,
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
        let mut offset = 0u64;
        let mut session_id: Option<String> = None;
        let mut ended = false;
        loop {
            // The next chunk: `session.chunk` bytes, or what is left.
            while !ended && pending.len() < session.chunk {
                match stream.next().await {
                    Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                    Some(Err(err)) => return Err(FetchError::Sink(err)),
                    None => ended = true,
                }
            }
            let take = pending.len().min(session.chunk);
            let chunk = pending.split_to(take).freeze();
            if chunk.is_empty() && session_id.is_some() {
                break;
            }
            let (path, arg) = match &session_id {
                None => (start, serde_json::json!({"close": false})),
                Some(id) => (
                    append,
                    serde_json::json!({"cursor": {"session_id": id, "offset": offset}, "close": false}),
                ),
            };
            let answer = self
                .send_chunk(
                    target,
                    upload.host,
                    path,
                    (session.header, &arg),
                    chunk.clone(),
                )
                .await?;
            if session_id.is_none() {
                session_id = Some(
                    answer
                        .get("session_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            FetchError::InvalidResponse(
                                "the platform opened an upload session without a session_id".into(),
                            )
                        })?,
                );
            }
            offset += chunk.len() as u64;
            if ended && pending.is_empty() {
                break;
            }
        }
        let arg = serde_json::json!({
            "cursor": {"session_id": session_id, "offset": offset},
            "commit": commit,
        });
        let answer = self
            .send_chunk(
                target,
                upload.host,
                finish,
                (session.header, &arg),
                Bytes::new(),
            )
            .await?;
        id_at(&answer, upload.new_id)
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
        let call = Call {
            http: &self.content_http,
            budget: &budget,
            policy: &self.retry,
            platform: target.platform,
            credentials: target.credentials,
            gone: None,
        };
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

    /// One request of an upload session: `chunk` as the body, `arg` in the argument header.
    async fn send_chunk(
        &self,
        target: FileTarget<'_>,
        host: ContentHost,
        path: &str,
        (header, arg): (&str, &Value),
        chunk: Bytes,
    ) -> Result<Value, FetchError> {
        let url = self.host_url(target, host, path)?;
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        let call = Call {
            http: &self.content_http,
            budget: &budget,
            policy: &self.retry,
            platform: target.platform,
            credentials: target.credentials,
            gone: None,
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
                // `append_v2` answers `null`.
                if response.body.is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_slice(&response.body)
                    .map_err(|err| BodyError::from_json(err, &response))
            },
        )
        .await
    }

    /// Sends a request whose body is the stored file (`open` streams it), once per attempt: the transport's
    /// retries cannot send a streamed body twice, so each retry opens the file again here.
    async fn send_streamed<F, Fut>(
        &self,
        target: FileTarget<'_>,
        open: &F,
        build: impl Fn(&reqwest::Client, UploadStream) -> reqwest::RequestBuilder,
        decode: impl Fn(Value) -> Result<String, FetchError>,
    ) -> Result<String, FetchError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UploadStream, FetchError>>,
    {
        let auth = choose_auth(target.platform, target.credentials)?.api_auth();
        let budget = self.rate_budget(target.connection_id, target.platform.id);
        // One request per attempt of the transport; the attempts are counted here.
        let once = RetryPolicy {
            max_attempts: 1,
            max_rate_limited: 0,
            ..self.retry
        };
        let call = Call {
            http: &self.content_http,
            budget: &budget,
            policy: &once,
            platform: target.platform,
            credentials: target.credentials,
            gone: None,
        };
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let stream = open().await?;
            let slot = std::sync::Mutex::new(Some(stream));
            let mut counters = Counters::default();
            let sent = call
                .send(
                    &mut counters,
                    |http| {
                        let stream =
                            slot.lock().expect("not poisoned").take().ok_or_else(|| {
                                FetchError::Network("an upload's body was sent".into())
                            })?;
                        let builder = build(http, stream);
                        let builder = target
                            .platform
                            .api_headers
                            .iter()
                            .fold(builder, |b, (name, value)| b.header(*name, *value));
                        apply_auth(builder, auth, target.credentials).map_err(FetchError::from)
                    },
                    |response| {
                        let answer: Value = serde_json::from_slice(&response.body)
                            .map_err(|err| BodyError::from_json(err, &response))?;
                        decode(answer).map_err(BodyError::Invalid)
                    },
                )
                .await;
            let wait = match sent {
                Ok(id) => return Ok(id),
                Err(FetchError::RateLimited { retry_after }) => {
                    rate_limited += 1;
                    let wait = retry_after.unwrap_or_else(|| self.retry.backoff(rate_limited));
                    if rate_limited > self.retry.max_rate_limited
                        || wait > self.retry.max_retry_after
                    {
                        return Err(FetchError::RateLimited { retry_after });
                    }
                    wait
                }
                Err(err) if err.retryable() => {
                    failures += 1;
                    if failures >= self.retry.max_attempts {
                        return Err(err);
                    }
                    self.retry.backoff(failures)
                }
                Err(err) => return Err(err),
            };
            tokio::time::sleep(wait).await;
        }
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
    FetchError::InvalidResponse(format!("the catalog's {what} template is not JSON: {err}"))
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
