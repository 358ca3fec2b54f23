//! Reading JSON bodies field by field; every failure carries the code the caller chose and
//! names the field, e.g. `interactions[0].payload.id`.

use serde_json::{Map, Value};

use super::errors::IsaError;

/// Code for a structural problem no more specific code covers.
pub(crate) const INVALID_PARAMETERS: u32 = 10089;
/// Longest identifier accepted (digest §5: channel address, end user, conversation ids).
pub(crate) const MAX_IDENTIFIER_LEN: usize = 240;

/// A JSON object being read, with its path for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

/// The path of `key` inside `path`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of item `index` of array `path`.
pub(crate) fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

impl<'a> Obj<'a> {
    /// `value` as an object, else `code`.
    pub(crate) fn of(value: &'a Value, path: &'a str, code: u32) -> Result<Self, IsaError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            _ => Err(IsaError::new(
                code,
                format!("{} must be a JSON object", shown(path)),
            )),
        }
    }

    pub(crate) fn path(&self) -> &'a str {
        self.path
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn err(&self, code: u32, key: &str, what: &str) -> IsaError {
        IsaError::new(code, format!("{} {what}", join(self.path, key)))
    }

    /// Refuses fields not in `allowed` (the schema's property list) with 10089.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), IsaError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(IsaError::new(
                INVALID_PARAMETERS,
                format!("unknown field {}", join(self.path, unknown)),
            )),
            None => Ok(()),
        }
    }

    /// An optional string field.
    pub(crate) fn opt_str(&self, key: &str, code: u32) -> Result<Option<&'a str>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(code, key, "must be a string")),
        }
    }

    /// A required, non-empty string field.
    pub(crate) fn req_str(&self, key: &str, code: u32) -> Result<&'a str, IsaError> {
        match self.opt_str(key, code)? {
            None => Err(self.err(code, key, "is required")),
            Some("") => Err(self.err(code, key, "must not be empty")),
            Some(s) => Ok(s),
        }
    }

    /// A required, non-empty string of at most `max` characters.
    pub(crate) fn req_id(&self, key: &str, max: usize, code: u32) -> Result<&'a str, IsaError> {
        let s = self.req_str(key, code)?;
        let len = s.chars().count();
        if len > max {
            return Err(self.err(
                code,
                key,
                &format!("is {len} characters long, more than {max}"),
            ));
        }
        Ok(s)
    }

    /// A required string naming a 15-character record id.
    pub(crate) fn req_record_id(&self, key: &str, code: u32) -> Result<&'a str, IsaError> {
        let s = self.req_str(key, code)?;
        let len = s.chars().count();
        if len != super::state::RECORD_ID_LEN || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(self.err(
                code,
                key,
                &format!("must be a 15-character Salesforce id, got {len} characters: {s:?}"),
            ));
        }
        Ok(s)
    }

    /// An optional string field restricted to `values`.
    pub(crate) fn opt_enum(
        &self,
        key: &str,
        values: &[&str],
        code: u32,
    ) -> Result<Option<&'a str>, IsaError> {
        match self.opt_str(key, code)? {
            None => Ok(None),
            Some(s) if values.contains(&s) => Ok(Some(s)),
            Some(s) => Err(self.err(
                code,
                key,
                &format!("is {s:?}, not one of {}", values.join(", ")),
            )),
        }
    }

    /// A required string field restricted to `values`.
    pub(crate) fn req_enum(
        &self,
        key: &str,
        values: &[&str],
        code: u32,
    ) -> Result<&'a str, IsaError> {
        self.opt_enum(key, values, code)?
            .ok_or_else(|| self.err(code, key, "is required"))
    }

    /// An optional boolean field.
    pub(crate) fn opt_bool(&self, key: &str, code: u32) -> Result<Option<bool>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(code, key, "must be a boolean")),
        }
    }

    /// A required boolean field.
    pub(crate) fn req_bool(&self, key: &str, code: u32) -> Result<bool, IsaError> {
        self.opt_bool(key, code)?
            .ok_or_else(|| self.err(code, key, "is required"))
    }

    /// An optional integer field.
    pub(crate) fn opt_i64(&self, key: &str, code: u32) -> Result<Option<i64>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(code, key, "must be an integer")),
        }
    }

    /// A required integer field.
    pub(crate) fn req_i64(&self, key: &str, code: u32) -> Result<i64, IsaError> {
        self.opt_i64(key, code)?
            .ok_or_else(|| self.err(code, key, "is required"))
    }

    /// An optional number field.
    pub(crate) fn opt_f64(&self, key: &str, code: u32) -> Result<Option<f64>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(code, key, "must be a number")),
        }
    }

    /// An optional array field whose length lies in `min..=max`.
    pub(crate) fn opt_array(
        &self,
        key: &str,
        min: usize,
        max: usize,
        code: u32,
    ) -> Result<Option<&'a Vec<Value>>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) if items.len() < min || items.len() > max => {
                let bound = if max == usize::MAX {
                    format!("at least {min}")
                } else if min == max {
                    format!("exactly {min}")
                } else {
                    format!("{min} to {max}")
                };
                Err(self.err(
                    code,
                    key,
                    &format!("holds {} items; {bound} allowed", items.len()),
                ))
            }
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.err(code, key, "must be an array")),
        }
    }

    /// A required array field whose length lies in `min..=max`.
    pub(crate) fn req_array(
        &self,
        key: &str,
        min: usize,
        max: usize,
        code: u32,
    ) -> Result<&'a Vec<Value>, IsaError> {
        self.opt_array(key, min, max, code)?
            .ok_or_else(|| self.err(code, key, "is required"))
    }

    /// An optional object field.
    pub(crate) fn opt_obj(
        &self,
        key: &str,
        path: &'a str,
        code: u32,
    ) -> Result<Option<Obj<'a>>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::of(v, path, code).map(Some),
        }
    }

    /// An optional map of strings to strings (`routingAttributes`).
    pub(crate) fn opt_string_map(
        &self,
        key: &str,
        code: u32,
    ) -> Result<Option<Vec<(String, String)>>, IsaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(IsaError::new(
                        code,
                        format!("{} must be a string", join(&join(self.path, key), k)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.err(code, key, "must be an object of strings")),
        }
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "the body" } else { path }
}

/// The fields of `Participant` (YAML `Participant`).
pub(crate) const PARTICIPANT_FIELDS: &[&str] = &["appType", "subject", "role"];
/// `AppType` (YAML).
pub(crate) const APP_TYPES: &[&str] = &[
    "custom",
    "agent",
    "chatbot",
    "conversation",
    "live_message",
    "iamessage",
];
/// `ParticipantRole` (YAML).
pub(crate) const ROLES: &[&str] = &["EndUser", "Chatbot", "Agent", "Supervisor", "System"];

/// A participant read from `value`: (appType, subject, role), each checked against its enum.
pub(crate) fn participant<'a>(
    value: &'a Value,
    path: &str,
    subject_code: u32,
) -> Result<(&'a str, &'a str, &'a str), IsaError> {
    {
        let p = Obj::of(value, path, INVALID_PARAMETERS)?;
        p.only(PARTICIPANT_FIELDS)?;
        // Participant.appType enum → 10037 (YAML AppType; ERRORCODES 10037).
        p.req_enum("appType", APP_TYPES, 10037)?;
        // Participant.role enum → 10038 (YAML ParticipantRole; ERRORCODES 10038).
        p.req_enum("role", ROLES, 10038)?;
        // Participant.subject required, ≤240 (YAML Participant; digest §1.3).
        p.req_id("subject", MAX_IDENTIFIER_LEN, subject_code)?;
    }
    let field = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
    Ok((field("appType"), field("subject"), field("role")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_checked_and_named() {
        let v = json!({"to": "x".repeat(241), "n": 3, "b": true, "a": [1, 2]});
        let o = Obj::of(&v, "", 1).unwrap();
        let e = o.req_id("to", 240, 10027).unwrap_err();
        assert_eq!(e.code, 10027);
        assert!(e.message.contains("to is 241 characters"), "{}", e.message);
        assert_eq!(o.req_str("from", 10028).unwrap_err().code, 10028);
        assert_eq!(o.req_i64("n", 1).unwrap(), 3);
        assert!(o.req_bool("b", 1).unwrap());
        assert_eq!(o.req_array("a", 1, 1, 10029).unwrap_err().code, 10029);
        assert_eq!(
            o.only(&["to", "n", "b"]).unwrap_err().code,
            INVALID_PARAMETERS
        );
    }

    #[test]
    fn record_ids_are_fifteen_characters() {
        let v = json!({"w": "0MwSB0000000001", "x": "0MwSB0000000001AAA"});
        let o = Obj::of(&v, "", 1).unwrap();
        assert!(o.req_record_id("w", 10012).is_ok());
        assert_eq!(o.req_record_id("x", 10012).unwrap_err().code, 10012);
    }
}
