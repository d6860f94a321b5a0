//! Writing one record back to its platform (restore, issue 13 §5), through the same transport as the fetches:
//! the connection's rate budget, `Retry-After` on 429, backoff on 5xx. The calls and their body format are the
//! data type's [`RecordWrites`] in the catalog; nothing here is about one platform.
//!
//! On a platform that honours one ([`RecordWrites::idempotency_key`]), every write carries an `Idempotency-Key`
//! (Stripe: <https://docs.stripe.com/api/idempotent_requests>) chosen by the caller, so a write retried after a
//! lost answer, or by the next attempt of the same restore job, is applied once. Elsewhere the restore's plan
//! recognises a record already created ([`RecordWrites::matched_by`]) before creating it.

use std::collections::BTreeMap;

use listbackup_domain::platform::listing::scalar_text;
use listbackup_domain::platform::writes::{RecordWrites, SetChange, Unset, WriteBody, WriteMethod};
use listbackup_domain::platform::Platform;
use serde_json::{Map, Value};

use super::stored::{holds_stand_in, StoredFields};
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
    /// `None`: create a new record; `Some(id)`: update record `id` (the platform's own id, not the
    /// parent-qualified key of the index).
    pub update: Option<&'a str>,
    /// The record whose fields fill the path's [`RecordWrites::record_params`] (a Mailchimp member's
    /// `{list_id}` and `{subscriber_hash}`): the backed-up record for a create, the platform's record as
    /// listed now for an update.
    pub record: &'a Value,
    /// The fields to send; a `null` on update unsets the field.
    pub fields: &'a Map<String, Value>,
    /// The backed-up record's fields as stored: each field of `fields` whose value is what the plan read
    /// of it goes out as its stored JSON text, not re-serialized (`1e400`, digits past f64 and lone
    /// surrogate escapes reach the platform as backed up). `None`: every field is serialized.
    pub stored: Option<&'a StoredFields>,
    /// Sent as `Idempotency-Key` where the platform honours one: the same key applies the write once.
    pub idempotency_key: &'a str,
}

/// A record's set-valued field to write after the record ([`RecordWrites::set_fields`], a Mailchimp
/// member's tags): the follow-up call of a create or an update.
#[derive(Debug, Clone)]
pub struct SetWrite<'a> {
    pub connection_id: &'a str,
    pub platform: &'static Platform,
    pub writes: &'a RecordWrites,
    pub credentials: &'a BTreeMap<String, String>,
    /// The record's id on the platform now (a created record's new one), for an `{id}` of the path.
    pub id: Option<&'a str>,
    /// The record the create or the update was made of, whose fields fill the path's
    /// [`RecordWrites::record_params`].
    pub record: &'a Value,
    /// What to set and unset.
    pub change: &'a SetChange,
    /// Sent as `Idempotency-Key` where the platform honours one.
    pub idempotency_key: &'a str,
}

impl Connector {
    /// Sends one follow-up write of a set-valued field ([`SetWrite`]): the path and body its
    /// [`SetField`](listbackup_domain::platform::writes::SetField) declares, JSON, any 2xx answer (Mailchimp's
    /// 204 without a body) a success. A refusal is [`FetchError::Platform`] as for [`Connector::write_record`].
    pub async fn write_set(&self, write: SetWrite<'_>) -> Result<(), FetchError> {
        let path = write
            .writes
            .path(write.change.set.path, write.id, write.record)
            .map_err(|err| FetchError::InvalidResponse(err.to_string()))?;
        self.send_write(
            Outgoing {
                connection_id: write.connection_id,
                platform: write.platform,
                credentials: write.credentials,
                method: write.change.set.method,
                path: &path,
                content_type: "application/json",
                body: write.change.body().to_string(),
                idempotency_key: write
                    .writes
                    .idempotency_key
                    .then_some(write.idempotency_key),
            },
            |_| Ok(()),
        )
        .await
    }

    /// Sends one write and returns the record's id as the platform answers it (a created record's new id).
    /// A refusal of the record itself (a 4xx other than 401/403/429) is [`FetchError::Platform`] with
    /// `retryable: false`; the caller reports it for the record and goes on.
    pub async fn write_record(&self, write: RecordWrite<'_>) -> Result<String, FetchError> {
        let platform = write.platform;
        let template = match write.update {
            None => write.writes.create,
            Some(_) => write.writes.update.ok_or_else(|| FetchError::Unsupported {
                platform: platform.id.to_owned(),
                data_type: write.writes.create.to_owned(),
                reason: "the platform does not let a record change once created",
            })?,
        };
        // The restore checks the path before it writes (a record lacking a field of it is reported there).
        let path = write
            .writes
            .path(template, write.update, write.record)
            .map_err(|err| FetchError::InvalidResponse(err.to_string()))?;
        let writes = write.writes;
        let update = write.update.is_some();
        let (content_type, body) = encode_body(writes, write.fields, write.stored, update)?;
        let updated = write.update;
        self.send_write(
            Outgoing {
                connection_id: write.connection_id,
                platform,
                credentials: write.credentials,
                method: if update {
                    writes.update_method
                } else {
                    writes.create_method
                },
                path: &path,
                content_type,
                body,
                idempotency_key: writes.idempotency_key.then_some(write.idempotency_key),
            },
            |response| {
                let record: Value = serde_json::from_slice(&response.body)
                    .map_err(|err| BodyError::from_json(err, &response))?;
                match (record.pointer(writes.new_id).and_then(scalar_text), updated) {
                    (Some(id), _) => Ok(id.into_owned()),
                    // An update's answer that does not name the record still updated the one asked for.
                    (None, Some(id)) => Ok(id.to_owned()),
                    (None, None) => Err(BodyError::Invalid(FetchError::InvalidResponse(format!(
                        "the platform's answer to a create names no record id at {}",
                        writes.new_id
                    )))),
                }
            },
        )
        .await
    }

    /// Sends `outgoing` through the connection's rate budget and retries, authenticated as its fetches
    /// are, and hands a 2xx answer to `decode`.
    async fn send_write<T>(
        &self,
        outgoing: Outgoing<'_>,
        decode: impl Fn(super::transport::Response) -> Result<T, BodyError>,
    ) -> Result<T, FetchError> {
        let Outgoing {
            connection_id,
            platform,
            credentials,
            method,
            path,
            content_type,
            body,
            idempotency_key,
        } = outgoing;
        let auth = choose_auth(platform, credentials)?.api_auth();
        let base = self.endpoints.api_base(platform, credentials)?;
        let url = format!("{base}{path}");
        let method = match method {
            WriteMethod::Post => reqwest::Method::POST,
            WriteMethod::Put => reqwest::Method::PUT,
            WriteMethod::Patch => reqwest::Method::PATCH,
        };
        let budget = self.rate_budget(connection_id, platform.id);
        let call = Call::new(&self.http, &budget, &self.retry, platform, credentials);
        let mut counters = Counters::default();
        call.send(
            &mut counters,
            |http| {
                let mut request = http
                    .request(method.clone(), &url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body.clone());
                if let Some(key) = idempotency_key {
                    request = request.header("Idempotency-Key", key);
                }
                let request = platform
                    .api_headers
                    .iter()
                    .fold(request, |r, (name, value)| r.header(*name, *value));
                apply_auth(request, auth, credentials).map_err(FetchError::from)
            },
            decode,
        )
        .await
    }
}

/// The body of a write of `fields` (an update's when `update`) and its content type, as `writes` declares
/// it; the fields the plan left as backed up go out as their text in `stored` ([`with_stored_text`]).
/// Errors: a value no body of this encoding carries exactly (a stand-in left), a form `serde_qs` refuses.
fn encode_body(
    writes: &RecordWrites,
    fields: &Map<String, Value>,
    stored: Option<&StoredFields>,
    update: bool,
) -> Result<(&'static str, String), FetchError> {
    let (fields, spliced) = with_stored_text(writes.body, fields, stored);
    if holds_stand_in(&Value::Object(fields.clone())) {
        return Err(FetchError::Undecodable {
            context: "a value of the record cannot be sent as it was backed up (a number beyond \
                      what the body's encoding holds, or text with a lone surrogate in a form)"
                .to_owned(),
            source: "no exact encoding".into(),
        });
    }
    Ok(match writes.body {
        WriteBody::BracketedForm => (
            "application/x-www-form-urlencoded",
            bracketed_form(&renamed(writes, &fields), update)?,
        ),
        WriteBody::Json { envelope, unset } => (
            "application/json",
            spliced.iter().fold(
                json_body(
                    &renamed(writes, &fields),
                    envelope,
                    unset,
                    if update { writes.update_flags } else { &[] },
                    update,
                ),
                |body, (marker, text)| body.replacen(marker.as_str(), text, 1),
            ),
        ),
    })
}

/// One write request, its body encoded.
struct Outgoing<'a> {
    connection_id: &'a str,
    platform: &'static Platform,
    credentials: &'a BTreeMap<String, String>,
    method: WriteMethod,
    /// Relative to the API base URL, placeholders filled.
    path: &'a str,
    content_type: &'static str,
    body: String,
    idempotency_key: Option<&'a str>,
}

/// `fields` with each field the plan left as backed up replaced by what carries its stored text: in a JSON
/// body a marker string (a random one per write), to be replaced, serialized, by the text once the body is
/// encoded (the second member: each marker as serialized, and the text); in a form, a number's digits as the
/// form's text. Nulls are left to the body's own rule (left out, or unset).
fn with_stored_text<'a>(
    body: WriteBody,
    fields: &Map<String, Value>,
    stored: Option<&'a StoredFields>,
) -> (Map<String, Value>, Vec<(String, &'a str)>) {
    let mut fields = fields.clone();
    let mut spliced = Vec::new();
    let Some(stored) = stored else {
        return (fields, spliced);
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    for (name, value) in fields.iter_mut() {
        if value.is_null() {
            continue;
        }
        let Some(text) = stored.text_of(name, value) else {
            continue;
        };
        match body {
            WriteBody::Json { .. } => {
                let marker = format!("\u{1}listbackup-stored-{nonce}-{}\u{1}", spliced.len());
                let serialized = Value::String(marker.clone()).to_string();
                spliced.push((serialized, text));
                *value = Value::String(marker);
            }
            WriteBody::BracketedForm => {
                if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                    *value = Value::String(text.to_owned());
                }
            }
        }
    }
    (fields, spliced)
}

/// `fields` with each of [`RecordWrites::renames`] moved to its path (Zendesk's `description` to
/// `comment.body`).
fn renamed(writes: &RecordWrites, fields: &Map<String, Value>) -> Map<String, Value> {
    let mut body = fields.clone();
    for rename in writes.renames {
        let Some(value) = body.remove(rename.field) else {
            continue;
        };
        let Some((last, path)) = rename.to.split_last() else {
            continue;
        };
        let mut at = &mut body;
        for key in path {
            let entry = at
                .entry((*key).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else {
                unreachable!("made an object above")
            };
            at = next;
        }
        at.insert((*last).to_owned(), value);
    }
    body
}

/// `fields` as a JSON object, inside `{"<envelope>": …}` when there is one, with each of `flags` set to
/// `true` (QuickBooks' `sparse` on update). On update a `null` (a field the backup did not hold) is sent as
/// the platform clears a field ([`Unset`]); on create nulls are left out.
fn json_body(
    fields: &Map<String, Value>,
    envelope: Option<&str>,
    unset: Unset,
    flags: &[&str],
    update: bool,
) -> String {
    let mut object: Map<String, Value> = fields
        .iter()
        .filter_map(|(name, value)| match value {
            Value::Null if !update => None,
            Value::Null => Some((
                name.clone(),
                match unset {
                    Unset::Null => Value::Null,
                    Unset::EmptyString => Value::String(String::new()),
                },
            )),
            value => Some((name.clone(), value.clone())),
        })
        .collect();
    for flag in flags {
        object.insert((*flag).to_owned(), Value::Bool(true));
    }
    let body = match envelope {
        Some(envelope) => serde_json::json!({ envelope: object }),
        None => Value::Object(object),
    };
    body.to_string()
}

/// `fields` as a form with nested objects and lists in brackets (`address[city]=…`, `preferred_locales[0]=…`),
/// encoded by `serde_qs`. On update a `null` is sent as an empty value, which unsets the field; on create
/// nulls are left out, nested ones too: Stripe refuses an empty value for a parameter that cannot be unset
/// ("You passed an empty string for 'recurring[meter]'…"), and a create has nothing to unset.
fn bracketed_form(fields: &Map<String, Value>, update: bool) -> Result<String, FetchError> {
    let form: Map<String, Value> = fields
        .iter()
        .filter_map(|(name, value)| match value {
            Value::Null if update => Some((name.clone(), Value::String(String::new()))),
            Value::Null => None,
            value if update => Some((name.clone(), without_nulls(value))),
            value => Some((name.clone(), dropping_nulls(value))),
        })
        .collect();
    serde_qs::to_string(&form).map_err(|err| FetchError::Undecodable {
        context: "the record cannot be encoded as a form".to_owned(),
        source: err.into(),
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

/// `value` without its nested `null`s (a create's form leaves them out).
fn dropping_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), dropping_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(dropping_nulls)
                .collect(),
        ),
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
        let nested = json!({"recurring": {"interval": "month", "meter": null}});
        let Value::Object(nested) = nested else {
            unreachable!()
        };
        let create = bracketed_form(&nested, false).unwrap();
        assert_eq!(
            url::form_urlencoded::parse(create.as_bytes())
                .into_owned()
                .collect::<Vec<_>>(),
            [("recurring[interval]".to_owned(), "month".to_owned())],
            "a nested null is left out of a create: {create}"
        );
        let update = bracketed_form(&nested, true).unwrap();
        assert!(
            update.contains("recurring%5Bmeter%5D=") || update.contains("recurring[meter]="),
            "{update}"
        );
        let update = bracketed_form(&fields, true).unwrap();
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(update.as_bytes())
            .into_owned()
            .collect();
        assert!(
            decoded.contains(&("phone".into(), String::new())),
            "{update}"
        );
    }

    fn object(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            unreachable!()
        };
        map
    }

    #[test]
    fn json_bodies_are_enveloped_and_clear_fields_the_platform_way() {
        let fields = object(json!({"firstname": "Ada", "phone": null}));
        let parse = |text: String| serde_json::from_str::<Value>(&text).unwrap();
        // HubSpot: `{"properties": {…}}`, a property cleared with an empty string.
        let create = parse(json_body(
            &fields,
            Some("properties"),
            Unset::EmptyString,
            &[],
            false,
        ));
        assert_eq!(create, json!({"properties": {"firstname": "Ada"}}));
        let update = parse(json_body(
            &fields,
            Some("properties"),
            Unset::EmptyString,
            &[],
            true,
        ));
        assert_eq!(
            update,
            json!({"properties": {"firstname": "Ada", "phone": ""}})
        );
        // Shopify/ActiveCampaign: an envelope, `null` clears; Keap: no envelope.
        let update = parse(json_body(&fields, Some("customer"), Unset::Null, &[], true));
        assert_eq!(
            update,
            json!({"customer": {"firstname": "Ada", "phone": null}})
        );
        let create = parse(json_body(&fields, None, Unset::Null, &[], false));
        assert_eq!(create, json!({"firstname": "Ada"}));
        // QuickBooks: no envelope, `sparse: true` on an update, the version (`Id`, `SyncToken`) in the
        // fields the plan chose.
        let versioned = object(json!({"GivenName": "Ada", "Id": "7", "SyncToken": "3"}));
        let update = parse(json_body(&versioned, None, Unset::Null, &["sparse"], true));
        assert_eq!(
            update,
            json!({"GivenName": "Ada", "Id": "7", "SyncToken": "3", "sparse": true})
        );
    }

    #[test]
    fn a_renamed_field_moves_to_its_path_in_the_body() {
        use listbackup_domain::platform::writes::FieldRename;
        let writes = RecordWrites {
            renames: &[FieldRename {
                field: "description",
                to: &["comment", "body"],
            }],
            body: WriteBody::Json {
                envelope: Some("ticket"),
                unset: Unset::Null,
            },
            ..RecordWrites::BASE
        };
        let fields = object(json!({"subject": "Help", "description": "It broke"}));
        let body: Value = serde_json::from_str(&json_body(
            &renamed(&writes, &fields),
            Some("ticket"),
            Unset::Null,
            &[],
            false,
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"ticket": {"subject": "Help", "comment": {"body": "It broke"}}})
        );
    }

    #[test]
    fn fields_left_as_backed_up_go_out_as_their_stored_text() {
        use crate::connectors::stored::{lenient, StoredFields};
        let record = r#"{"id":"7","subject":"Help","description":"caf\u00e9 \ud800","amount":12345678901234567890.123,"big":1e400,"owner":"old-id"}"#;
        let stored = StoredFields::of(record, "").unwrap();
        let planned = |names: &[&str]| -> Map<String, Value> {
            let Value::Object(all) = lenient(record).unwrap() else {
                unreachable!()
            };
            all.into_iter()
                .filter(|(name, _)| names.contains(&name.as_str()))
                .collect()
        };
        // JSON, with an envelope and a rename: the stored text of each field the plan kept, the remapped
        // reference serialized anew.
        let writes = RecordWrites {
            renames: &[listbackup_domain::platform::writes::FieldRename {
                field: "description",
                to: &["comment", "body"],
            }],
            body: WriteBody::Json {
                envelope: Some("ticket"),
                unset: Unset::Null,
            },
            ..RecordWrites::BASE
        };
        let mut fields = planned(&["subject", "description", "amount", "big", "owner"]);
        fields.insert("owner".into(), Value::from("new-id"));
        let (_, body) = encode_body(&writes, &fields, Some(&stored), false).unwrap();
        assert_eq!(
            body,
            r#"{"ticket":{"amount":12345678901234567890.123,"big":1e400,"comment":{"body":"caf\u00e9 \ud800"},"owner":"new-id","subject":"Help"}}"#
        );
        // Without the stored text, a value no `Value` holds cannot be sent as it was: refused, not altered.
        assert!(encode_body(&writes, &fields, None, false).is_err());

        // A form carries a number's digits; a lone surrogate it cannot carry.
        let form = RecordWrites {
            body: WriteBody::BracketedForm,
            ..RecordWrites::BASE
        };
        let (_, body) =
            encode_body(&form, &planned(&["amount", "big"]), Some(&stored), false).unwrap();
        assert_eq!(body, "amount=12345678901234567890.123&big=1e400");
        assert!(encode_body(&form, &planned(&["description"]), Some(&stored), false).is_err());
    }
}
