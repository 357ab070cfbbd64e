//! The event envelope: metadata every Orderflow event carries, and its conversions to and
//! from the EventBridge wire format (`detail = {"metadata": {...}, "data": {...}}`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::DecodeError;
use crate::ids::{check_id, FieldError, MAX_EVENT_ID_CHARS};
use crate::occurred_at::check_occurred_at;
use crate::routes::Route;

/// Largest EventBridge event we accept: the PutEvents limit for one entry.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Metadata that travels with every event, cause to effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub event_id: String,
    pub schema_version: u32,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// What a sender may leave out: every field falls back to the EventBridge envelope.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartialMetadata {
    event_id: Option<String>,
    schema_version: Option<u32>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

/// The typed payload of one kind of event.
///
/// `SCHEMA_VERSION` is the version this code writes; older versions are brought up to it by
/// [`EventData::upcast`], so stored and in-flight events of earlier schemas stay readable.
pub trait EventData: Serialize + DeserializeOwned {
    /// The EventBridge `detail-type`, e.g. `OrderPlaced`.
    const DETAIL_TYPE: &'static str;
    /// The one EventBridge `source` allowed to publish this type. A consumer acts on the
    /// type only when it comes from this source; everything else is dead-lettered as
    /// `untrusted-source`.
    const SOURCE: &'static str;
    /// The schema version this code reads natively and writes.
    const SCHEMA_VERSION: u32 = 1;
    /// The (type, owning source) pair a rule routes and a consumer admits.
    const ROUTE: Route = Route {
        detail_type: Self::DETAIL_TYPE,
        source: Self::SOURCE,
    };

    /// Checks what the type system cannot (id limits, sums), once, when the event is taken
    /// in from outside. Events read back from the store were checked when they were taken
    /// in and are not checked again, so tightening a rule never breaks a stored stream.
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }

    /// Checks rules that hold for events *sent* in schema `version` but not for the type as a
    /// whole: a field a version made required, which the type keeps optional because older
    /// versions upcast without it. Runs at intake with the version the sender wrote.
    fn validate_sent(&self, version: u32) -> Result<(), FieldError> {
        let _ = version;
        Ok(())
    }

    /// Turns `data` written with schema `version` into the current schema.
    /// The default accepts only the current version.
    fn upcast(version: u32, data: Value) -> Result<Value, DecodeError> {
        if version == Self::SCHEMA_VERSION {
            Ok(data)
        } else {
            Err(unsupported_version::<Self>(version))
        }
    }
}

/// The error for a schema version `T` cannot read (newer than this code, or never existed).
pub fn unsupported_version<T: EventData>(version: u32) -> DecodeError {
    DecodeError::UnsupportedVersion {
        detail_type: T::DETAIL_TYPE.to_string(),
        version,
        supported: T::SCHEMA_VERSION,
    }
}

/// What an envelope can carry: one event type ([`EventData`]) or a closed set of them
/// (an enum implementing [`crate::EventSet`]).
pub trait Payload {
    fn detail_type(&self) -> &'static str;
    /// The owning source.
    fn source(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    /// The payload as the `data` JSON.
    fn to_data(&self) -> Value;
}

impl<T: EventData> Payload for T {
    fn detail_type(&self) -> &'static str {
        T::DETAIL_TYPE
    }
    fn source(&self) -> &'static str {
        T::SOURCE
    }
    fn schema_version(&self) -> u32 {
        T::SCHEMA_VERSION
    }
    fn to_data(&self) -> Value {
        // Serializing a plain data struct into a Value cannot fail (no maps with non-string
        // keys in event payloads); fall back to null rather than panic.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The parts of an EventBridge event the envelope reads. Written here rather than taken
/// from `aws_lambda_events` so that this crate, and the contracts built on it, need nothing
/// from AWS.
#[derive(Debug, Deserialize)]
struct WireEvent {
    #[serde(default)]
    id: Option<String>,
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    detail: Value,
}

/// An event whose payload has not been given a type yet: what arrives on a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEvent {
    pub source: String,
    pub detail_type: String,
    pub metadata: EventMetadata,
    pub data: Value,
}

/// An event with a typed payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<T> {
    pub source: String,
    pub metadata: EventMetadata,
    pub data: T,
}

impl RawEvent {
    /// Parses an SQS message body that holds an EventBridge event (what a rule with an SQS
    /// target delivers).
    pub fn from_sqs_body(body: &str) -> Result<Self, DecodeError> {
        if body.trim().is_empty() {
            return Err(DecodeError::EmptyBody);
        }
        if body.len() > MAX_EVENT_BYTES {
            return Err(DecodeError::TooLarge {
                size: body.len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        let value: Value =
            serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        Self::from_eventbridge_json(value)
    }

    /// Builds the envelope from an EventBridge event (as JSON) delivered directly to a
    /// function or read from a queue. Missing metadata falls back to the envelope's `id`
    /// and `time`, so events hand-written for `aws events put-events` work.
    pub fn from_eventbridge_json(value: Value) -> Result<Self, DecodeError> {
        let event: WireEvent = decode_at_path(value)
            .map_err(|(path, message)| DecodeError::NotAnEvent { path, message })?;
        let (partial, data) = match event.detail {
            Value::Object(mut detail) => {
                let metadata = match detail.remove("metadata") {
                    None | Some(Value::Null) => PartialMetadata::default(),
                    Some(m) => {
                        decode_at_path::<PartialMetadata>(m).map_err(|(path, message)| {
                            DecodeError::InvalidMetadata {
                                path: format!("metadata{}", dotted(&path)),
                                message,
                            }
                        })?
                    }
                };
                let data = detail
                    .remove("data")
                    .ok_or_else(|| DecodeError::InvalidData {
                        detail_type: event.detail_type.clone(),
                        path: "data".into(),
                        message: "missing field `data` in detail".into(),
                    })?;
                (metadata, data)
            }
            other => {
                return Err(DecodeError::NotAnEvent {
                    path: "detail".into(),
                    message: format!("expected an object, found {}", json_kind(&other)),
                })
            }
        };
        let event_id =
            partial
                .event_id
                .or(event.id)
                .ok_or_else(|| DecodeError::InvalidMetadata {
                    path: "metadata.eventId".into(),
                    message: "no event id in metadata nor in the EventBridge envelope".into(),
                })?;
        let metadata = EventMetadata {
            correlation_id: partial.correlation_id.unwrap_or_else(|| event_id.clone()),
            causation_id: partial.causation_id,
            schema_version: partial.schema_version.unwrap_or(1),
            occurred_at: partial.occurred_at.or(event.time).unwrap_or_else(Utc::now),
            event_id,
        };
        metadata.check_ids()?;
        Ok(RawEvent {
            source: event.source,
            detail_type: event.detail_type,
            metadata,
            data,
        })
    }

    /// Gives the payload its type as an event taken in from outside: older schema versions
    /// are upcast, `occurredAt` must lie in the window of [`crate::occurred_at`], and
    /// [`EventData::validate`] and [`EventData::validate_sent`] run.
    pub fn decode<T: EventData>(&self) -> Result<Envelope<T>, DecodeError> {
        let envelope = self.decode_stored::<T>()?;
        check_occurred_at(self.metadata.occurred_at, Utc::now()).map_err(|e| {
            DecodeError::InvalidMetadata {
                path: e.path,
                message: e.message,
            }
        })?;
        envelope
            .data
            .validate()
            .and_then(|()| envelope.data.validate_sent(self.metadata.schema_version))
            .map_err(|e| DecodeError::InvalidData {
                detail_type: self.detail_type.clone(),
                path: e.path,
                message: e.message,
            })?;
        Ok(envelope)
    }

    /// Gives the payload its type as an event read back from the store: upcast, but not
    /// validated again (it was when it was taken in).
    pub fn decode_stored<T: EventData>(&self) -> Result<Envelope<T>, DecodeError> {
        if self.detail_type != T::DETAIL_TYPE {
            return Err(DecodeError::UnknownType(self.detail_type.clone()));
        }
        let current = T::upcast(self.metadata.schema_version, self.data.clone())?;
        let data =
            decode_at_path::<T>(current).map_err(|(path, message)| DecodeError::InvalidData {
                detail_type: self.detail_type.clone(),
                path: format!("data{}", dotted(&path)),
                message,
            })?;
        Ok(Envelope {
            source: self.source.clone(),
            metadata: EventMetadata {
                schema_version: T::SCHEMA_VERSION,
                ..self.metadata.clone()
            },
            data,
        })
    }

    /// The `detail` object as it travels on the bus.
    pub fn detail(&self) -> Value {
        serde_json::json!({ "metadata": self.metadata, "data": self.data })
    }

    /// What makes two deliveries *the same event*: a hex SHA-256 over the source, the type,
    /// the schema version and the payload, and nothing else. Ids, correlation and times are
    /// left out because a redelivery or a replay may differ in them; the payload is hashed
    /// in serde_json's canonical form (object keys sorted), so key order in what a sender
    /// wrote does not matter.
    ///
    /// An event id deduplicates only deliveries with the same digest; the same id with
    /// another digest is a *conflicting duplicate*, refused rather than merged or dropped.
    pub fn content_digest(&self) -> String {
        content_digest(
            &self.source,
            &self.detail_type,
            self.metadata.schema_version,
            &self.data,
        )
    }
}

/// [`RawEvent::content_digest`] from its parts.
pub fn content_digest(
    source: &str,
    detail_type: &str,
    schema_version: u32,
    data: &Value,
) -> String {
    let digest = Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0])
        .chain_update(detail_type.as_bytes())
        .chain_update([0])
        .chain_update(schema_version.to_be_bytes())
        .chain_update([0])
        .chain_update(data.to_string().as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl EventMetadata {
    /// Event, correlation and causation ids become keys (idempotency records, store items):
    /// each is limited in length and characters ([`crate::ids`]).
    fn check_ids(&self) -> Result<(), DecodeError> {
        let ids = [
            ("metadata.eventId", Some(&self.event_id)),
            ("metadata.correlationId", Some(&self.correlation_id)),
            ("metadata.causationId", self.causation_id.as_ref()),
        ];
        for (path, id) in ids {
            if let Some(id) = id {
                check_id(path, id, MAX_EVENT_ID_CHARS).map_err(|e| {
                    DecodeError::InvalidMetadata {
                        path: e.path,
                        message: e.message,
                    }
                })?;
            }
        }
        Ok(())
    }
}

impl<P: Payload> Envelope<P> {
    /// A new event that starts a conversation (no cause): its id is also its correlation id.
    pub fn new(data: P) -> Self {
        let event_id = uuid::Uuid::new_v4().to_string();
        Envelope {
            source: data.source().to_string(),
            metadata: EventMetadata {
                correlation_id: event_id.clone(),
                causation_id: None,
                schema_version: data.schema_version(),
                occurred_at: Utc::now(),
                event_id,
            },
            data,
        }
    }

    /// An event emitted in reaction to `cause`: it keeps the correlation id, names its cause,
    /// and gets an id derived from the cause, its type and `discriminator`. The derived id
    /// matters under at-least-once delivery: handling the same cause twice emits the same
    /// event id, so every downstream idempotency check sees one event, not two. Its source is
    /// the type's owner.
    pub fn caused_by(cause: &EventMetadata, discriminator: &str, data: P) -> Self {
        Envelope {
            source: data.source().to_string(),
            metadata: EventMetadata {
                event_id: derived_event_id(&cause.event_id, data.detail_type(), discriminator),
                schema_version: data.schema_version(),
                correlation_id: cause.correlation_id.clone(),
                causation_id: Some(cause.event_id.clone()),
                occurred_at: Utc::now(),
            },
            data,
        }
    }

    /// [`RawEvent::content_digest`] of this event.
    pub fn content_digest(&self) -> String {
        content_digest(
            &self.source,
            self.data.detail_type(),
            self.metadata.schema_version,
            &self.data.to_data(),
        )
    }

    /// Erases the payload type, e.g. to publish or store it.
    pub fn to_raw(&self) -> RawEvent {
        RawEvent {
            source: self.source.clone(),
            detail_type: self.data.detail_type().to_string(),
            metadata: self.metadata.clone(),
            data: self.data.to_data(),
        }
    }

    /// The same event with its payload widened, e.g. one type into the closed set.
    pub fn widen<Q: From<P>>(self) -> Envelope<Q> {
        Envelope {
            source: self.source,
            metadata: self.metadata,
            data: self.data.into(),
        }
    }
}

/// A stable UUID-formatted id from the cause's id, the effect's type and a discriminator.
pub fn derived_event_id(cause_id: &str, detail_type: &str, discriminator: &str) -> String {
    let digest = Sha256::new()
        .chain_update(cause_id.as_bytes())
        .chain_update([0])
        .chain_update(detail_type.as_bytes())
        .chain_update([0])
        .chain_update(discriminator.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Formats a timestamp the way the envelope writes it (RFC 3339, milliseconds, `Z`).
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Deserializes `value`, reporting the path of the first offending field.
fn decode_at_path<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner().to_string())
    })
}

fn dotted(path: &str) -> String {
    if path == "." || path.is_empty() {
        String::new()
    } else if path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_refuses_an_occurred_at_in_the_future_but_the_store_reads_it() {
        let future = format_time(&(Utc::now() + chrono::Duration::hours(1)));
        let body = format!(
            r#"{{"id":"e-1","source":"test","detail-type":"ThingHappened","detail":{{"metadata":{{"occurredAt":"{future}","schemaVersion":2}},"data":{{"name":"a","count":1}}}}}}"#
        );
        let raw = RawEvent::from_sqs_body(&body).unwrap();
        let err = raw.decode::<Thing>().unwrap_err();
        assert_eq!(err.reason(), "invalid-metadata");
        assert!(err.to_string().contains("metadata.occurredAt"), "{err}");
        assert!(
            raw.decode_stored::<Thing>().is_ok(),
            "stored events are not checked again"
        );
    }

    #[test]
    fn the_content_digest_is_the_source_type_version_and_payload_not_ids_times_or_key_order() {
        let body = |id: &str, time: &str, data: &str| {
            format!(
                r#"{{"id":"{id}","source":"shop","detail-type":"ThingHappened","time":"{time}","detail":{{"data":{data}}}}}"#
            )
        };
        let digest = |b: String| RawEvent::from_sqs_body(&b).unwrap().content_digest();
        let first = digest(body(
            "e-1",
            "2026-01-01T00:00:00Z",
            r#"{"name":"a","count":1}"#,
        ));
        assert_eq!(first.len(), 64);
        assert_eq!(
            first,
            digest(body(
                "e-2",
                "2026-02-01T00:00:00Z",
                r#"{"count":1,"name":"a"}"#
            )),
            "ids, times and key order are not content"
        );
        assert_ne!(
            first,
            digest(body(
                "e-1",
                "2026-01-01T00:00:00Z",
                r#"{"name":"a","count":2}"#
            ))
        );
        let mut other_source = RawEvent::from_sqs_body(&body(
            "e-1",
            "2026-01-01T00:00:00Z",
            r#"{"name":"a","count":1}"#,
        ))
        .unwrap();
        other_source.source = "attacker".into();
        assert_ne!(first, other_source.content_digest());
        let typed = Envelope::new(Thing {
            name: "a".into(),
            count: 1,
        });
        assert_eq!(typed.content_digest(), typed.to_raw().content_digest());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Thing {
        name: String,
        count: u32,
    }
    impl EventData for Thing {
        const DETAIL_TYPE: &'static str = "ThingHappened";
        const SOURCE: &'static str = "test";
        const SCHEMA_VERSION: u32 = 2;
        fn upcast(version: u32, mut data: Value) -> Result<Value, DecodeError> {
            match version {
                // v1 had no count.
                1 => {
                    data["count"] = Value::from(0);
                    Ok(data)
                }
                2 => Ok(data),
                _ => Err(DecodeError::UnsupportedVersion {
                    detail_type: Self::DETAIL_TYPE.into(),
                    version,
                    supported: 2,
                }),
            }
        }
    }

    fn body(detail: Value) -> String {
        serde_json::json!({
            "version": "0", "id": "eb-id-1", "detail-type": "ThingHappened",
            "source": "test", "account": "000000000000",
            "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": detail
        })
        .to_string()
    }

    #[test]
    fn missing_metadata_falls_back_to_the_eventbridge_envelope() {
        let raw = RawEvent::from_sqs_body(&body(
            serde_json::json!({"data": {"name": "a", "count": 1}}),
        ))
        .unwrap();
        assert_eq!(raw.metadata.event_id, "eb-id-1");
        assert_eq!(raw.metadata.correlation_id, "eb-id-1");
        assert_eq!(raw.metadata.schema_version, 1);
        assert_eq!(
            format_time(&raw.metadata.occurred_at),
            "2026-11-21T10:00:00.000Z"
        );
    }

    #[test]
    fn old_schema_versions_are_upcast() {
        let raw = RawEvent::from_sqs_body(&body(serde_json::json!({
            "metadata": {"eventId": "e1", "schemaVersion": 1}, "data": {"name": "a"}
        })))
        .unwrap();
        let typed = raw.decode::<Thing>().unwrap();
        assert_eq!(
            typed.data,
            Thing {
                name: "a".into(),
                count: 0
            }
        );
        assert_eq!(typed.metadata.schema_version, 2);
        assert_eq!(typed.metadata.event_id, "e1");
    }

    #[test]
    fn decode_errors_name_the_field() {
        let raw = RawEvent::from_sqs_body(&body(serde_json::json!({
            "metadata": {"schemaVersion": 2}, "data": {"name": "a", "count": "many"}
        })))
        .unwrap();
        let err = raw.decode::<Thing>().unwrap_err();
        assert!(err.is_permanent());
        assert!(err.to_string().contains("data.count"), "{err}");

        let err = RawEvent::from_sqs_body("{not json").unwrap_err();
        assert_eq!(err.reason(), "not-json");
        let err = RawEvent::from_sqs_body("").unwrap_err();
        assert_eq!(err.reason(), "empty-body");
        let err = RawEvent::from_sqs_body(r#"{"id": "x"}"#).unwrap_err();
        assert_eq!(err.reason(), "not-an-event");
        let raw = RawEvent::from_sqs_body(&body(serde_json::json!({
            "metadata": {"schemaVersion": 9}, "data": {}
        })))
        .unwrap();
        assert_eq!(
            raw.decode::<Thing>().unwrap_err().reason(),
            "unsupported-version"
        );
    }

    #[test]
    fn effects_carry_correlation_and_derive_stable_ids() {
        let cause = Envelope::new(Thing {
            name: "a".into(),
            count: 1,
        });
        let a = Envelope::caused_by(
            &cause.metadata,
            "x",
            Thing {
                name: "b".into(),
                count: 2,
            },
        );
        let b = Envelope::caused_by(
            &cause.metadata,
            "x",
            Thing {
                name: "b".into(),
                count: 2,
            },
        );
        assert_eq!(a.metadata.event_id, b.metadata.event_id);
        assert_eq!(a.metadata.correlation_id, cause.metadata.correlation_id);
        assert_eq!(
            a.metadata.causation_id.as_deref(),
            Some(cause.metadata.event_id.as_str())
        );
        let c = Envelope::caused_by(
            &cause.metadata,
            "y",
            Thing {
                name: "b".into(),
                count: 2,
            },
        );
        assert_ne!(a.metadata.event_id, c.metadata.event_id);
    }

    #[test]
    fn round_trips_through_the_wire_format() {
        let event = Envelope::new(Thing {
            name: "a".into(),
            count: 3,
        });
        let raw = event.to_raw();
        let wire = serde_json::json!({
            "id": "ignored", "detail-type": raw.detail_type,
            "source": raw.source, "time": "2026-11-21T10:00:00Z",
            "detail": raw.detail(),
        });
        let back = RawEvent::from_sqs_body(&wire.to_string()).unwrap();
        assert_eq!(back.metadata, event.metadata);
        assert_eq!(back.decode::<Thing>().unwrap().data, event.data);
    }
}
