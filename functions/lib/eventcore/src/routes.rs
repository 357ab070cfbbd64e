//! Typed routes: which (detail-type, owning source) pairs a function takes in.
//!
//! A function declares its routes once, as data. The same declaration
//! - admits a message ([`admit`]): an event type the function has no route for is
//!   `not-routed`, and a routed type from any source but its owner is `untrusted-source`;
//!   both are permanent (dead-lettered, nothing done);
//! - yields the EventBridge rule pattern ([`event_pattern`]) that the template must carry,
//!   which each function's tests compare with `infra/template.yaml`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::envelope::RawEvent;
use crate::error::DecodeError;

/// One event type and the only source allowed to publish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub detail_type: &'static str,
    pub source: &'static str,
}

/// Checks that `event` is one of `routes`, from the source that owns its type.
pub fn admit(routes: &[Route], event: &RawEvent) -> Result<Route, DecodeError> {
    let route = routes
        .iter()
        .find(|r| r.detail_type == event.detail_type)
        .ok_or_else(|| DecodeError::NotRouted {
            detail_type: event.detail_type.clone(),
        })?;
    if route.source != event.source {
        return Err(DecodeError::UntrustedSource {
            detail_type: event.detail_type.clone(),
            sent_by: event.source.clone(),
            owner: route.source.to_string(),
        });
    }
    Ok(*route)
}

/// The EventBridge event pattern that matches exactly these (source, detail-type) pairs.
///
/// A pattern's fields are ANDed and the values in one field's array ORed, so
/// `{"source": [a, b], "detail-type": [X, Y]}` would also match X from b. Grouping the types
/// by owner and joining the groups with `$or` matches the pairs and nothing else ("$or
/// matching", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html).
/// One owner needs no `$or`. Sources and types come out sorted, so the pattern is stable.
pub fn event_pattern(routes: &[Route]) -> Value {
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for route in routes {
        let types = by_source.entry(route.source).or_default();
        if !types.contains(&route.detail_type) {
            types.push(route.detail_type);
        }
    }
    let mut groups: Vec<Value> = by_source
        .into_iter()
        .map(|(source, mut types)| {
            types.sort_unstable();
            json!({ "source": [source], "detail-type": types })
        })
        .collect();
    match groups.len() {
        1 => groups.remove(0),
        _ => json!({ "$or": groups }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventMetadata;

    const PLACED: Route = Route {
        detail_type: "OrderPlaced",
        source: "shop",
    };
    const REFUND: Route = Route {
        detail_type: "RefundRequested",
        source: "saga",
    };
    const CANCELLED: Route = Route {
        detail_type: "OrderCancelled",
        source: "saga",
    };

    fn event(source: &str, detail_type: &str) -> RawEvent {
        RawEvent {
            source: source.into(),
            detail_type: detail_type.into(),
            metadata: EventMetadata {
                event_id: "e".into(),
                schema_version: 1,
                correlation_id: "e".into(),
                causation_id: None,
                occurred_at: chrono::Utc::now(),
            },
            data: Value::Null,
        }
    }

    #[test]
    fn only_routed_types_from_their_owner_are_admitted() {
        let routes = [PLACED, REFUND];
        assert_eq!(admit(&routes, &event("shop", "OrderPlaced")), Ok(PLACED));
        assert_eq!(
            admit(&routes, &event("shop", "RefundRequested"))
                .unwrap_err()
                .reason(),
            "untrusted-source"
        );
        assert_eq!(
            admit(&routes, &event("saga", "OrderCancelled"))
                .unwrap_err()
                .reason(),
            "not-routed"
        );
    }

    #[test]
    fn patterns_match_exact_pairs() {
        assert_eq!(
            event_pattern(&[CANCELLED, REFUND]),
            json!({"source": ["saga"], "detail-type": ["OrderCancelled", "RefundRequested"]})
        );
        assert_eq!(
            event_pattern(&[REFUND, PLACED, CANCELLED]),
            json!({"$or": [
                {"source": ["saga"], "detail-type": ["OrderCancelled", "RefundRequested"]},
                {"source": ["shop"], "detail-type": ["OrderPlaced"]},
            ]})
        );
    }
}
