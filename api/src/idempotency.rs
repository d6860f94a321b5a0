//! `Idempotency-Key` on POST (DESIGN §4): a repeat with the same key and body gets the first response; the
//! same key with another body is a 422; a repeat while the first is still running is a 409. Keys are kept
//! for 24 hours.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use deadpool_postgres::Pool;
use listbackup_domain::ErrorChain;
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode};
use crate::extract::BodyDigest;

const HEADER: &str = "idempotency-key";

/// A claimed key: the request runs, then [`Claim::finish`] stores what it answered.
pub struct Claim {
    account_id: String,
    key: String,
}

/// What to do with a request that may carry an `Idempotency-Key`.
pub enum Idempotency {
    /// No key: just run it.
    None,
    /// First use of the key: run it, then finish the claim.
    Run(Claim),
    /// Seen before with the same body: answer this.
    Replay(HttpResponse),
}

/// Looks the key up and claims it when new. Call after the body extractor ran (it leaves the digest).
pub async fn begin(
    pool: &Pool,
    req: &HttpRequest,
    account_id: &str,
) -> Result<Idempotency, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(Idempotency::None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            // Visible ASCII, as the message says (and the OpenAPI pattern): no spaces.
            !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| ApiError::field("Idempotency-Key", "must be 1 to 255 visible characters"))?
        .to_owned();
    let body = req
        .extensions()
        .get::<BodyDigest>()
        .map(|d| d.0.clone())
        .unwrap_or_default();
    let digest = format!("{} {} {}", req.method(), req.path(), body);
    let client = pool.get().await.map_err(ApiError::from_unexpected)?;
    let inserted = client
        .execute(
            // A key is claimed when new, when its first use is older than a day (keys expire), or when its
            // first request never finished within two minutes (its process died): otherwise it is left alone.
            "INSERT INTO idempotency_keys (account_id, key, request_digest) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, key) DO UPDATE \
               SET request_digest = EXCLUDED.request_digest, status = NULL, response = NULL, created_at = now() \
               WHERE idempotency_keys.created_at < now() - interval '24 hours' \
                  OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < now() - interval '2 minutes')",
            &[&account_id, &key, &digest],
        )
        .await
        .map_err(ApiError::from_unexpected)?;
    if inserted == 1 {
        return Ok(Idempotency::Run(Claim {
            account_id: account_id.to_owned(),
            key,
        }));
    }
    let row = client
        .query_one(
            "SELECT request_digest, status, response FROM idempotency_keys WHERE account_id = $1 AND key = $2",
            &[&account_id, &key],
        )
        .await
        .map_err(ApiError::from_unexpected)?;
    let stored_digest: String = row.get(0);
    if stored_digest != digest {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "this Idempotency-Key was used with another request body",
        )
        .with_status_422());
    }
    let status: Option<i16> = row.get(1);
    let response: Option<Value> = row.get(2);
    match (status, response) {
        (Some(status), Some(response)) => Ok(Idempotency::Replay(replay(status, &response))),
        _ => Err(ApiError::conflict(
            "a request with this Idempotency-Key is still being processed",
        )),
    }
}

/// A resource a POST created: its id, its version (the ETag) and its JSON view.
pub struct Created {
    pub id: String,
    pub version: i64,
    pub body: Value,
    /// A field of the first response only (a webhook's signing secret): never stored for replays, so a
    /// repeat of the request answers without it.
    pub shown_once: Option<(&'static str, String)>,
}

impl Created {
    /// The created resource `id` (a typed id, shown in its text form), at `version`, answered with `view`.
    pub fn new(
        id: impl std::fmt::Display,
        version: i64,
        view: &impl serde::Serialize,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            id: id.to_string(),
            version,
            body: serde_json::to_value(view).map_err(ApiError::from_unexpected)?,
            shown_once: None,
        })
    }

    /// Adds `field` with `value` to the first response only.
    pub fn with_shown_once(self, field: &'static str, value: String) -> Self {
        Self {
            shown_once: Some((field, value)),
            ..self
        }
    }
}

/// Runs a create at most once per `Idempotency-Key` and answers 201 with the resource, its `ETag` and its
/// `Location` (`{collection}/{id}`); a repeat gets the same answer. Call after the body was parsed.
pub async fn create_once<F, Fut>(
    pool: &Pool,
    req: &HttpRequest,
    account_id: &str,
    collection: &str,
    create: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Created, ApiError>>,
{
    let claim = match begin(pool, req, account_id).await? {
        Idempotency::Replay(response) => return Ok(response),
        Idempotency::Run(claim) => Some(claim),
        Idempotency::None => None,
    };
    let mut shown_once = None;
    let result = create().await.map(|created| {
        shown_once = created.shown_once;
        Answer {
            status: StatusCode::CREATED,
            etag: Some(crate::extract::etag(created.version)),
            location: Some(format!("{collection}/{}", created.id)),
            body: created.body,
        }
    });
    if let Some(claim) = claim {
        claim.finish(pool, &result).await;
    }
    let mut answer = result?;
    if let Some((field, value)) = shown_once {
        answer.body[field] = Value::String(value);
    }
    Ok(answer.respond())
}

/// A response worth replaying.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub etag: Option<String>,
    pub location: Option<String>,
}

impl Answer {
    fn respond(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(etag) = &self.etag {
            response.insert_header((header::ETAG, etag.as_str()));
        }
        if let Some(location) = &self.location {
            response.insert_header((header::LOCATION, location.as_str()));
        }
        response.json(&self.body)
    }
}

impl Claim {
    /// Stores a final answer for replays; a failure the client may retry releases the key instead.
    pub async fn finish(self, pool: &Pool, result: &Result<Answer, ApiError>) {
        let outcome = async {
            let client = pool.get().await?;
            match result {
                Ok(answer) => {
                    let status = answer.status;
                    let stored = json!({ "body": answer.body, "etag": answer.etag, "location": answer.location });
                    client
                        .execute(
                            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE account_id = $1 AND key = $2",
                            &[&self.account_id, &self.key, &(status.as_u16() as i16), &stored],
                        )
                        .await?;
                }
                Err(_) => {
                    client
                        .execute(
                            "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2",
                            &[&self.account_id, &self.key],
                        )
                        .await?;
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        if let Err(err) = outcome.await {
            tracing::error!(
                error = %ErrorChain(&*err),
                "could not record the idempotency outcome"
            );
        }
    }
}

fn replay(status: i16, stored: &Value) -> HttpResponse {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response.insert_header(("Idempotent-Replayed", "true"));
    if let Some(etag) = stored.get("etag").and_then(Value::as_str) {
        response.insert_header((header::ETAG, etag));
    }
    if let Some(location) = stored.get("location").and_then(Value::as_str) {
        response.insert_header((header::LOCATION, location));
    }
    response.json(stored.get("body").cloned().unwrap_or(Value::Null))
}
