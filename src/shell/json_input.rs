//! Reading request bodies strictly: duplicate keys and NUL characters are errors (serde_json
//! would keep the last duplicate silently, and a NUL cannot be stored in PostgreSQL text),
//! each naming the JSON path it was found at.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
    /// JSON path, e.g. `events[2].attributes.order`.
    pub field: Option<String>,
}

/// Parse `bytes` as JSON with no duplicate key anywhere and no NUL in any string or key.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, InputError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict {
        path: String::new(),
    }
    .deserialize(&mut de)
    .map_err(|e| classify(&e))?;
    de.end().map_err(|e| classify(&e))?;
    Ok(v)
}

/// Errors our visitor raises carry a `code|path|message` prefix; serde_json's own are syntax.
fn classify(e: &serde_json::Error) -> InputError {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("strict|") {
        let mut parts = rest.splitn(3, '|');
        let code = match parts.next() {
            Some("duplicate_key") => "duplicate_key",
            _ => "invalid_text",
        };
        let path = parts.next().unwrap_or_default().to_string();
        let msg = parts.next().unwrap_or_default();
        // serde_json appends " at line L column C": keep it, it helps find the spot.
        return InputError {
            code,
            message: msg.to_string(),
            field: (!path.is_empty()).then_some(path),
        };
    }
    InputError {
        code: "invalid_json",
        message: format!("body is not valid JSON: {text}"),
        field: None,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Shown in messages: long keys are cut so a reply never echoes megabytes back.
pub fn shown(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

struct Strict {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.visit_string(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        if v.contains('\0') {
            return Err(E::custom(format!(
                "strict|nul|{}|`{}` holds a NUL character (\\u0000), which cannot be stored",
                self.path,
                if self.path.is_empty() {
                    "the body"
                } else {
                    &self.path
                }
            )));
        }
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, out.len()),
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return Err(de::Error::custom(format!(
                    "strict|nul|{}|a key in `{}` holds a NUL character (\\u0000)",
                    self.path,
                    if self.path.is_empty() {
                        "the body"
                    } else {
                        &self.path
                    }
                )));
            }
            let path = child(&self.path, &shown(&key));
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "strict|duplicate_key|{path}|`{path}` appears twice; send each key once"
                )));
            }
            let v = map.next_value_seed(Strict { path })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let e = parse_strict(br#"{"events":[{"id":"a","id":"b"}]}"#).unwrap_err();
        assert_eq!(e.code, "duplicate_key");
        assert_eq!(e.field.as_deref(), Some("events[0].id"));
    }

    #[test]
    fn nul_in_a_value_or_key_is_refused() {
        let e = parse_strict(br#"{"id":"a\u0000b"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_text");
        assert_eq!(e.field.as_deref(), Some("id"));
        let e = parse_strict(br#"{"attributes":{"k\u0000":1}}"#).unwrap_err();
        assert_eq!(e.code, "invalid_text");
    }

    #[test]
    fn ordinary_json_parses_as_serde_json_does() {
        let raw = br#"{"a":[1,2.5,"x",null,true],"b":{"c":"d"}}"#;
        let v = parse_strict(raw).unwrap();
        assert_eq!(v, serde_json::from_slice::<Value>(raw).unwrap());
        assert_eq!(parse_strict(b"{").unwrap_err().code, "invalid_json");
        assert_eq!(parse_strict(b"{} x").unwrap_err().code, "invalid_json");
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let long = "k".repeat(10_000);
        let raw = format!(r#"{{"{long}":1,"{long}":2}}"#);
        let e = parse_strict(raw.as_bytes()).unwrap_err();
        assert!(e.message.len() < 400, "{}", e.message.len());
    }
}
