//! The window of `occurredAt` an event may claim when it is taken in.
//!
//! `occurredAt` is the sender's word. Consumers put it into keys (fraud windows, audit sort
//! keys, analytics buckets) and do arithmetic with it, so what intake admits must be a time
//! every consumer can handle; otherwise one consumer refuses an order the others act on, and
//! the order is charged and never ends.
//!
//! - **Future: at most [`MAX_CLOCK_SKEW`] ahead of the receiver's clock.** Nothing has
//!   happened in the future; a few minutes cover a producer whose clock runs fast. Without
//!   this bound an order dated next week would sit in a fraud window no honest order reaches
//!   and count into an analytics bucket that has not begun.
//! - **Past: not before [`EARLIEST_OCCURRED_AT`], and no bound relative to now.** Events come
//!   back late by design: a DLQ redrive up to 14 days later, `orderflow replay --to-bus` of
//!   any stored range. Refusing them by age would make those tools fail, and age alone harms
//!   nothing here, because every retention and TTL is computed from the time a record is
//!   *written*, never from `occurredAt` (DynamoDB's TTL skips expiry times more than five
//!   years in the past, so a TTL from an old `occurredAt` would keep an item forever). The
//!   fixed floor keeps times in four-digit years, where RFC 3339 text sorts as time and
//!   window arithmetic cannot overflow chrono's range.
//!
//! The check runs in [`crate::RawEvent::decode`], at intake only: events read back from the
//! store were checked when they came in.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::ids::FieldError;

/// How far ahead of the receiver's clock an `occurredAt` may be.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The earliest `occurredAt` intake admits: 2000-01-01T00:00:00Z.
pub fn earliest_occurred_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// [`earliest_occurred_at`] as text, for messages and docs.
pub const EARLIEST_OCCURRED_AT: &str = "2000-01-01T00:00:00Z";

/// Checks that `occurred_at` lies in the window intake admits, as seen at `now`.
pub fn check_occurred_at(occurred_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), FieldError> {
    if occurred_at < earliest_occurred_at() {
        return Err(FieldError::new(
            "metadata.occurredAt",
            format!("{occurred_at} is before {EARLIEST_OCCURRED_AT}, the earliest time accepted"),
        ));
    }
    let latest = now + MAX_CLOCK_SKEW;
    if occurred_at > latest {
        return Err(FieldError::new(
            "metadata.occurredAt",
            format!(
                "{occurred_at} is in the future: more than {} minutes after the receiver's clock ({now})",
                MAX_CLOCK_SKEW.num_minutes()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_window_is_from_the_floor_to_a_few_minutes_ahead() {
        let now = at("2026-12-03T12:00:00Z");
        for ok in [
            "2000-01-01T00:00:00Z",
            "2019-06-01T00:00:00Z",
            "2026-12-03T12:00:00Z",
            "2026-12-03T12:05:00Z",
        ] {
            assert_eq!(check_occurred_at(at(ok), now), Ok(()), "{ok}");
        }
        for refused in [
            "1999-12-31T23:59:59Z",
            "-0001-01-01T00:00:00Z",
            "2026-12-03T12:05:00.001Z",
            "+10000-01-01T00:00:00Z",
        ] {
            let err = check_occurred_at(at(refused), now).unwrap_err();
            assert_eq!(err.path, "metadata.occurredAt", "{refused}");
        }
    }

    #[test]
    fn the_floor_is_the_documented_time() {
        assert_eq!(earliest_occurred_at(), at(EARLIEST_OCCURRED_AT));
    }
}
