//! Handles one event for the analytics function.

use chrono::Utc;
use contracts::sources;
use eventkit::{Handled, HandlerError, RawEvent};

use crate::counters::plan;
use crate::repository::{Applied, CounterStore, DynamoCounterStore, Marker};

pub struct AnalyticsService<S = DynamoCounterStore> {
    store: S,
}

impl AnalyticsService {
    /// Reads `ANALYTICS_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let table = eventkit::aws::required_env("ANALYTICS_TABLE")?;
        Ok(AnalyticsService::new(DynamoCounterStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            table,
        )))
    }
}

impl<S: CounterStore> AnalyticsService<S> {
    pub fn new(store: S) -> Self {
        AnalyticsService { store }
    }

    /// Counts one event, exactly once per event id.
    pub async fn handle(&self, event: RawEvent) -> Result<Handled, HandlerError> {
        // The rule only routes Orderflow sources; anything else was put on the queue by
        // hand and does not belong in Orderflow's numbers.
        if !event.source.starts_with(sources::PREFIX) {
            tracing::warn!(source = %event.source, "not an Orderflow event; not counted");
            return Ok(Handled::Ignored);
        }
        let updates = plan(&event)?;
        let marker = Marker {
            event_id: event.metadata.event_id.clone(),
            detail_type: event.detail_type.clone(),
            counted_at: Utc::now(),
        };
        match self.store.apply_once(&marker, &updates).await? {
            Applied::Counted => {
                tracing::info!(counters = updates.len(), "event counted");
                Ok(Handled::Processed)
            }
            Applied::AlreadyCounted => {
                if let Err(e) = self.store.note_duplicate(&marker.event_id).await {
                    // Only a diagnostic: the duplicate was already not counted.
                    tracing::warn!(error = %e, "could not note the duplicate on its marker");
                }
                Ok(Handled::Duplicate)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{CounterKey, CounterUpdate, AMOUNT, COUNT, ORDERS};
    use crate::repository::{marker_key, RepositoryError};
    use async_trait::async_trait;
    use eventkit::EventMetadata;
    use serde_json::{json, Value};
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Mutex;

    /// The table in memory, with DynamoDB's all-or-nothing transaction.
    #[derive(Default)]
    struct MemoryStore {
        markers: Mutex<HashSet<CounterKey>>,
        counters: Mutex<BTreeMap<(CounterKey, &'static str), u64>>,
        duplicates: Mutex<u32>,
        conflict: bool,
    }

    #[async_trait]
    impl CounterStore for MemoryStore {
        async fn apply_once(
            &self,
            marker: &Marker,
            updates: &[CounterUpdate],
        ) -> Result<Applied, RepositoryError> {
            if self.conflict {
                return Err(RepositoryError::Conflict("TransactionConflict".into()));
            }
            if !self.markers.lock().unwrap().insert(marker.key()) {
                return Ok(Applied::AlreadyCounted);
            }
            let mut counters = self.counters.lock().unwrap();
            for u in updates {
                for (attribute, amount) in &u.add {
                    *counters.entry((u.key.clone(), *attribute)).or_default() += amount;
                }
            }
            Ok(Applied::Counted)
        }

        async fn note_duplicate(&self, _event_id: &str) -> Result<(), RepositoryError> {
            *self.duplicates.lock().unwrap() += 1;
            Ok(())
        }
    }

    impl MemoryStore {
        fn get(&self, pk: &str, sk: &str, attribute: &'static str) -> u64 {
            let key = CounterKey {
                pk: pk.into(),
                sk: sk.into(),
            };
            self.counters
                .lock()
                .unwrap()
                .get(&(key, attribute))
                .copied()
                .unwrap_or(0)
        }
    }

    fn event(id: &str, source: &str, detail_type: &str, data: Value) -> RawEvent {
        RawEvent {
            source: source.into(),
            detail_type: detail_type.into(),
            metadata: EventMetadata {
                event_id: id.into(),
                schema_version: 1,
                correlation_id: id.into(),
                causation_id: None,
                occurred_at: "2026-11-21T10:30:00Z".parse().unwrap(),
            },
            data,
        }
    }

    fn payment(id: &str, amount: Value) -> RawEvent {
        event(
            id,
            "orderflow.payment",
            "PaymentProcessed",
            json!({"orderId": "o", "paymentId": "p", "amount": amount, "currency": "XTS"}),
        )
    }

    #[tokio::test]
    async fn the_same_event_twice_is_counted_once() {
        let service = AnalyticsService::new(MemoryStore::default());
        let e = payment("e-1", json!(1234));
        assert_eq!(service.handle(e.clone()).await.unwrap(), Handled::Processed);
        assert_eq!(service.handle(e).await.unwrap(), Handled::Duplicate);
        let store = &service.store;
        assert_eq!(
            store.get("counts#2026-11-21T10", "PaymentProcessed", COUNT),
            1
        );
        assert_eq!(store.get("revenue#2026-11-21", "XTS", AMOUNT), 1234);
        assert_eq!(store.get("revenue#2026-11-21", "XTS", ORDERS), 1);
        assert_eq!(*store.duplicates.lock().unwrap(), 1);
        assert!(store.markers.lock().unwrap().contains(&marker_key("e-1")));
    }

    #[tokio::test]
    async fn different_events_add_up() {
        let service = AnalyticsService::new(MemoryStore::default());
        service.handle(payment("e-1", json!(100))).await.unwrap();
        service.handle(payment("e-2", json!(250))).await.unwrap();
        assert_eq!(service.store.get("revenue#2026-11-21", "XTS", AMOUNT), 350);
        assert_eq!(service.store.get("revenue#2026-11-21", "XTS", ORDERS), 2);
    }

    #[tokio::test]
    async fn unknown_types_are_counted_not_dead_lettered() {
        let service = AnalyticsService::new(MemoryStore::default());
        let e = event("e-1", "orderflow.returns", "ReturnRequested", json!(42));
        assert_eq!(service.handle(e).await.unwrap(), Handled::Processed);
        assert_eq!(
            service
                .store
                .get("counts#2026-11-21T10", "ReturnRequested", COUNT),
            1
        );
    }

    #[tokio::test]
    async fn a_poison_payment_fails_permanently_and_counts_nothing() {
        let service = AnalyticsService::new(MemoryStore::default());
        let err = service
            .handle(payment("e-1", json!("1234")))
            .await
            .unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "invalid-data");
        assert!(service.store.counters.lock().unwrap().is_empty());
        assert!(service.store.markers.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_transaction_conflict_is_transient() {
        let service = AnalyticsService::new(MemoryStore {
            conflict: true,
            ..MemoryStore::default()
        });
        let err = service.handle(payment("e-1", json!(1))).await.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "transaction-conflict");
    }

    #[tokio::test]
    async fn foreign_sources_are_ignored() {
        let service = AnalyticsService::new(MemoryStore::default());
        let e = event("e-1", "acme.orders", "OrderPlaced", json!({}));
        assert_eq!(service.handle(e).await.unwrap(), Handled::Ignored);
        assert!(service.store.markers.lock().unwrap().is_empty());
    }
}
