//! The Avro schema of an emulated custom platform event, its id, and the binary encoding of
//! one event.

use apache_avro::{Schema, to_avro_datum, types::Value};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::TopicSettings;

/// Prefix of every platform event topic name.
pub(crate) const EVENT_TOPIC_PREFIX: &str = "/event/";
/// Avro namespace Salesforce gives platform event schemas.
const NAMESPACE: &str = "com.sforce.eventbus";
/// Bytes of the schema's SHA-256 kept in its id.
const SCHEMA_ID_BYTES: usize = 16;

/// A topic's schema, parsed and as served by `GetSchema`.
#[derive(Debug)]
pub(crate) struct EventSchema {
    pub(crate) schema: Schema,
    pub(crate) json: String,
    pub(crate) id: String,
}

/// Fields of one event to encode.
pub(crate) struct EventFields<'a> {
    pub(crate) created_date_ms: i64,
    pub(crate) created_by_id: &'a str,
    pub(crate) event_type: Option<&'a str>,
    pub(crate) payload: Option<&'a str>,
}

/// Whether `name` is a valid Avro name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl EventSchema {
    /// The schema of `topic`: a record named after the event's API name with `CreatedDate`
    /// (long, epoch milliseconds), `CreatedById` (string) and the event-type and payload fields
    /// as `["null", "string"]` unions, like Salesforce's schemas of custom platform events.
    pub(crate) fn for_topic(topic: &TopicSettings) -> Result<Self, String> {
        let event_name = topic
            .topic_name
            .strip_prefix(EVENT_TOPIC_PREFIX)
            .ok_or_else(|| format!("topic {:?} does not start with /event/", topic.topic_name))?;
        for name in [
            event_name,
            topic.event_type_field.as_str(),
            topic.payload_field.as_str(),
        ] {
            if !is_avro_name(name) {
                return Err(format!("{name:?} is not a valid Avro name"));
            }
        }
        if topic.event_type_field == topic.payload_field {
            return Err("the event-type and payload fields must differ".into());
        }
        let json = json!({
            "type": "record",
            "name": event_name,
            "namespace": NAMESPACE,
            "doc": format!("Platform event {event_name}, emulated"),
            "fields": [
                { "name": "CreatedDate", "type": "long", "doc": "CreatedDate:DateTime" },
                { "name": "CreatedById", "type": "string", "doc": "CreatedBy:EntityId" },
                {
                    "name": topic.event_type_field,
                    "type": ["null", "string"],
                    "doc": "Data:Text",
                    "default": null,
                },
                {
                    "name": topic.payload_field,
                    "type": ["null", "string"],
                    "doc": "Data:LongTextArea",
                    "default": null,
                },
            ],
        })
        .to_string();
        let schema = Schema::parse_str(&json).map_err(|e| e.to_string())?;
        let digest = Sha256::digest(json.as_bytes());
        let id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..SCHEMA_ID_BYTES]);
        Ok(Self { schema, json, id })
    }

    /// Avro binary of one event, without container header.
    pub(crate) fn encode(&self, topic: &TopicSettings, fields: &EventFields<'_>) -> Vec<u8> {
        let optional = |v: Option<&str>| match v {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(s) => Value::Union(1, Box::new(Value::String(s.to_owned()))),
        };
        let record = Value::Record(vec![
            ("CreatedDate".into(), Value::Long(fields.created_date_ms)),
            (
                "CreatedById".into(),
                Value::String(fields.created_by_id.to_owned()),
            ),
            (topic.event_type_field.clone(), optional(fields.event_type)),
            (topic.payload_field.clone(), optional(fields.payload)),
        ]);
        // The record is built from the schema itself, so encoding cannot fail.
        to_avro_datum(&self.schema, record).expect("event record matches its schema")
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::from_avro_datum;

    use super::*;

    fn topic() -> TopicSettings {
        TopicSettings::new("/event/Acme_Event__e")
    }

    #[test]
    fn events_round_trip() {
        let topic = topic();
        let schema = EventSchema::for_topic(&topic).unwrap();
        let bytes = schema.encode(
            &topic,
            &EventFields {
                created_date_ms: 42,
                created_by_id: "005000000000001",
                event_type: Some("Interaction"),
                payload: None,
            },
        );
        let value = from_avro_datum(&schema.schema, &mut bytes.as_slice(), None).unwrap();
        let Value::Record(fields) = value else {
            panic!("not a record")
        };
        assert_eq!(fields[0], ("CreatedDate".into(), Value::Long(42)));
        assert_eq!(
            fields[2].1,
            Value::Union(1, Box::new(Value::String("Interaction".into())))
        );
        assert_eq!(fields[3].1, Value::Union(0, Box::new(Value::Null)));
    }

    #[test]
    fn ids_are_stable_and_names_checked() {
        let a = EventSchema::for_topic(&topic()).unwrap();
        let b = EventSchema::for_topic(&topic()).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 22);
        assert!(EventSchema::for_topic(&TopicSettings::new("/data/Foo")).is_err());
        assert!(EventSchema::for_topic(&TopicSettings::new("/event/9bad")).is_err());
    }
}
