//! The REST API as the CLI speaks to it: bearer token, JSON bodies, problem+json errors, cursor pages.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::Value;

use super::error::{CliError, Problem};

/// How long a connection to the API may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a JSON request may take in all (a sync waits for its job to be projected, well under this).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stream may stay silent before it counts as broken. The job event stream sends a comment
/// every 15 s (api/src/routes/job_events.rs), so a healthy one never is.
pub const READ_TIMEOUT: Duration = Duration::from_secs(45);
/// The API's largest page (`?limit=` 1–200, README "API conventions").
pub const MAX_PAGE_SIZE: u32 = 200;

/// What a path segment encodes (RFC 3986 §3.3: anything but unreserved characters and sub-delimiters, and
/// `%` itself, so an id or a file name given on the command line stays one segment).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A client of one ListBackup API with one bearer token.
#[derive(Clone)]
pub struct ApiClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// A list's items gathered from its pages, and how many requests that took.
#[derive(Debug)]
pub struct Listing {
    pub items: Vec<Value>,
    pub pages: usize,
}

impl ApiClient {
    /// `url` is the API's base URL (`http://127.0.0.1:8080`, or with a path prefix behind a proxy).
    ///
    /// # Errors
    /// [`CliError::Usage`] for a URL that is not http(s) or a token that cannot be sent in a header.
    pub fn new(url: &str, token: &str) -> Result<Self, CliError> {
        let base = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "the API URL {url:?} is not an http(s) URL such as http://127.0.0.1:8080"
                ))
            })?;
        // The token ends up in a header: refuse what a header cannot carry here, not as a transport error.
        if token.is_empty() || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(CliError::Usage(
                "the token is empty or holds characters a header cannot carry".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("listbackup-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| CliError::transport("cannot set up the HTTP client", e))?;
        Ok(Self {
            base,
            token: token.to_owned(),
            http,
        })
    }

    /// The URL of `segments` under the base URL, each segment percent-encoded (an id given on the command
    /// line can never reach another path).
    ///
    /// # Errors
    /// [`CliError::Usage`] for an empty segment or one of dots only: `..` and `.` are resolved away by every
    /// URL parser (RFC 3986 §5.2.4, even as `%2E%2E`), so they can never name a resource.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        let mut path = url.path().trim_end_matches('/').to_owned();
        for segment in segments {
            if segment.chars().all(|c| c == '.') {
                return Err(CliError::Usage(format!(
                    "{segment:?} is not an id or a file name"
                )));
            }
            path.push('/');
            path.extend(utf8_percent_encode(segment, SEGMENT));
        }
        url.set_path(&path);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Sends a request; a non-2xx answer becomes [`CliError::Api`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        accept: &str,
        timeout: Option<Duration>,
    ) -> Result<Response, CliError> {
        self.send_with(method, url, accept, timeout, None).await
    }

    /// [`send`](Self::send) with a JSON body.
    async fn send_with(
        &self,
        method: Method,
        url: Url,
        accept: &str,
        timeout: Option<Duration>,
        body: Option<&Value>,
    ) -> Result<Response, CliError> {
        let what = format!("{method} {}", url.path());
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(&self.token)
            .header(ACCEPT, accept);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::transport(format!("{what} failed"), e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(CliError::Api(Box::new(problem_of(response).await)))
        }
    }

    /// GET a JSON resource.
    pub async fn get_json(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let url = self.url(segments, query)?;
        let response = self
            .send(Method::GET, url, "application/json", Some(REQUEST_TIMEOUT))
            .await?;
        json_body(response).await
    }

    /// POST without a body (the sync, cancel and retry routes take none); the answer's JSON and its
    /// `Location` header resolved against the request URL.
    pub async fn post_empty(&self, segments: &[&str]) -> Result<(Value, Option<Url>), CliError> {
        let url = self.url(segments, &[])?;
        let response = self
            .send(
                Method::POST,
                url.clone(),
                "application/json",
                Some(REQUEST_TIMEOUT),
            )
            .await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| url.join(v).ok());
        Ok((json_body(response).await?, location))
    }

    /// POST a JSON body; the answer's JSON.
    pub async fn post_json(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        let url = self.url(segments, &[])?;
        let response = self
            .send_with(
                Method::POST,
                url,
                "application/json",
                Some(REQUEST_TIMEOUT),
                Some(body),
            )
            .await?;
        json_body(response).await
    }

    /// Opens a streamed GET (a file, an event stream): no overall timeout, only the read timeout.
    pub async fn open(&self, segments: &[&str], accept: &str) -> Result<Response, CliError> {
        let url = self.url(segments, &[])?;
        self.send(Method::GET, url, accept, None).await
    }

    /// Every item of a cursor-paged list (`{"<key>": [...], "nextCursor": …}`), following `nextCursor` until
    /// it is null or `limit` items are gathered. `page_size` is each request's `?limit=` (1–200).
    pub async fn list(
        &self,
        segments: &[&str],
        key: &str,
        filters: &[(&str, String)],
        limit: Option<usize>,
        page_size: u32,
    ) -> Result<Listing, CliError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let wanted = match limit {
                Some(limit) => (limit - items.len()).min(page_size as usize),
                None => page_size as usize,
            };
            let mut query = filters.to_vec();
            query.push(("limit", wanted.to_string()));
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let mut page = self.get_json(segments, &query).await?;
            pages += 1;
            let Some(Value::Array(page_items)) = page.get_mut(key).map(Value::take) else {
                return Err(CliError::Unexpected(format!(
                    "GET /{} answered without a {key:?} array",
                    segments.join("/")
                )));
            };
            items.extend(page_items);
            cursor = match page.get("nextCursor") {
                Some(Value::String(next)) => Some(next.clone()),
                _ => None,
            };
            let full = limit.is_some_and(|limit| items.len() >= limit);
            if cursor.is_none() || full {
                if let Some(limit) = limit {
                    items.truncate(limit);
                }
                return Ok(Listing { items, pages });
            }
        }
    }
}

/// The JSON body of a 2xx answer.
async fn json_body(response: Response) -> Result<Value, CliError> {
    let path = response.url().path().to_owned();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CliError::transport(format!("reading the answer to {path}"), e))?;
    serde_json::from_slice(&bytes).map_err(|source| CliError::NotJson {
        what: format!("the answer to {path}"),
        source,
    })
}

/// The problem a non-2xx answer carries; one made of the status when the body is not problem+json (a proxy's
/// error page, a wrong URL).
async fn problem_of(response: Response) -> Problem {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let body = response.bytes().await.unwrap_or_default();
    let parsed = is_problem
        .then(|| serde_json::from_slice::<Problem>(&body).ok())
        .flatten()
        .filter(|p| !p.title.is_empty());
    match parsed {
        Some(mut problem) => {
            problem.status = status.as_u16();
            problem
        }
        None => Problem {
            title: reason(status),
            status: status.as_u16(),
            detail: Some(
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
                    .trim()
                    .to_owned(),
            )
            .filter(|d| !d.is_empty()),
            ..Problem::default()
        },
    }
}

fn reason(status: StatusCode) -> String {
    format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim()
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_under_the_base_path() {
        let client = ApiClient::new("https://api.example.com/listbackup/", "t").unwrap();
        let url = client
            .url(
                &["jobs", "../connections", "files", "50%?#"],
                &[("status", "a b".into())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/listbackup/jobs/..%2Fconnections/files/50%25%3F%23?status=a+b"
        );
        // A dot segment would be resolved to another path: refused.
        for dots in ["..", ".", ""] {
            assert!(matches!(
                client.url(&["jobs", dots], &[]),
                Err(CliError::Usage(_))
            ));
        }
    }

    #[test]
    fn a_url_that_is_not_http_or_a_token_with_a_newline_is_a_usage_error() {
        for (url, token) in [
            ("ftp://x", "t"),
            ("localhost:8080", "t"),
            ("http://x", "a\nb"),
            ("http://x", ""),
        ] {
            assert!(
                matches!(ApiClient::new(url, token), Err(CliError::Usage(_))),
                "{url} {token:?}"
            );
        }
    }
}
