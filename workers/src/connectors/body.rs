//! Reading a list answer without parsing its records: each record stays the JSON text the platform sent
//! (`serde_json::value::RawValue`), and only the fields paging and incremental runs need are read — the
//! envelope's paging fields, and each record's `id` and change time. Everything else is skipped by the
//! parser without being built into values.
//!
//! Nothing here builds a `serde_json::Value` of what a platform sent (but of a change time, once found): a
//! `Value` (without serde_json's `arbitrary_precision`) cannot hold `1e400` or a string with a lone
//! surrogate escape (`"\ud800"`), both valid JSON text (RFC 8259 §6, §8.2), and rounds
//! `12345678901234567890.123` and integers past `u64`. Such a value anywhere in a record, or beside the records
//! in the answer, would otherwise fail the page or drop the record silently ([`lookup`] reads one value by
//! its pointer instead, skipping the rest unread), and a number read as an id or a cursor keeps every digit
//! ([`Scalar`]).

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

/// An answer without its records array (empty when the answer is the array itself): where the listing's
/// pointers find the next cursor, whether there is more, and the announced total. Each member is kept as its
/// JSON text, read only when a pointer goes into it.
#[derive(Debug, Default)]
pub(crate) struct Envelope(Vec<(String, Member)>);

/// A member of an [`Envelope`]: as sent, or (on the way down to the records) the object holding them, without
/// them.
#[derive(Debug)]
enum Member {
    Raw(Box<RawValue>),
    Holding(Envelope),
}

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
        // A UTF-8 byte order mark before the JSON text: RFC 8259 §8.1 lets a parser ignore it, and servers
        // behind some frameworks send one (woocommerce/wc-api-python#40, schemathesis/schemathesis#1563:
        // "Unexpected UTF-8 BOM"); read as a damaged body, every attempt at the page would fail.
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let list = if path.is_empty() {
            ListBody {
                records: match shape {
                    Shape::Array => Deserialize::deserialize(&mut deserializer)?,
                    Shape::Object => shape.read(&mut deserializer)?.unwrap_or_default(),
                },
                envelope: Envelope::default(),
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
            ListBody { records, envelope }
        };
        deserializer.end()?;
        Ok(list)
    }
}

impl Envelope {
    /// The value at `pointer`, as a cursor: a non-empty string, or a number as written (every digit).
    pub fn text(&self, pointer: &str) -> Option<String> {
        match self.scalar(pointer)? {
            Scalar::Str(text) if !text.is_empty() => Some(text.into_owned()),
            Scalar::Num(number) => Some(number.to_owned()),
            _ => None,
        }
    }

    /// The boolean at `pointer` (`None` when absent or not a boolean).
    pub fn flag(&self, pointer: &str) -> Option<bool> {
        match self.scalar(pointer)? {
            Scalar::Bool(flag) => Some(flag),
            _ => None,
        }
    }

    /// The count at `pointer`: a number, or a numeric string (ActiveCampaign sends `"meta":{"total":"42"}`).
    pub fn count(&self, pointer: &str) -> Option<u64> {
        match self.scalar(pointer)? {
            Scalar::Num(number) => number.parse().ok(),
            Scalar::Str(text) => text.trim().parse().ok(),
            Scalar::Bool(_) => None,
        }
    }

    /// The scalar at `pointer` (RFC 6901), reading only the members on the way to it.
    fn scalar(&self, pointer: &str) -> Option<Scalar<'_>> {
        let rest = pointer.strip_prefix('/')?;
        let (first, rest) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let key = unescape_segment(first);
        let (_, member) = self.0.iter().find(|(name, _)| *name == key)?;
        match member {
            Member::Raw(raw) => Scalar::of(lookup(raw.get(), rest)?),
            Member::Holding(inner) if !rest.is_empty() => inner.scalar(rest),
            Member::Holding(_) => None,
        }
    }

    /// The names of its top-level members, in the answer's order.
    #[cfg(test)]
    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// A scalar as read from JSON text, without a `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string's content; a string holding a lone surrogate escape (no Rust string can hold one) is its
    /// JSON text as sent, quotes and escapes included, so that it stays one distinct value.
    Str(Cow<'a, str>),
    /// A number exactly as written: `12345678901234567890123`, `1e400`, `0.10`.
    Num(&'a str),
    Bool(bool),
}

impl<'a> Scalar<'a> {
    /// The scalar `raw` is; `None` for `null`, an array or an object.
    pub fn of(raw: &'a RawValue) -> Option<Self> {
        let text = raw.get();
        match text.as_bytes().first()? {
            b'"' => Some(Scalar::Str(
                serde_json::from_str::<String>(text)
                    .map(Cow::Owned)
                    .unwrap_or(Cow::Borrowed(text)),
            )),
            b'-' | b'0'..=b'9' => Some(Scalar::Num(text)),
            b't' => Some(Scalar::Bool(true)),
            b'f' => Some(Scalar::Bool(false)),
            _ => None,
        }
    }

    /// Its text as a condition or a template reads it (see `listbackup_domain::platform::listing::scalar_text`):
    /// a string's content, a number or a boolean as written.
    pub fn text(&self) -> Cow<'a, str> {
        match self {
            Scalar::Str(text) => text.clone(),
            Scalar::Num(number) => Cow::Borrowed(number),
            Scalar::Bool(true) => Cow::Borrowed("true"),
            Scalar::Bool(false) => Cow::Borrowed("false"),
        }
    }

    /// Its text as an id or a cursor: a string's content or a number as written; `None` for a boolean.
    pub fn id(self) -> Option<String> {
        match self {
            Scalar::Str(text) => Some(text.into_owned()),
            Scalar::Num(number) => Some(number.to_owned()),
            Scalar::Bool(_) => None,
        }
    }
}

/// The value at the JSON pointer `pointer` (RFC 6901; `""`: the whole text) inside the JSON text `text`, as
/// its own text, without building any value: the members and elements before and after it are skipped unread,
/// so that a value no `serde_json::Value` holds (`1e400`, `"\ud800"`) elsewhere in the text changes nothing.
/// `None` when absent, or when `text` is not JSON.
pub(crate) fn lookup<'a>(text: &'a str, pointer: &str) -> Option<&'a RawValue> {
    let mut current: &'a RawValue = serde_json::from_str(text).ok()?;
    if pointer.is_empty() {
        return Some(current);
    }
    for segment in pointer.strip_prefix('/')?.split('/') {
        let segment = unescape_segment(segment);
        let mut deserializer = serde_json::Deserializer::from_str(current.get());
        current = ChildSeed(&segment).deserialize(&mut deserializer).ok()??;
    }
    Some(current)
}

/// The scalar text at `pointer` of the JSON text `text` ([`lookup`], then [`Scalar::text`]).
pub(crate) fn scalar_text_at<'a>(text: &'a str, pointer: &str) -> Option<Cow<'a, str>> {
    Scalar::of(lookup(text, pointer)?).map(|scalar| scalar.text())
}

/// A JSON pointer's reference token with `~1` and `~0` unescaped (RFC 6901 §4).
fn unescape_segment(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Finds one member of an object (by name) or element of an array (by index), borrowed from the input;
/// everything else is skipped unread.
struct ChildSeed<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for ChildSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChildSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or an array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if found.is_none() && key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // RFC 6901 §4: an index is `0` or digits without a leading zero.
        let index = (self.0 == "0" || !self.0.starts_with('0'))
            .then(|| self.0.parse::<usize>().ok())
            .flatten();
        let mut found = None;
        let mut at = 0;
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if Some(at) == index {
                found = Some(element);
            }
            at += 1;
        }
        Ok(found)
    }

    // Scalars have no members.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
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
    type Value = (Option<Vec<Box<RawValue>>>, Envelope);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = (Option<Vec<Box<RawValue>>>, Envelope);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object holding `{}`", self.path.join("/"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut records = None;
        let mut envelope = Vec::new();
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
                    envelope.push((key.into_owned(), Member::Holding(inner)));
                }
                continue;
            }
            // As sent: whatever it holds (side-loaded records, a `1e400`) is read only if a pointer asks.
            envelope.push((key.into_owned(), Member::Raw(map.next_value()?)));
        }
        Ok((records, Envelope(envelope)))
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
        let read = |value: &Option<Box<RawValue>>| match (
            value.as_deref().and_then(Scalar::of),
            time.map(|t| t.format),
        ) {
            (Some(Scalar::Num(n)), Some(TimeFormat::UnixSeconds)) => n
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0)),
            (Some(Scalar::Num(n)), Some(TimeFormat::UnixMillis)) => n
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis),
            (Some(Scalar::Str(s)), Some(TimeFormat::Rfc3339)) => parse_time(&s),
            _ => None,
        };
        let time = read(&seed.nested_time).or_else(|| read(&seed.time));
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
        let mut deserializer = serde_json::Deserializer::from_str(self.raw.get());
        let value = ChildSeed(field).deserialize(&mut deserializer).ok()??;
        Scalar::of(value)?.id().filter(|text| !text.is_empty())
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
pub(crate) fn compact(text: &str) -> String {
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
    time: Option<Box<RawValue>>,
    nested_time: Option<Box<RawValue>>,
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
                // Read as sent: an id past `u64` keeps every digit.
                let id = map.next_value::<Box<RawValue>>()?;
                self.id = Scalar::of(&id).and_then(Scalar::id);
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

/// The value of one field of an object, as sent (`None` if absent, or if the value is not an object).
struct FieldSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<Box<RawValue>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<Box<RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
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

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
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
            list.envelope.names(),
            ["object", "has_more", "paging", "count", "url"],
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

    /// Values a `serde_json::Value` cannot hold, or holds only rounded: `1e400` (out of `f64`'s range),
    /// `"\ud800"` (a lone surrogate escape: valid JSON text, RFC 8259 §8.2, that no Rust string holds), and
    /// integers past `u64` (a Shopify- or Stripe-like 64-bit id fits; a 24-digit one does not). Before, a
    /// record id past `u64` was read as `1.2345678901234568e23` (two records could share it, and a cursor
    /// sent back was another number), and such a value anywhere beside the records failed every attempt at
    /// the page as a damaged body: "JSON.parse loses large integers" (databricks/cli#4136, rhysd/fixjson#19).
    #[test]
    fn ids_cursors_and_envelopes_keep_what_no_value_can_hold() {
        let body = br#"{"data":[{"n":1e400,"s":"\ud800","id":123456789012345678901234,"created":1704067205},
            {"id":"a\u0000b \udc00","created":1704067206}],
            "included":[{"name":"\ud83d","price":12345678901234567890.123,"x":1e400}],
            "has_more":true,"next":{"cursor":98765432109876543210987,"label":"caf\u00e9"},"total":"7"}"#;
        let list = ListBody::parse(body, "/data", false).unwrap();
        assert_eq!(list.envelope.flag("/has_more"), Some(true));
        assert_eq!(
            list.envelope.text("/next/cursor").as_deref(),
            Some("98765432109876543210987")
        );
        assert_eq!(list.envelope.text("/next/label").as_deref(), Some("café"));
        assert_eq!(list.envelope.count("/total"), Some(7));
        assert_eq!(
            list.envelope.text("/included/0/price").as_deref(),
            Some("12345678901234567890.123")
        );
        assert_eq!(list.envelope.text("/included/1/price"), None);
        assert_eq!(list.envelope.flag("/next"), None, "an object");
        let created = Some(TimeField {
            field: "created",
            nested: None,
            format: TimeFormat::UnixSeconds,
        });
        let texts: Vec<String> = list.records.iter().map(|r| r.get().to_owned()).collect();
        let fetched: Vec<Fetched> = list
            .records
            .into_iter()
            .map(|raw| read(raw, created, None))
            .collect();
        // Every digit of the id, and the change time read after the values before it.
        assert_eq!(fetched[0].id.as_deref(), Some("123456789012345678901234"));
        assert_eq!(fetched[0].time, DateTime::from_timestamp(1_704_067_205, 0));
        assert_eq!(
            fetched[0].field_text("id").as_deref(),
            Some("123456789012345678901234")
        );
        assert_eq!(fetched[0].field_text("n").as_deref(), Some("1e400"));
        // An id with a lone surrogate stays one distinct id (its JSON text), not none.
        assert_eq!(fetched[1].id.as_deref(), Some(r#""a\u0000b \udc00""#));
        assert_eq!(fetched[1].time, DateTime::from_timestamp(1_704_067_206, 0));
        // The records themselves, byte for byte.
        for (record, text) in fetched.into_iter().zip(texts) {
            assert_eq!(record.into_line(None).get(), text);
        }
        // Ids as text: a number as written, a string's content.
        assert_eq!(
            read(raw(r#"{"id":18446744073709551616}"#), None, None)
                .id
                .as_deref(),
            Some("18446744073709551616")
        );
        assert_eq!(
            read(raw(r#"{"id":"caf\u00e9"}"#), None, None).id.as_deref(),
            Some("café")
        );
        assert_eq!(read(raw(r#"{"id":true}"#), None, None).id, None);
    }

    #[test]
    fn a_pointer_finds_one_value_and_skips_the_rest_unread() {
        let text = r#"{"a":{"b/c":[10,{"d~e":"x"}],"big":1e400},"s":"\ud800","n":-0.10}"#;
        let at = |pointer| lookup(text, pointer).map(|raw| raw.get().to_owned());
        assert_eq!(at("/a/b~1c/0").as_deref(), Some("10"));
        assert_eq!(at("/a/b~1c/1/d~0e").as_deref(), Some(r#""x""#));
        assert_eq!(at("/a/big").as_deref(), Some("1e400"));
        assert_eq!(at("/n").as_deref(), Some("-0.10"));
        assert_eq!(at(""), Some(text.to_owned()));
        for absent in ["/a/b~1c/2", "/a/b~1c/01", "/a/b~1c/x", "/n/0", "/zz", "a"] {
            assert_eq!(at(absent), None, "{absent}");
        }
        assert_eq!(
            scalar_text_at(text, "/s").as_deref(),
            Some(r#""\ud800""#),
            "no Rust string holds it: its JSON text"
        );
        assert_eq!(scalar_text_at(text, "/a/b~1c/1/d~0e").as_deref(), Some("x"));
        assert_eq!(scalar_text_at(text, "/a"), None, "an object");
        assert!(lookup("not json", "").is_none());
    }

    #[test]
    fn a_byte_order_mark_before_the_answer_is_ignored() {
        let list = ListBody::parse(
            b"\xEF\xBB\xBF{\"data\":[{\"id\":1}],\"has_more\":false}",
            "/data",
            false,
        )
        .unwrap();
        assert_eq!(list.records.len(), 1);
        assert_eq!(list.envelope.flag("/has_more"), Some(false));
        let whole = ListBody::parse_one(b"\xEF\xBB\xBF{\"id\":1}", "").unwrap();
        assert_eq!(whole.records[0].get(), r#"{"id":1}"#);
        let array = ListBody::parse(b"\xEF\xBB\xBF[{\"id\":1}]", "", false).unwrap();
        assert_eq!(array.records.len(), 1);
        // Only before the text: anywhere else it is not JSON.
        assert!(ListBody::parse(b"[\xEF\xBB\xBF{\"id\":1}]", "", false).is_err());
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
