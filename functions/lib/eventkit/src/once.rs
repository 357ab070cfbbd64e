//! Once per business key: the first event to decide a key (an order's charge, its
//! reservation, its shipment) wins, and every later event about the key, a redelivery or
//! another request, acts on that decision instead of deciding again.
//!
//! The decision is one conditional write of the key's one item ([`put_once`]:
//! `attribute_not_exists(key)`), and that item is the idempotency record; no separate record
//! per event (eventkit's [`Idempotency`]) is needed, and none could disagree with it.
//!
//! # Why this is exactly once under at-least-once delivery
//!
//! - **One decision per key.** DynamoDB applies conditional writes to one item one at a
//!   time, so of any number of racing writers exactly one finds no item and stores its
//!   decision; each of the others fails the condition and gets the stored item back
//!   ([`FirstWrite::Existing`], from the same request), never a half-written one.
//! - **The record names its cause.** The item carries the deciding event's id and
//!   correlation id ([`DecidedBy`]), so a later writer can tell whether it is that very
//!   event again ([`Decided::Again`]: a redelivery, perhaps after a publish that failed) or
//!   another event for the same key ([`Decided::DecidedBefore`]: a duplicate request, a
//!   competing one, a late one), and the function states in a line what each case does.
//! - **Every copy of the answer is one event.** An answer is derived from the decision's
//!   cause with [`Envelope::caused_by`], and when it is announced again from the record the
//!   cause is rebuilt from the record ([`stored_cause`]), not taken from the event being
//!   handled. So the answer has one id however often, and by whichever event, it is asked
//!   for, and downstream consumers drop the copies as duplicates. A publish lost after the
//!   write is therefore repaired by asking again.
//! - **Content, where the key is the sender's.** A key chosen by a sender (an order id) can
//!   be reused for something else. A record may keep its cause's content digest; another
//!   event with another digest under the key is a conflicting duplicate ([`conflicts`]), to
//!   be refused rather than answered with the first one's decision.
//!
//! [`put_once`]: crate::dynamo::put_once
//! [`Idempotency`]: crate::idempotency::Idempotency
//! [`Envelope::caused_by`]: crate::Envelope::caused_by

use crate::dynamo::FirstWrite;
use crate::EventMetadata;

/// A stored decision that names the event which decided it.
pub trait DecidedBy {
    /// The id of the event whose write stored this record.
    fn cause_event_id(&self) -> &str;
    /// That event's correlation id, which every answer derived from it carries.
    fn cause_correlation_id(&self) -> &str;

    /// The deciding event as [`Envelope::caused_by`](crate::Envelope::caused_by) reads it:
    /// see [`stored_cause`].
    fn stored_cause(&self) -> EventMetadata {
        stored_cause(self.cause_event_id(), self.cause_correlation_id())
    }
}

/// What a first-writer-wins write of a key found, for the event `cause` that tried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided<T> {
    /// This event decided the key: its record is stored.
    First,
    /// This very event decided the key before (a redelivery): announce the stored answer
    /// again.
    Again(T),
    /// Another event decided the key: do not decide again; act on the stored decision.
    DecidedBefore(T),
}

impl<T: DecidedBy> Decided<T> {
    /// Classifies the outcome of a first-writer-wins write by the event `cause_event_id`.
    pub fn of(write: FirstWrite<T>, cause_event_id: &str) -> Self {
        match write {
            FirstWrite::Written => Decided::First,
            FirstWrite::Existing(stored) => Decided::found(stored, cause_event_id),
        }
    }

    /// Classifies a record found under the key (by a read, or a transaction's failed
    /// condition), for the event `cause_event_id`.
    pub fn found(stored: T, cause_event_id: &str) -> Self {
        if stored.cause_event_id() == cause_event_id {
            Decided::Again(stored)
        } else {
            Decided::DecidedBefore(stored)
        }
    }

    /// The stored decision, unless this event made it.
    pub fn stored(&self) -> Option<&T> {
        match self {
            Decided::First => None,
            Decided::Again(stored) | Decided::DecidedBefore(stored) => Some(stored),
        }
    }

    /// The cause every answer about the key derives from: `cause` when it decided, the
    /// stored cause otherwise.
    pub fn answer_cause(&self, cause: &EventMetadata) -> EventMetadata {
        self.stored()
            .map_or_else(|| cause.clone(), DecidedBy::stored_cause)
    }
}

/// The cause a stored record names, as far as
/// [`Envelope::caused_by`](crate::Envelope::caused_by) reads it: the event
/// and correlation ids, both stored. An answer announced again from the record derives
/// from this, so it has the id of the answer the deciding event got. The other fields are
/// not stored and not read: `schema_version` is 1 and `occurred_at` is now (a caller that
/// announces the record's time sets it on the answer).
pub fn stored_cause(event_id: &str, correlation_id: &str) -> EventMetadata {
    EventMetadata {
        event_id: event_id.to_string(),
        schema_version: 1,
        correlation_id: correlation_id.to_string(),
        causation_id: None,
        occurred_at: chrono::Utc::now(),
    }
}

/// Whether an event with content `digest` conflicts with the record its key holds, which
/// kept its cause's digest as `recorded_digest`: another content under the same key is
/// another request reusing the key, to be refused. A record without a digest was written
/// before digests were kept, when the key was its only identity: what its cause said is
/// unknown, so it is taken to be this event's (refusing would dead-letter honest
/// redeliveries of what was recorded before the upgrade).
pub fn conflicts(recorded_digest: Option<&str>, digest: &str) -> bool {
    recorded_digest.is_some_and(|recorded| recorded != digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::derived_event_id;
    use crate::{Envelope, EventData};
    use serde::{Deserialize, Serialize};

    /// An answer to announce.
    #[derive(Debug, Serialize, Deserialize)]
    struct Answered {}
    impl EventData for Answered {
        const DETAIL_TYPE: &'static str = "Answered";
        const SOURCE: &'static str = "test";
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Record {
        event_id: &'static str,
        correlation_id: &'static str,
    }

    impl DecidedBy for Record {
        fn cause_event_id(&self) -> &str {
            self.event_id
        }
        fn cause_correlation_id(&self) -> &str {
            self.correlation_id
        }
    }

    const STORED: Record = Record {
        event_id: "e1",
        correlation_id: "c1",
    };

    #[test]
    fn a_write_that_stored_its_record_decided_first() {
        assert_eq!(
            Decided::<Record>::of(FirstWrite::Written, "e1"),
            Decided::First
        );
    }

    #[test]
    fn a_record_is_found_again_by_its_own_cause_and_decided_before_by_any_other() {
        let cases = [
            ("e1", Decided::Again(STORED)),
            ("e2", Decided::DecidedBefore(STORED)),
        ];
        for (event_id, expected) in cases {
            assert_eq!(
                Decided::of(FirstWrite::Existing(STORED), event_id),
                expected,
                "{event_id}"
            );
            assert_eq!(Decided::found(STORED, event_id), expected, "{event_id}");
            assert_eq!(expected.stored(), Some(&STORED));
        }
        assert_eq!(Decided::<Record>::First.stored(), None);
    }

    #[test]
    fn an_answer_from_the_record_has_the_id_and_correlation_of_the_first_answer() {
        let question = Envelope::new(Answered {}).metadata;
        let record = Record {
            event_id: "e1",
            correlation_id: "c1",
        };
        let first = Envelope::caused_by(
            &EventMetadata {
                event_id: "e1".into(),
                correlation_id: "c1".into(),
                ..question
            },
            "ord-1",
            Answered {},
        );
        let again = Envelope::caused_by(&record.stored_cause(), "ord-1", Answered {});
        assert_eq!(again.metadata.event_id, first.metadata.event_id);
        assert_eq!(
            again.metadata.event_id,
            derived_event_id("e1", "Answered", "ord-1")
        );
        assert_eq!(again.metadata.correlation_id, "c1");
        assert_eq!(again.metadata.causation_id.as_deref(), Some("e1"));
    }

    #[test]
    fn answers_derive_from_the_deciding_cause() {
        let now = Envelope::new(Answered {}).metadata;
        assert_eq!(Decided::<Record>::First.answer_cause(&now), now);
        for found in [Decided::Again(STORED), Decided::DecidedBefore(STORED)] {
            let answered = found.answer_cause(&now);
            assert_eq!(
                (answered.event_id.as_str(), answered.correlation_id.as_str()),
                ("e1", "c1")
            );
        }
    }

    #[test]
    fn only_other_content_under_a_recorded_digest_conflicts() {
        assert!(!conflicts(Some("d1"), "d1"));
        assert!(conflicts(Some("d1"), "d2"));
        assert!(!conflicts(None, "d2"), "a record from before digests");
    }
}
