//! Writing one record back to its platform (restore, issue 13 §5), through the same transport as the fetches:
//! the connection's rate budget, `Retry-After` on 429, backoff on 5xx. The calls and their body format are the
//! data type's [`RecordWrites`] in the catalog; nothing here is about one platform.
//!
//! Every write carries an `Idempotency-Key` (Stripe: <https://docs.stripe.com/api/idempotent_requests>) chosen
//! by the caller, so a write retried after a lost answer, or by the next attempt of the same restore job, is
//! applied once.

use std::collections::BTreeMap;

use listbackup_domain::platform::writes::{RecordWrites, WriteBody};
use listbackup_domain::platform::Platform;
use serde_json::{Map, Value};

use super::transport::{BodyError, Call, Counters};
use super::{apply_auth, choose_auth, Connector, FetchError};

/// One record to write.
#[derive(Debug, Clone)]
pub struct RecordWrite<'a> {
    /// Keys the rate budget, shared with the connection's fetches.
    pub connection_id: &'a str,
    pub platform: &'static Platform,
    pub writes: &'a RecordWrites,
    pub credentials: &'a BTreeMap<String, String>,
    /// `None`: create a new record; `Some(id)`: update record `id`.
    pub update: Option<&'a str>,
    /// The fields to send; a `null` on update unsets the field.
    pub fields: &'a Map<String, Value>,
    /// Sent as `Idempotency-Key`: the same key applies the write once.
    pub idempotency_key: &'a str,
}

impl Connector {
    /// Sends one write and returns the record's id as the platform answers it (a created record's new id).
    /// A refusal of the record itself (a 4xx other than 401/403/429) is [`FetchError::Platform`] with
    /// `retryable: false`; the caller reports it for the record and goes on.
    pub async fn write_record(&self, write: RecordWrite<'_>) -> Result<String, FetchError> {
        let platform = write.platform;
        let auth = choose_auth(platform, write.credentials)?.api_auth();
        let base = self.endpoints.api_base(platform, write.credentials)?;
        let path = match write.update {
            None => write.writes.create.to_owned(),
            Some(id) => write
                .writes
                .update_path(id)
                .ok_or_else(|| FetchError::Unsupported {
                    platform: platform.id.to_owned(),
                    data_type: write.writes.create.to_owned(),
                    reason: "the platform does not let a record change once created",
                })?,
        };
        let url = format!("{base}{path}");
        let body = match write.writes.body {
            WriteBody::BracketedForm => bracketed_form(write.fields, write.update.is_some())?,
        };
        let budget = self.rate_budget(write.connection_id, platform.id);
        let call = Call {
            http: &self.http,
            budget: &budget,
            policy: &self.retry,
            platform,
            credentials: write.credentials,
            gone: None,
        };
        let credentials = write.credentials;
        let idempotency_key = write.idempotency_key;
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let request = http
                    .post(&url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .header("Idempotency-Key", idempotency_key)
                    .body(body.clone());
                let request = platform
                    .api_headers
                    .iter()
                    .fold(request, |r, (name, value)| r.header(*name, *value));
                apply_auth(request, auth, credentials).map_err(FetchError::from)
            },
            |response| {
                let record: Value = serde_json::from_slice(&response.body)
                    .map_err(|err| BodyError::from_json(err, &response))?;
                record
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        BodyError::Invalid(FetchError::InvalidResponse(
                            "the platform's answer to a write names no record id".into(),
                        ))
                    })
            },
        )
        .await
    }
}

/// `fields` as a form with nested objects and lists in brackets (`address[city]=…`, `preferred_locales[0]=…`),
/// encoded by `serde_qs`. On update a `null` is sent as an empty value, which unsets the field; on create
/// nulls are left out.
fn bracketed_form(fields: &Map<String, Value>, update: bool) -> Result<String, FetchError> {
    let form: Map<String, Value> = fields
        .iter()
        .filter_map(|(name, value)| match value {
            Value::Null if update => Some((name.clone(), Value::String(String::new()))),
            Value::Null => None,
            value => Some((name.clone(), without_nulls(value))),
        })
        .collect();
    serde_qs::to_string(&form).map_err(|err| {
        FetchError::InvalidResponse(format!("the record cannot be encoded as a form: {err}"))
    })
}

/// A nested `null` (an address without `line2`) as an empty value, which is how a form says "none".
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Null => Value::String(String::new()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_fields_are_bracketed_and_nulls_unset_on_update() {
        let fields = json!({"name": "Ada", "metadata": {"tier": "gold"}, "preferred_locales": ["en-US"],
                            "phone": null});
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        let create = bracketed_form(&fields, false).unwrap();
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(create.as_bytes())
            .into_owned()
            .collect();
        assert!(decoded.contains(&("name".into(), "Ada".into())), "{create}");
        assert!(
            decoded.contains(&("metadata[tier]".into(), "gold".into())),
            "{create}"
        );
        assert!(
            decoded.contains(&("preferred_locales[0]".into(), "en-US".into())),
            "{create}"
        );
        assert!(!decoded.iter().any(|(k, _)| k == "phone"), "{create}");
        let update = bracketed_form(&fields, true).unwrap();
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(update.as_bytes())
            .into_owned()
            .collect();
        assert!(
            decoded.contains(&("phone".into(), String::new())),
            "{update}"
        );
    }
}
