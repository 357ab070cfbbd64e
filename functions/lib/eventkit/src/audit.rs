//! The audit trail: one item per event seen on the bus, written by the audit function and
//! read by `orderflow trace`. Lives here because both sides must agree on the item layout.
//!
//! Layout (`AuditTable` in `infra/template.yaml`): partition key `correlationId`, sort key
//! `<occurredAt>#<eventId>#<digest prefix>` ([`sort_key`]; RFC 3339 UTC with milliseconds,
//! so text order is time order); GSI `byOrder` on `orderId` + `sk`, sparse (events about no
//! order, such as `CustomerRegistered`, are only found by correlation id); TTL attribute
//! `expiresAt`, counted from when the entry is written, never from the sender's
//! `occurredAt`. Readers take the event from the item's attributes (`eventId`, `detail`),
//! never by taking the sort key apart.
//!
//! Writes are plain puts keyed by the event and its content (through the sort key), so
//! writing the same event twice leaves one identical item: idempotent without a condition,
//! which is what lets a whole batch go in `BatchWriteItem`s of 25 (it takes no conditions),
//! and lets a failed batch be written again whole. An event id is its producer's word, so
//! the key does not rest on it alone: two different events under one id and time keep an
//! entry each, and neither overwrites the other.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::dynamo::attr::s;
use crate::dynamo::DynamoError;
use crate::envelope::{format_time, RawEvent};
use crate::retry::RetryPolicy;

/// The GSI that finds an order's entries.
pub const BY_ORDER_INDEX: &str = "byOrder";
/// `BatchWriteItem` takes at most 25 put or delete requests ("BatchWriteItem", Amazon
/// DynamoDB API Reference,
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html).
pub const MAX_BATCH_WRITE: usize = 25;

/// One event as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub correlation_id: String,
    pub sk: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub occurred_at: String,
    /// The event's `detail` (metadata and data) as JSON text.
    pub detail: String,
    /// Epoch seconds after which DynamoDB's TTL may delete the entry.
    pub expires_at: i64,
}

impl AuditEntry {
    /// `event` as an audit entry, about `order_id`, kept `retention_days` from `now`.
    pub fn of(
        event: &RawEvent,
        order_id: Option<&str>,
        retention_days: u32,
        now: &DateTime<Utc>,
    ) -> Self {
        let occurred_at = format_time(&event.metadata.occurred_at);
        AuditEntry {
            correlation_id: event.metadata.correlation_id.clone(),
            sk: sort_key(
                &occurred_at,
                &event.metadata.event_id,
                &event.content_digest(),
            ),
            event_id: event.metadata.event_id.clone(),
            event_type: event.detail_type.clone(),
            source: event.source.clone(),
            causation_id: event.metadata.causation_id.clone(),
            order_id: order_id.map(str::to_string),
            occurred_at,
            detail: event.detail().to_string(),
            expires_at: (*now + Duration::days(i64::from(retention_days))).timestamp(),
        }
    }

    /// The event back, as it travelled (`None` when the stored detail is unreadable).
    pub fn to_raw(&self) -> Option<RawEvent> {
        let detail: serde_json::Value = serde_json::from_str(&self.detail).ok()?;
        RawEvent::from_eventbridge_json(serde_json::json!({
            "id": self.event_id, "source": self.source, "detail-type": self.event_type,
            "detail": detail,
        }))
        .ok()
    }
}

/// `<occurredAt>#<eventId>#<digest>`: time order within a correlation or an order, and one
/// key per event. The event id alone is the sender's word: two different events that share
/// an id and a time (a reused id, a conflicting duplicate) would overwrite each other's
/// entry, and the trail would lose the one worth seeing. With the content digest
/// ([`RawEvent::content_digest`], its first 16 hex digits) they keep two entries, while a
/// redelivery of the same event still lands on its own key.
pub fn sort_key(occurred_at: &str, event_id: &str, digest: &str) -> String {
    let digest = digest.get(..16).unwrap_or(digest);
    format!("{occurred_at}#{event_id}#{digest}")
}

/// The entries without repeated keys, first kept: `BatchWriteItem` refuses a request that
/// names one key twice.
pub fn distinct(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter(|e| seen.insert((e.correlation_id.as_str(), e.sk.as_str())))
        .collect()
}

/// The audit table.
#[derive(Clone, Debug)]
pub struct AuditLog {
    client: Client,
    table: String,
    retry: RetryPolicy,
}

impl AuditLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        AuditLog {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Writes every entry, 25 to a `BatchWriteItem`, retrying what DynamoDB leaves in
    /// `UnprocessedItems` (it may return some items unwritten under throttling, "the
    /// application must retry them"; same reference as [`MAX_BATCH_WRITE`]).
    pub async fn write(&self, entries: &[AuditEntry]) -> Result<(), DynamoError> {
        for chunk in distinct(entries).chunks(MAX_BATCH_WRITE) {
            let mut pending = chunk
                .iter()
                .map(|e| to_request(e))
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 1;
            loop {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| DynamoError::from_sdk(&e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if !self.retry.allows_another(attempt) {
                    return Err(DynamoError::Unavailable(format!(
                        "{} audit entries still unprocessed after {attempt} BatchWriteItem calls",
                        pending.len()
                    )));
                }
                tokio::time::sleep(self.retry.delay(attempt)).await;
                attempt += 1;
            }
        }
        Ok(())
    }

    /// Every entry of a correlation id, in time order.
    pub async fn by_correlation(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<AuditEntry>, DynamoError> {
        self.query(None, "correlationId", correlation_id).await
    }

    /// Every entry about an order, in time order.
    pub async fn by_order(&self, order_id: &str) -> Result<Vec<AuditEntry>, DynamoError> {
        self.query(Some(BY_ORDER_INDEX), "orderId", order_id).await
    }

    async fn query(
        &self,
        index: Option<&str>,
        key: &str,
        value: &str,
    ) -> Result<Vec<AuditEntry>, DynamoError> {
        let mut entries = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", key)
                .expression_attribute_values(":v", s(value))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| DynamoError::from_sdk(&e))?;
            for item in out.items() {
                entries.push(
                    serde_dynamo::from_item(item.clone())
                        .map_err(|e| DynamoError::Unreadable(e.to_string()))?,
                );
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(entries);
            }
        }
    }
}

fn to_request(entry: &AuditEntry) -> Result<WriteRequest, DynamoError> {
    let item = serde_dynamo::to_item(entry).map_err(|e| DynamoError::Rejected(e.to_string()))?;
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| DynamoError::Rejected(e.to_string()))?;
    Ok(WriteRequest::builder().put_request(put).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventMetadata;

    fn event(id: &str, cause: Option<&str>) -> RawEvent {
        RawEvent {
            source: "orderflow.payment".into(),
            detail_type: "PaymentProcessed".into(),
            metadata: EventMetadata {
                event_id: id.into(),
                schema_version: 1,
                correlation_id: "corr-1".into(),
                causation_id: cause.map(str::to_string),
                occurred_at: "2026-11-21T10:00:00.250Z".parse().unwrap(),
            },
            data: serde_json::json!({"orderId": "ord-1"}),
        }
    }

    #[test]
    fn an_entry_is_keyed_by_correlation_then_time_and_event_and_expires_after_retention() {
        let now: DateTime<Utc> = "2026-11-21T10:00:01Z".parse().unwrap();
        let entry = AuditEntry::of(&event("e-2", Some("e-1")), Some("ord-1"), 30, &now);
        assert_eq!(entry.correlation_id, "corr-1");
        let digest = event("e-2", Some("e-1")).content_digest();
        assert_eq!(
            entry.sk,
            format!("2026-11-21T10:00:00.250Z#e-2#{}", &digest[..16])
        );
        assert_eq!(entry.causation_id.as_deref(), Some("e-1"));
        assert_eq!(entry.expires_at, now.timestamp() + 30 * 86_400);
        let back = entry.to_raw().unwrap();
        assert_eq!(back, event("e-2", Some("e-1")));
    }

    #[test]
    fn the_item_has_the_attribute_names_the_table_and_index_use() {
        let now = Utc::now();
        let item = serde_dynamo::to_item::<_, HashMap<String, AttributeValue>>(AuditEntry::of(
            &event("e-2", None),
            Some("ord-1"),
            1,
            &now,
        ))
        .unwrap();
        for name in [
            "correlationId",
            "sk",
            "orderId",
            "type",
            "source",
            "eventId",
            "detail",
            "expiresAt",
        ] {
            assert!(item.contains_key(name), "{name}");
        }
        assert!(!item.contains_key("causationId"), "absent, not null");
    }

    #[test]
    fn two_events_that_share_an_id_and_a_time_keep_two_entries() {
        let now = Utc::now();
        let first = event("e-1", None);
        let mut reused = event("e-1", None);
        reused.data = serde_json::json!({"orderId": "ord-2"});
        let a = AuditEntry::of(&first, None, 1, &now);
        let b = AuditEntry::of(&reused, None, 1, &now);
        assert_ne!(a.sk, b.sk, "a reused id must not overwrite the first entry");
        assert_eq!(
            a.sk,
            AuditEntry::of(&first, None, 1, &now).sk,
            "a redelivery is one entry"
        );
    }

    #[test]
    fn an_entry_expires_from_when_it_is_written_not_from_when_the_sender_says() {
        // given an event that claims to have happened years before it was written
        let mut old = event("e-1", None);
        old.metadata.occurred_at = "2001-01-01T00:00:00Z".parse().unwrap();
        let now: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();

        let entry = AuditEntry::of(&old, None, 30, &now);

        // then it lives 30 days from now: an expiry in 2001 would be more than five years in
        // the past, which DynamoDB's TTL never deletes
        assert_eq!(entry.expires_at, now.timestamp() + 30 * 86_400);
        assert!(entry.sk.starts_with("2001-01-01T00:00:00.000Z#e-1#"));
    }

    #[test]
    fn the_same_id_from_another_source_keeps_its_own_entry() {
        let now = Utc::now();
        let first = event("e-1", None);
        let mut other = event("e-1", None);
        other.source = "orderflow.orders".into();
        assert_ne!(
            AuditEntry::of(&first, None, 1, &now).sk,
            AuditEntry::of(&other, None, 1, &now).sk
        );
    }

    #[test]
    fn a_batch_names_each_key_once() {
        let now = Utc::now();
        let a = AuditEntry::of(&event("e-1", None), None, 1, &now);
        let b = AuditEntry::of(&event("e-2", None), None, 1, &now);
        let batch = [a.clone(), b.clone(), a.clone()];
        let kept = distinct(&batch);
        assert_eq!(kept, vec![&a, &b]);
    }
}
