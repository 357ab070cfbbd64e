//! A closed set of event types: one enum with a variant per type, decoded in one place.

use std::fmt::Debug;

use crate::envelope::{Envelope, Payload, RawEvent};
use crate::error::DecodeError;
use crate::routes::Route;

/// Every event type a system speaks, as one enum (see `contracts::Event`). Decoding goes
/// through here and nowhere else matches on detail-type strings.
pub trait EventSet: Payload + Debug + Clone + PartialEq + Send + Sync + Sized + 'static {
    /// Every type in the set with its owning source.
    const ROUTES: &'static [Route];

    /// The payload of an event taken in from outside: upcast and validated.
    fn decode(raw: &RawEvent) -> Result<Self, DecodeError>;

    /// The payload of an event read back from the store: upcast, not validated again.
    fn decode_stored(raw: &RawEvent) -> Result<Self, DecodeError>;

    /// [`EventSet::decode`] with the envelope around it.
    fn envelope(raw: &RawEvent) -> Result<Envelope<Self>, DecodeError> {
        let data = Self::decode(raw)?;
        Ok(Envelope {
            source: raw.source.clone(),
            metadata: crate::envelope::EventMetadata {
                schema_version: data.schema_version(),
                ..raw.metadata.clone()
            },
            data,
        })
    }

    /// [`EventSet::decode_stored`] with the envelope around it.
    fn stored_envelope(raw: &RawEvent) -> Result<Envelope<Self>, DecodeError> {
        let data = Self::decode_stored(raw)?;
        Ok(Envelope {
            source: raw.source.clone(),
            metadata: crate::envelope::EventMetadata {
                schema_version: data.schema_version(),
                ..raw.metadata.clone()
            },
            data,
        })
    }
}
