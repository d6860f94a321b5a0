//! A stored record read for a restore without losing what a `serde_json::Value` cannot hold (this workspace
//! builds serde_json without `arbitrary_precision`, a feature that would merge into every crate): `1e400`
//! (RFC 8259 §6 sets no range), digits past f64 (`12345678901234567890.123`, an integer past 2^64), a lone
//! surrogate escape (`"\ud800"`, §8.2).
//!
//! The restore plans with a [`Value`] ([`lenient`]): where the text holds such a value, it stands in as a
//! string carrying the JSON text ([`STAND_IN`] + text), so two records compare equal exactly when their texts
//! do. The write sends each field the plan left as backed up as its stored JSON text ([`StoredFields`]),
//! spliced into the body; only the fields it changed (ids remapped) are serialized from a `Value`.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What a value's stand-in string starts with: control characters no platform's text is expected to start
/// with, then the value's JSON text.
pub const STAND_IN: &str = "\u{0}listbackup-json\u{0}";

/// `text` (one JSON value) as a [`Value`] to plan with: as parsed where parsing keeps it exactly, otherwise
/// each member or item parsed alone, and each scalar no `Value` holds exactly (a number that does not come
/// back as the same text, a string with a lone surrogate) a stand-in string ([`STAND_IN`] + its text).
/// Errors: `text` is not JSON, or an object key holds a lone surrogate.
pub fn lenient(text: &str) -> Result<Value, serde_json::Error> {
    let text = text.trim();
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if !holds_number(&value) || serde_json::to_string(&value).is_ok_and(|same| same == text) {
            return Ok(value);
        }
        if let Value::Number(_) = value {
            return Ok(stand_in(text));
        }
    }
    match text.as_bytes().first() {
        Some(b'{') => {
            let members: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text)?;
            let members = members
                .into_iter()
                .map(|(name, raw)| Ok((name, lenient(raw.get())?)))
                .collect::<Result<Map<String, Value>, serde_json::Error>>()?;
            Ok(Value::Object(members))
        }
        Some(b'[') => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(text)?;
            let items = items
                .iter()
                .map(|raw| lenient(raw.get()))
                .collect::<Result<Vec<Value>, serde_json::Error>>()?;
            Ok(Value::Array(items))
        }
        _ => {
            // Well-formed JSON text (checked) that no `Value` holds.
            let raw: Box<RawValue> = serde_json::from_str(text)?;
            Ok(stand_in(raw.get()))
        }
    }
}

fn stand_in(text: &str) -> Value {
    Value::String(format!("{STAND_IN}{text}"))
}

fn holds_number(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::Array(items) => items.iter().any(holds_number),
        Value::Object(members) => members.values().any(holds_number),
        _ => false,
    }
}

/// Whether `value` holds a stand-in ([`STAND_IN`]) anywhere.
pub fn holds_stand_in(value: &Value) -> bool {
    match value {
        Value::String(text) => text.starts_with(STAND_IN),
        Value::Array(items) => items.iter().any(holds_stand_in),
        Value::Object(members) => members.values().any(holds_stand_in),
        _ => false,
    }
}

/// The writable fields of a stored record as stored: the members of the object at the data type's
/// `fields_at` (RFC 6901; `""` the record itself, HubSpot's `/properties`), each with its JSON text and the
/// [`lenient`] value the plan sees of it.
#[derive(Debug, Default, Clone)]
pub struct StoredFields {
    fields: BTreeMap<String, (Box<RawValue>, Value)>,
}

impl StoredFields {
    /// The fields of `record` (a stored record's JSON text) at `fields_at`; empty when there is no object
    /// there. Errors: the text is not JSON.
    pub fn of(record: &str, fields_at: &str) -> Result<Self, serde_json::Error> {
        let mut members: BTreeMap<String, Box<RawValue>> = match serde_json::from_str(record) {
            Ok(members) => members,
            Err(_) => return Ok(Self::default()),
        };
        for segment in fields_at.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            let Some(inner) = members.get(&segment) else {
                return Ok(Self::default());
            };
            members = match serde_json::from_str(inner.get()) {
                Ok(inner) => inner,
                Err(_) => return Ok(Self::default()),
            };
        }
        let fields = members
            .into_iter()
            .map(|(name, raw)| {
                let value = lenient(raw.get())?;
                Ok((name, (raw, value)))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self { fields })
    }

    /// The stored JSON text of field `name` when `value` is what the plan sees of it (the field is sent as
    /// backed up); `None` when the plan changed it or there is no such field.
    pub fn text_of(&self, name: &str, value: &Value) -> Option<&str> {
        self.fields
            .get(name)
            .filter(|(_, seen)| seen == value)
            .map(|(raw, _)| raw.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_no_value_holds_stand_in_as_their_text_and_the_rest_parse_as_usual() {
        let text = r#"{"a":1,"big":1e400,"digits":12345678901234567890.123,"n":[1,123456789012345678901234567890],"lone":"x\ud800","s":"caf\u00e9","o":{"k":0.5}}"#;
        let value = lenient(text).unwrap();
        assert_eq!(value["a"], 1);
        assert_eq!(value["big"], format!("{STAND_IN}1e400"));
        assert_eq!(
            value["digits"],
            format!("{STAND_IN}12345678901234567890.123")
        );
        assert_eq!(value["n"][0], 1);
        assert_eq!(
            value["n"][1],
            format!("{STAND_IN}123456789012345678901234567890")
        );
        assert_eq!(value["lone"], format!("{STAND_IN}\"x\\ud800\""));
        assert_eq!(value["s"], "café");
        assert_eq!(value["o"]["k"], 0.5);
        assert!(holds_stand_in(&value) && !holds_stand_in(&value["o"]));
        assert!(lenient("{").is_err());
    }

    #[test]
    fn stored_fields_give_their_text_while_the_plan_keeps_their_value() {
        let record = r#"{"id":"1","properties":{"amount":12345678901234567890.123,"name":"A"}}"#;
        let fields = StoredFields::of(record, "/properties").unwrap();
        let amount = lenient("12345678901234567890.123").unwrap();
        assert_eq!(
            fields.text_of("amount", &amount),
            Some("12345678901234567890.123")
        );
        assert_eq!(fields.text_of("name", &Value::from("B")), None);
        assert_eq!(fields.text_of("name", &Value::from("A")), Some(r#""A""#));
        let top = StoredFields::of(record, "").unwrap();
        assert_eq!(top.text_of("id", &Value::from("1")), Some(r#""1""#));
    }
}
