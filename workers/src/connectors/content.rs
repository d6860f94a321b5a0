//! A listed file's bytes ([`FileContent`] of its listing): which request fetches them, built from the file's
//! record, and the download itself, streamed.
//!
//! A download goes through the connection's rate budget and the transport's retries like a page (429 with
//! `Retry-After`, the platform's other rate-limit answers, 5xx and network errors with backoff), plus:
//!
//! - a redirect (Box answers `302` to a pre-signed URL on another host) is followed by a new request that
//!   carries **no credentials** and none of the platform's headers: the access token must never reach another
//!   host. An `https` URL never redirects to `http`; at most [`MAX_REDIRECTS`] hops;
//! - `202 Accepted` with `Retry-After` (Box: the file is not ready yet) is waited out;
//! - 404, 410 and the listing's `gone` answers fail with [`FetchError::Gone`]: deleted since it was listed.
//!
//! The body is not read here: [`ContentStream::chunk`] hands it over piece by piece, so a file of any size
//! passes through in the memory of one chunk. A body cut off mid-way is a [`FetchError::Network`]; the caller
//! starts the download again (its partial bytes are discarded with their upload).

use std::collections::BTreeMap;

use bytes::Bytes;
use listbackup_commands::platform_client::{apply_auth, choose_auth};
use listbackup_domain::platform::{ContentRequest, HttpMethod, Listing, Platform};
use serde_json::value::RawValue;
use serde_json::Value;

use super::body::{lookup, scalar_text_at};
use super::rate::{RateBudget, RateLimit};
use super::transport::{network_error, Call, Counters};
use super::{Connector, FetchError, FetchRequest};

/// Redirects followed for one download: Box needs one.
pub const MAX_REDIRECTS: usize = 3;

/// A listed file with content: its id and version, and the request that fetches its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The record's id (the listing's `id_field`).
    pub id: String,
    /// The record's value at the request's `version` pointer, if any.
    pub version: Option<String>,
    /// The format of an export (a Google Doc as `.docx`).
    pub export_as: Option<&'static str>,
    request: &'static ContentRequest,
    /// The request's path with the record's fields in it.
    path: String,
    query: Vec<(&'static str, String)>,
    /// The JSON argument header's value.
    arg: Option<String>,
}

impl FileRef {
    /// The file `record` of `listing` is: `Ok(None)` when the listing has no content or no request applies
    /// to the record (a folder, a Google Form); `Err` saying why when a request applies but the record lacks
    /// what it needs (its id, a field of its path), or is not a JSON object.
    pub fn of(listing: &'static Listing, record: &RawValue) -> Result<Option<Self>, String> {
        let Some(content) = listing.content else {
            return Ok(None);
        };
        // Each value is read at its pointer alone (see `body`): a file whose description holds a lone
        // surrogate, or whose properties hold `1e400`, is downloaded like any other.
        let record = record.get();
        if !record.trim_start().starts_with('{') {
            return Err("the record is not a JSON object".to_owned());
        }
        let at = |pointer: &str| scalar_text_at(record, pointer);
        let Some(request) = content.requests.iter().find(|request| {
            request
                .when
                .iter()
                .all(|condition| condition.holds_text(at(condition.pointer).as_deref()))
        }) else {
            return Ok(None);
        };
        let field = |name: &str| -> Result<String, String> {
            let pointer = format!("/{}", name.replace('~', "~0").replace('/', "~1"));
            at(&pointer)
                .map(|text| text.into_owned())
                .filter(|text| !text.is_empty())
                .ok_or_else(|| format!("the file's record has no `{name}`"))
        };
        let id = field(listing.id_field)?;
        let mut path = request.path.to_owned();
        for name in listbackup_domain::platform::url_placeholders(request.path) {
            let value = field(name)?;
            let segment: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            path = path.replace(&format!("{{{name}}}"), &segment);
        }
        let mut query = Vec::with_capacity(request.query.len());
        for (key, template) in request.query {
            let mut value = (*template).to_owned();
            for name in listbackup_domain::platform::url_placeholders(template) {
                value = value.replace(&format!("{{{name}}}"), &field(name)?);
            }
            query.push((*key, value));
        }
        let arg = match request.json_arg {
            None => None,
            Some(arg) => {
                let mut object = serde_json::Map::new();
                for (key, pointer) in arg.fields {
                    let value = lookup(record, pointer)
                        .ok_or_else(|| format!("the file's record has no `{pointer}`"))?;
                    let value: Value = serde_json::from_str(value.get()).map_err(|err| {
                        format!("the file's `{pointer}` cannot be sent in a header: {err}")
                    })?;
                    object.insert((*key).to_owned(), value);
                }
                Some(ascii_json(&Value::Object(object)))
            }
        };
        let version = at(request.version)
            .map(|text| text.into_owned())
            .filter(|text| !text.is_empty());
        Ok(Some(Self {
            id,
            version,
            export_as: request.export_as,
            request,
            path,
            query,
            arg,
        }))
    }
}

/// JSON text with every non-ASCII character escaped (`\uXXXX`, surrogate pairs beyond the BMP): an HTTP
/// header value must be ASCII, and Dropbox documents this encoding for `Dropbox-API-Arg`
/// (https://www.dropbox.com/developers/reference/json-encoding). Downloads and uploads both send it.
pub(super) fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A download in progress: the answer's body, to be read chunk by chunk.
#[derive(Debug)]
pub struct ContentStream {
    response: reqwest::Response,
    /// Requests sent for it (redirects and retries included).
    pub requests: u64,
}

impl ContentStream {
    /// The size the answer announces (`Content-Length`), if any.
    pub fn length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next piece of the body; `None` at its end. A connection broken mid-body is
    /// [`FetchError::Network`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        self.response.chunk().await.map_err(network_error)
    }
}

impl Connector {
    /// Starts downloading `file`, a record of `request`'s data type (whose credentials are used).
    pub async fn download(
        &self,
        request: &FetchRequest<'_>,
        file: &FileRef,
    ) -> Result<ContentStream, FetchError> {
        let platform: &'static Platform = request.platform;
        let listing =
            platform
                .listing(request.data_type)
                .ok_or_else(|| FetchError::Unsupported {
                    platform: platform.id.to_owned(),
                    data_type: request.data_type.to_owned(),
                    reason: "ListBackup cannot list it yet",
                })?;
        let credentials: &BTreeMap<String, String> = request.credentials;
        let auth = choose_auth(platform, credentials)?.api_auth();
        let base = self
            .endpoints
            .host_base(platform, file.request.host, credentials)?;
        let url = format!("{base}{}", file.path);
        let budget = self.rate_budget(request.connection_id, platform.id);
        let mut counters = Counters::default();
        let call = Call {
            gone: Some(listing.gone),
            ..Call::new(
                &self.content_http,
                &budget,
                &self.retry,
                platform,
                credentials,
            )
        };
        let method = file.request.method;
        let response = call
            .open(&mut counters, |http| {
                let builder = match method {
                    HttpMethod::Get => http.get(&url),
                    // A content-download RPC: no body, so no Content-Type (Dropbox refuses a JSON one there).
                    HttpMethod::Post => http.post(&url),
                };
                let mut builder = builder.query(&file.query);
                for (name, value) in platform.api_headers {
                    builder = builder.header(*name, *value);
                }
                if let (Some(arg), Some(value)) = (file.request.json_arg, &file.arg) {
                    builder = builder.header(arg.header, value);
                }
                apply_auth(builder, auth, credentials).map_err(FetchError::from)
            })
            .await?;
        let response = self
            .follow_redirects(response, platform, credentials, &mut counters)
            .await?;
        Ok(ContentStream {
            response,
            requests: counters.requests,
        })
    }

    /// Follows the answer's redirects, each with a request carrying no credentials and no platform header.
    async fn follow_redirects(
        &self,
        mut response: reqwest::Response,
        platform: &'static Platform,
        credentials: &BTreeMap<String, String>,
        counters: &mut Counters,
    ) -> Result<reqwest::Response, FetchError> {
        // The download host is not the API: its requests do not draw on the API's rate budget.
        let unmetered = RateBudget::new(RateLimit::unlimited());
        let call = Call {
            gone: Some(&[]),
            ..Call::new(
                &self.content_http,
                &unmetered,
                &self.retry,
                platform,
                credentials,
            )
        };
        let mut hops = 0;
        while response.status().is_redirection() {
            hops += 1;
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok());
            let next = redirect_target(response.url(), location, platform)?;
            if hops > MAX_REDIRECTS {
                return Err(FetchError::InvalidResponse(format!(
                    "{} redirected a download more than {MAX_REDIRECTS} times",
                    platform.name
                )));
            }
            response = call
                .open(counters, |http| Ok(http.get(next.clone())))
                .await?;
        }
        Ok(response)
    }
}

/// Where a redirect points: its `Location` resolved against the request's URL, `http` or `https` only, and
/// never from `https` down to `http`.
fn redirect_target(
    from: &url::Url,
    location: Option<&str>,
    platform: &Platform,
) -> Result<url::Url, FetchError> {
    let invalid = |why: &str| {
        FetchError::InvalidResponse(format!(
            "{} redirected a download {why}; it is not followed",
            platform.name
        ))
    };
    let location = location.ok_or_else(|| invalid("without a Location"))?;
    let next = from
        .join(location)
        .map_err(|_| invalid("to something that is not a URL"))?;
    match (from.scheme(), next.scheme()) {
        (_, "https") | ("http", "http") => Ok(next),
        ("https", "http") => Err(invalid("from https to http")),
        _ => Err(invalid("to a URL that is not http(s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn listing(platform: &str, data_type: &str) -> &'static Listing {
        listbackup_domain::platform::find(platform)
            .unwrap()
            .listing(data_type)
            .unwrap()
    }

    #[test]
    fn drive_downloads_blobs_and_exports_google_types() {
        let files = listing("google", "files");
        let blob = FileRef::of(
            files,
            &raw(r#"{"id":"1aB","mimeType":"image/png","md5Checksum":"abc","version":"7"}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(blob.path, "/drive/v3/files/1aB");
        assert_eq!(blob.version.as_deref(), Some("abc"));
        assert!(blob.query.contains(&("alt", "media".to_owned())));
        assert_eq!(blob.export_as, None);
        let doc = FileRef::of(
            files,
            &raw(
                r#"{"id":"1cD","mimeType":"application/vnd.google-apps.document","version":"12"}"#,
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(doc.path, "/drive/v3/files/1cD/export");
        assert_eq!(doc.version.as_deref(), Some("12"));
        assert!(doc.export_as.unwrap().contains("wordprocessingml"));
        // Folders and Forms have no bytes.
        for mime in [
            "application/vnd.google-apps.folder",
            "application/vnd.google-apps.form",
        ] {
            let record = format!(r#"{{"id":"x","mimeType":"{mime}"}}"#);
            assert_eq!(FileRef::of(files, &raw(&record)).unwrap(), None, "{mime}");
        }
    }

    #[test]
    fn dropbox_names_the_file_in_an_ascii_json_header() {
        let files = listing("dropbox", "files");
        let file = FileRef::of(
            files,
            &raw(r#"{".tag":"file","id":"id:a4ayc_80_OEAAAAAAAAAXw","name":"Café ☕.txt","content_hash":"e3b0"}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            file.arg.as_deref(),
            Some(r#"{"path":"id:a4ayc_80_OEAAAAAAAAAXw"}"#)
        );
        assert_eq!(file.version.as_deref(), Some("e3b0"));
        let folder = FileRef::of(files, &raw(r#"{".tag":"folder","id":"id:f"}"#)).unwrap();
        assert_eq!(folder, None);
        let paper = r#"{".tag":"file","id":"id:p","is_downloadable":false}"#;
        assert_eq!(FileRef::of(files, &raw(paper)).unwrap(), None);
        assert_eq!(
            ascii_json(&serde_json::json!({"path": "/Café ☕ 𝄞"})),
            r#"{"path":"/Caf\u00e9 \u2615 \ud834\udd1e"}"#
        );
    }

    /// A file whose record holds a value no `serde_json::Value` can (a lone surrogate left of an emoji cut
    /// at UTF-16 code units in its description, `1e400` in its properties) was refused as "not JSON", its bytes
    /// not backed up; each field is read at its own pointer now.
    #[test]
    fn a_file_is_downloaded_whatever_else_its_record_holds() {
        let files = listing("google", "files");
        let record = r#"{"description":"\ud83d","properties":{"x":1e400},"id":"1aB","mimeType":"image/png","md5Checksum":"abc"}"#;
        assert!(serde_json::from_str::<Value>(record).is_err());
        let blob = FileRef::of(files, &raw(record)).unwrap().unwrap();
        assert_eq!(blob.path, "/drive/v3/files/1aB");
        assert_eq!(blob.version.as_deref(), Some("abc"));
        let dropbox = listing("dropbox", "files");
        let file = FileRef::of(
            dropbox,
            &raw(
                r#"{"n":1e400,".tag":"file","id":"id:a4","name":"\udc00.txt","content_hash":"e3"}"#,
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(file.arg.as_deref(), Some(r#"{"path":"id:a4"}"#));
        let err = FileRef::of(dropbox, &raw(r#"[1]"#)).unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
    }

    #[test]
    fn redirects_go_to_http_urls_and_never_down_from_https() {
        let platform = listbackup_domain::platform::find("box").unwrap();
        let from = url::Url::parse("https://api.box.com/2.0/files/1/content").unwrap();
        let next = redirect_target(
            &from,
            Some("https://dl.boxcloud.com/d/1/x/download"),
            platform,
        );
        assert_eq!(next.unwrap().host_str(), Some("dl.boxcloud.com"));
        // Relative to the request.
        let next = redirect_target(&from, Some("/2.0/files/1/other"), platform).unwrap();
        assert_eq!(next.as_str(), "https://api.box.com/2.0/files/1/other");
        for refused in [
            None,
            Some("http://dl.boxcloud.com/x"),
            Some("ftp://x/y"),
            Some("file:///etc/passwd"),
        ] {
            let err = redirect_target(&from, refused, platform).unwrap_err();
            assert!(matches!(err, FetchError::InvalidResponse(_)), "{refused:?}");
        }
        let local = url::Url::parse("http://127.0.0.1:1/box/2.0/files/1/content").unwrap();
        assert!(redirect_target(&local, Some("http://localhost:1/box/dl/t"), platform).is_ok());
    }

    #[test]
    fn an_id_is_one_path_segment_and_a_file_without_one_is_refused() {
        let files = listing("box", "files");
        let file = FileRef::of(files, &raw(r#"{"type":"file","id":"12/../34","sha1":"x"}"#))
            .unwrap()
            .unwrap();
        assert_eq!(file.path, "/files/12%2F..%2F34/content");
        let err = FileRef::of(files, &raw(r#"{"type":"file","sha1":"x"}"#)).unwrap_err();
        assert!(err.contains("`id`"), "{err}");
    }
}
