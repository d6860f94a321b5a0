//! Reading a list answer without parsing its records: each record stays the JSON text the platform sent
//! (`serde_json::value::RawValue`), and only the fields paging and incremental runs need are read — the
//! envelope's paging fields, and each record's `id` and change time. Everything else is skipped by the
//! parser without being built into values.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub(crate) use listbackup_domain::platform::{TimeField, TimeFormat};

/// The parts of one list answer the pager uses: the records, as sent, and everything else of the answer
/// (its envelope: paging fields, totals), in which the listing's pointers find the next cursor.
#[derive(Debug, Default)]
pub(crate) struct ListBody {
    pub records: Vec<Box<RawValue>>,
    pub envelope: Envelope,
}

/// An answer without its records array (`Value::Null` when the answer is the array itself): where the
/// listing's pointers find the next cursor, whether there is more, and the announced total.
#[derive(Debug, Default)]
pub(crate) struct Envelope(pub Value);

impl ListBody {
    /// Parses an answer whose records are the array at the JSON pointer `records` (`""`: the answer is the
    /// array). A syntax error or a premature end is a damaged body; a missing records array is the answer's
    /// shape, unless `absent_is_empty` says such an answer holds no records (see `BodyError::from_json`).
    pub fn parse(
        body: &[u8],
        records: &str,
        absent_is_empty: bool,
    ) -> Result<Self, serde_json::Error> {
        Self::parse_as(body, records, absent_is_empty, Shape::Array)
    }

    /// Parses an answer whose only record is the object at the JSON pointer `records` (`""`: the answer is
    /// the record), as Shopify's `/shop.json` sends `{"shop":{…}}`. Anything but an object there is a
    /// shape error.
    pub fn parse_one(body: &[u8], records: &str) -> Result<Self, serde_json::Error> {
        Self::parse_as(body, records, false, Shape::Object)
    }

    fn parse_as(
        body: &[u8],
        records: &str,
        absent_is_empty: bool,
        shape: Shape,
    ) -> Result<Self, serde_json::Error> {
        let path: Vec<String> = records
            .split('/')
            .skip(1)
            .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
            .collect();
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let list = if path.is_empty() {
            ListBody {
                records: match shape {
                    Shape::Array => Deserialize::deserialize(&mut deserializer)?,
                    Shape::Object => shape.read(&mut deserializer)?.unwrap_or_default(),
                },
                envelope: Envelope(Value::Null),
            }
        } else {
            let (found, envelope) =
                ObjectSeed { path: &path, shape }.deserialize(&mut deserializer)?;
            let records = match found {
                Some(records) => records,
                None if absent_is_empty => Vec::new(),
                None => {
                    return Err(de::Error::custom(format_args!(
                        "the answer has no records list at `{records}`"
                    )))
                }
            };
            ListBody {
                records,
                envelope: Envelope(envelope),
            }
        };
        deserializer.end()?;
        Ok(list)
    }
}

impl Envelope {
    /// The value at `pointer`, as a cursor: a non-empty string, or a number.
    pub fn text(&self, pointer: &str) -> Option<String> {
        match self.0.pointer(pointer)? {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    /// The boolean at `pointer` (`None` when absent or not a boolean).
    pub fn flag(&self, pointer: &str) -> Option<bool> {
        self.0.pointer(pointer)?.as_bool()
    }

    /// The count at `pointer`: a number, or a numeric string (ActiveCampaign sends `"meta":{"total":"42"}`).
    pub fn count(&self, pointer: &str) -> Option<u64> {
        match self.0.pointer(pointer)? {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }
}

/// What the records pointer points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An array of records (`null`: none).
    Array,
    /// One object, the only record.
    Object,
}

impl Shape {
    /// The records at the deserializer's position, in this shape.
    fn read<'de, D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Vec<Box<RawValue>>>, D::Error> {
        match self {
            Shape::Array => Option::<Vec<Box<RawValue>>>::deserialize(deserializer),
            Shape::Object => {
                let raw = Box::<RawValue>::deserialize(deserializer)?;
                if raw.get().trim_start().starts_with('{') {
                    Ok(Some(vec![raw]))
                } else {
                    Err(de::Error::custom("the record is not an object"))
                }
            }
        }
    }
}

/// Walks down `path` through objects to the records array (or object), keeping every other member as a
/// value.
struct ObjectSeed<'a> {
    path: &'a [String],
    shape: Shape,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = (Option<Vec<Box<RawValue>>>, Value);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = (Option<Vec<Box<RawValue>>>, Value);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object holding `{}`", self.path.join("/"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut records = None;
        let mut envelope = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key == self.path[0] {
                if self.path.len() == 1 {
                    // `null` where the array would be: no records (as an absent one).
                    records = map.next_value_seed(ShapeSeed(self.shape))?;
                } else {
                    let (found, inner) = map.next_value_seed(ObjectSeed {
                        path: &self.path[1..],
                        shape: self.shape,
                    })?;
                    records = found;
                    envelope.insert(key.into_owned(), inner);
                }
                continue;
            }
            envelope.insert(key.into_owned(), map.next_value::<Value>()?);
        }
        Ok((records, Value::Object(envelope)))
    }
}

/// Reads the records in a [`Shape`].
struct ShapeSeed(Shape);

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = Option<Vec<Box<RawValue>>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.0.read(deserializer)
    }
}

/// An object key, borrowed from the input unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// One record of a page: its text and what paging and incremental runs read from it.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub raw: Box<RawValue>,
    /// `id`, string or number; `None` when absent (or the record is not an object).
    pub id: Option<String>,
    /// When it last changed, if the data type is incremental and the record says.
    pub time: Option<DateTime<Utc>>,
    /// Whether the record already has the endpoint's tag field.
    pub has_tag: bool,
}

impl Fetched {
    /// Reads the record's id (the top-level `id_field`), its change time (if asked) and whether `tag_field`
    /// is present, skipping the rest.
    pub fn read(
        raw: Box<RawValue>,
        id_field: &str,
        time: Option<TimeField>,
        tag_field: Option<&str>,
    ) -> Self {
        let mut seed = KeysSeed {
            id_field,
            time_field: time.map(|t| t.field),
            nested: time.and_then(|t| t.nested),
            tag_field,
            id: None,
            time: None,
            nested_time: None,
            has_tag: false,
        };
        let mut deserializer = serde_json::Deserializer::from_str(raw.get());
        // A record that is not an object (or whose fields are oddly typed) simply has no keys.
        let _ = (&mut seed).deserialize(&mut deserializer);
        let read = |value: Option<Value>| match (value, time.map(|t| t.format)) {
            (Some(Value::Number(n)), Some(TimeFormat::UnixSeconds)) => {
                n.as_i64().and_then(|s| DateTime::from_timestamp(s, 0))
            }
            (Some(Value::Number(n)), Some(TimeFormat::UnixMillis)) => {
                n.as_i64().and_then(DateTime::from_timestamp_millis)
            }
            (Some(Value::String(s)), Some(TimeFormat::Rfc3339)) => parse_time(&s),
            _ => None,
        };
        let time = read(seed.nested_time).or_else(|| read(seed.time));
        Self {
            raw,
            id: seed.id,
            time,
            has_tag: seed.has_tag,
        }
    }

    /// The top-level `field` of the record as a cursor value (a non-empty string, or a number's text); read
    /// only for a page's last record ([`listbackup_domain::platform::Pagination::AfterLastValue`]).
    pub fn field_text(&self, field: &str) -> Option<String> {
        match serde_json::from_str::<Value>(self.raw.get())
            .ok()?
            .get(field)?
        {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    /// What identifies the record for loop detection and offset anchoring: its id, or its whole text when it
    /// has none.
    pub fn identity(&self) -> &str {
        self.id.as_deref().unwrap_or_else(|| self.raw.get())
    }

    /// The record as one NDJSON line: compacted if its text spans lines, and with the endpoint's tag added
    /// when it lacks the field.
    pub fn into_line(self, tag: Option<(&str, &str)>) -> Box<RawValue> {
        let text = self.raw.get();
        let spans_lines = text.contains(['\n', '\r']);
        let tag = tag.filter(|_| !self.has_tag && text.starts_with('{'));
        if !spans_lines && tag.is_none() {
            return self.raw;
        }
        let mut line = if spans_lines {
            compact(text)
        } else {
            text.to_owned()
        };
        if let Some((field, value)) = tag {
            // `{` + `"field":"value"` + (`,` unless the object is empty) + the rest.
            let member = format!(
                "{}:{}",
                Value::String(field.to_owned()),
                Value::String(value.to_owned())
            );
            let empty = line[1..].trim_start().starts_with('}');
            let separator = if empty { "" } else { "," };
            line.insert_str(1, &format!("{member}{separator}"));
        }
        RawValue::from_string(line).unwrap_or(self.raw)
    }
}

/// JSON text without whitespace outside strings: the same document on one line, byte for byte otherwise
/// (numbers keep every digit; a JSON string cannot hold a raw newline, RFC 8259 §7, so nothing is lost).
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

struct KeysSeed<'a> {
    id_field: &'a str,
    time_field: Option<&'a str>,
    nested: Option<(&'a str, &'a str)>,
    tag_field: Option<&'a str>,
    id: Option<String>,
    time: Option<Value>,
    nested_time: Option<Value>,
    has_tag: bool,
}

impl<'de> DeserializeSeed<'de> for &mut KeysSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut KeysSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key == self.id_field {
                self.id = match map.next_value::<Value>()? {
                    Value::String(id) => Some(id),
                    Value::Number(id) => Some(id.to_string()),
                    _ => None,
                };
            } else if Some(key.as_ref()) == self.time_field {
                self.time = Some(map.next_value()?);
            } else if let Some((_, field)) =
                self.nested.filter(|(object, _)| *object == key.as_ref())
            {
                self.nested_time = map.next_value_seed(FieldSeed(field))?;
            } else {
                if Some(key.as_ref()) == self.tag_field {
                    self.has_tag = true;
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The value of one field of an object (`None` if absent, or if the value is not an object).
struct FieldSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Value>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key == self.0 {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
}

/// RFC 3339, or Keap's `2024-01-02T03:04:05.000+0000` (offset without a colon).
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: Box<RawValue>, time: Option<TimeField>, tag: Option<&str>) -> Fetched {
        Fetched::read(raw, "id", time, tag)
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_list_keeps_its_records_as_sent_and_reads_the_paging_fields() {
        let body = br#"{"object":"list","data":[{"id":"cus_1", "n":1.50},{"id":"cus_2"}],
            "has_more":true,"paging":{"next":{"after":"101","link":"x"}},"count":7,"url":"/v1/customers"}"#;
        let list = ListBody::parse(body, "/data", false).unwrap();
        let texts: Vec<&str> = list.records.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"id":"cus_1", "n":1.50}"#, r#"{"id":"cus_2"}"#]);
        assert_eq!(list.envelope.flag("/has_more"), Some(true));
        assert_eq!(
            list.envelope.text("/paging/next/after").as_deref(),
            Some("101")
        );
        assert_eq!(list.envelope.count("/count"), Some(7));
        assert_eq!(
            list.envelope.0.pointer("/data"),
            None,
            "the records are not kept twice"
        );
        let numeric = ListBody::parse(
            br#"{"results":[],"paging":{"next":{"after":5}}}"#,
            "/results",
            false,
        );
        assert_eq!(
            numeric
                .unwrap()
                .envelope
                .text("/paging/next/after")
                .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn records_are_found_down_a_pointer_or_as_the_whole_answer() {
        let quickbooks = ListBody::parse(
            br#"{"QueryResponse":{"Customer":[{"Id":"1"}],"startPosition":1,"maxResults":1},"time":"t"}"#,
            "/QueryResponse/Customer",
            true,
        )
        .unwrap();
        assert_eq!(quickbooks.records.len(), 1);
        assert_eq!(
            quickbooks.envelope.count("/QueryResponse/maxResults"),
            Some(1)
        );
        assert_eq!(quickbooks.envelope.text("/time").as_deref(), Some("t"));
        let empty =
            ListBody::parse(br#"{"QueryResponse":{}}"#, "/QueryResponse/Customer", true).unwrap();
        assert!(empty.records.is_empty());
        assert!(
            ListBody::parse(br#"{"QueryResponse":{}}"#, "/QueryResponse/Customer", false).is_err()
        );
        let array = ListBody::parse(br#"[{"id":1},{"id":2}]"#, "", false).unwrap();
        assert_eq!(array.records.len(), 2);
        let total = ListBody::parse(
            br#"{"contacts":[],"meta":{"total":"42"}}"#,
            "/contacts",
            false,
        )
        .unwrap();
        assert_eq!(total.envelope.count("/meta/total"), Some(42));
    }

    #[test]
    fn a_single_object_is_the_one_record_as_sent() {
        let shop = ListBody::parse_one(
            br#"{"shop":{"id":548380009,"name":"Acme","price":1.50},"extra":true}"#,
            "/shop",
        )
        .unwrap();
        assert_eq!(shop.records.len(), 1);
        assert_eq!(
            shop.records[0].get(),
            r#"{"id":548380009,"name":"Acme","price":1.50}"#
        );
        assert_eq!(shop.envelope.flag("/extra"), Some(true));
        let whole = ListBody::parse_one(br#"{"id":1}"#, "").unwrap();
        assert_eq!(whole.records.len(), 1);
        // Anything but an object where the record should be is the answer's shape, not a damaged body.
        for body in [
            &br#"{"shop":[{"id":1}]}"#[..],
            br#"{"shop":"x"}"#,
            br#"{"other":{}}"#,
        ] {
            let err = ListBody::parse_one(body, "/shop").err().unwrap();
            assert_eq!(
                err.classify(),
                serde_json::error::Category::Data,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An array listing still refuses an object.
        assert!(ListBody::parse(br#"{"shop":{"id":1}}"#, "/shop", false).is_err());
    }

    #[test]
    fn a_cut_off_body_is_a_syntax_error_and_a_missing_list_is_a_shape_error() {
        use serde_json::error::Category;
        let cut =
            ListBody::parse(br#"{"data":[{"id":"cus_1"},{"id":"cu"#, "/data", false).unwrap_err();
        assert_eq!(cut.classify(), Category::Eof);
        let html = ListBody::parse(b"<html>Bad gateway</html>", "/data", false).unwrap_err();
        assert_eq!(html.classify(), Category::Syntax);
        let trailing = ListBody::parse(br#"{"data":[]} x"#, "/data", false).unwrap_err();
        assert_eq!(trailing.classify(), Category::Syntax);
        let missing = ListBody::parse(br#"{"results":[]}"#, "/data", false).unwrap_err();
        assert_eq!(missing.classify(), Category::Data);
        assert!(
            missing.to_string().contains("no records list at `/data`"),
            "{missing}"
        );
        let not_a_list = ListBody::parse(br#"{"data":{"id":1}}"#, "/data", false).unwrap_err();
        assert_eq!(not_a_list.classify(), Category::Data);
    }

    #[test]
    fn records_give_their_id_and_change_time_and_nothing_else_is_read() {
        let stripe = read(
            raw(
                r#"{"object":"event","data":{"id":"inner","created":1},"id":"evt_1","created":1704067205}"#,
            ),
            Some(TimeField {
                field: "created",
                nested: None,
                format: TimeFormat::UnixSeconds,
            }),
            None,
        );
        assert_eq!(stripe.id.as_deref(), Some("evt_1"));
        assert_eq!(stripe.time, DateTime::from_timestamp(1_704_067_205, 0));
        let keap = read(
            raw(r#"{"id":42,"last_updated":"2024-01-02T03:04:05.123+0000"}"#),
            Some(TimeField {
                field: "last_updated",
                nested: None,
                format: TimeFormat::Rfc3339,
            }),
            None,
        );
        assert_eq!(keap.id.as_deref(), Some("42"));
        assert_eq!(
            keap.time,
            DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123Z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        );
        let hubspot = TimeField {
            field: "updatedAt",
            nested: Some(("properties", "lastmodifieddate")),
            format: TimeFormat::Rfc3339,
        };
        let contact = read(
            raw(
                r#"{"id":"7","properties":{"email":"a@b","lastmodifieddate":"2024-01-02T03:04:05.123Z"},
                "updatedAt":"2024-01-02T03:04:05.200Z"}"#,
            ),
            Some(hubspot),
            None,
        );
        // The property the search API filters on wins over `updatedAt`.
        assert_eq!(
            contact.time.map(|t| t.timestamp_millis()),
            Some(1_704_164_645_123)
        );
        let without = read(
            raw(
                r#"{"id":"8","properties":{"email":"a@b"},"updatedAt":"2024-01-02T03:04:05.200Z"}"#,
            ),
            Some(hubspot),
            None,
        );
        assert_eq!(
            without.time.map(|t| t.timestamp_millis()),
            Some(1_704_164_645_200)
        );
        let odd_properties = read(
            raw(r#"{"id":"9","properties":[1,{"x":2}],"updatedAt":"2024-01-02T03:04:05.200Z"}"#),
            Some(hubspot),
            None,
        );
        assert_eq!(odd_properties.id.as_deref(), Some("9"));
        assert!(odd_properties.time.is_some());
        let odd = read(raw(r#"[1,2]"#), None, None);
        assert_eq!((odd.id, odd.time), (None, None));
        assert_eq!(
            read(raw(r#"{"name":"x"}"#), None, None).identity(),
            r#"{"name":"x"}"#
        );
    }

    #[test]
    fn a_record_spanning_lines_becomes_one_line_and_tags_are_added_once() {
        let pretty = read(
            raw("{\n  \"id\": \"a b\",\n  \"n\": 12345678901234567890123\n}"),
            None,
            None,
        );
        assert_eq!(
            pretty.into_line(None).get(),
            r#"{"id":"a b","n":12345678901234567890123}"#
        );
        let tag = Some(("objectType", "deals"));
        let plain = read(raw(r#"{"id":"default"}"#), None, tag.map(|t| t.0));
        assert_eq!(
            plain.into_line(tag).get(),
            r#"{"objectType":"deals","id":"default"}"#
        );
        let tagged = read(raw(r#"{"objectType":"tickets"}"#), None, tag.map(|t| t.0));
        assert_eq!(tagged.into_line(tag).get(), r#"{"objectType":"tickets"}"#);
        let empty = read(raw(r#"{ }"#), None, tag.map(|t| t.0));
        assert_eq!(empty.into_line(tag).get(), r#"{"objectType":"deals" }"#);
        let unchanged = read(raw(r#"{"id":1,  "x":"y"}"#), None, None);
        assert_eq!(unchanged.into_line(None).get(), r#"{"id":1,  "x":"y"}"#);
    }

    #[test]
    fn parses_keap_and_rfc3339_times() {
        let expected = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123Z").unwrap();
        assert_eq!(
            parse_time("2024-01-02T03:04:05.123+0000").unwrap(),
            expected
        );
        assert_eq!(parse_time("2024-01-02T03:04:05.123Z").unwrap(), expected);
        assert!(parse_time("yesterday").is_none());
    }
}
