//! Handles one event for the analytics function.
//!
//! Exactly once per event id without the idempotency layer: the marker and the counters are
//! written in one transaction (see [`crate::repository`]), so there is no step between
//! "remember" and "count" for a crash to fall into.

use std::sync::Arc;

use chrono::Utc;
use contracts::{Event, Payload};
use eventkit::{Envelope, Handled, HandlerError, Invocation};

use crate::counters::plan;
use crate::repository::{Applied, CounterStore, DynamoCounterStore, Marker};

pub struct AnalyticsService {
    store: Arc<dyn CounterStore>,
}

impl AnalyticsService {
    /// Reads `ANALYTICS_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let table = eventkit::aws::required_env("ANALYTICS_TABLE")?;
        Ok(AnalyticsService::new(Arc::new(DynamoCounterStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            table,
        ))))
    }

    pub fn new(store: Arc<dyn CounterStore>) -> Self {
        AnalyticsService { store }
    }

    /// Counts one event, exactly once per event id.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let updates = plan(&event);
        let marker = Marker {
            detail_type: event.data.detail_type(),
            event_id: event.metadata.event_id,
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
    use crate::counters::{AMOUNT, COUNT, ORDERS, REFUNDED, REFUNDS};
    use crate::repository::memory::MemoryCounterStore;
    use crate::repository::{marker_key, MARKER_TTL};
    use crate::ROUTES;
    use contracts::*;
    use eventkit::testing::invocation;
    use eventkit::{take_in, RawEvent};
    use serde_json::{json, Value};

    const HOUR: &str = "counts#2026-11-21T10";
    const DAY: &str = "revenue#2026-11-21";

    fn service() -> (Arc<MemoryCounterStore>, AnalyticsService) {
        let store = Arc::new(MemoryCounterStore::default());
        (store.clone(), AnalyticsService::new(store))
    }

    /// `data` as an event that happened at `occurred_at`.
    fn event_at(occurred_at: &str, data: impl Into<Event>) -> Envelope<Event> {
        let mut event = Envelope::new(data.into());
        event.metadata.occurred_at = occurred_at.parse().unwrap();
        event
    }

    fn currency(code: &str) -> Currency {
        Currency::try_from(code.to_string()).unwrap()
    }

    fn processed(amount: u64, code: &str) -> PaymentProcessed {
        PaymentProcessed {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            amount,
            currency: currency(code),
        }
    }

    fn refunded(amount: u64, code: &str) -> PaymentRefunded {
        PaymentRefunded {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            amount,
            currency: currency(code),
        }
    }

    /// One event of every type in the contracts.
    fn one_of_each() -> Vec<Event> {
        let (order, email) = (String::from("ord-1"), String::from("ada@example.com"));
        let lines = vec![StockLine {
            sku: "MUG".into(),
            quantity: 1,
        }];
        vec![
            OrderPlaced {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                customer_email: email.clone(),
                currency: currency("EUR"),
                lines: vec![OrderLine {
                    sku: "MUG".into(),
                    quantity: 1,
                    unit_price: 1250,
                }],
                total: 1250,
                payment_token: "tok_visa".into(),
                shipping_address: None,
            }
            .into(),
            CustomerRegistered {
                customer_id: "cus-1".into(),
                email: email.clone(),
                name: "Ada".into(),
            }
            .into(),
            processed(1250, "EUR").into(),
            PaymentFailed {
                order_id: order.clone(),
                payment_id: "pay_1".into(),
                amount: 1250,
                currency: currency("EUR"),
                reason: "card-declined".into(),
            }
            .into(),
            RefundPaymentRequested {
                order_id: order.clone(),
                reason: "out-of-stock".into(),
            }
            .into(),
            refunded(1250, "EUR").into(),
            InventoryReserved {
                order_id: order.clone(),
                reservation_id: "res_1".into(),
                lines: lines.clone(),
            }
            .into(),
            InventoryOutOfStock {
                order_id: order.clone(),
                shortages: vec![Shortage {
                    sku: "MUG".into(),
                    requested: 2,
                    available: 1,
                }],
            }
            .into(),
            ReleaseInventoryRequested {
                order_id: order.clone(),
                reason: "payment-failed".into(),
            }
            .into(),
            InventoryReleased {
                order_id: order.clone(),
                reservation_id: "res_1".into(),
                lines: lines.clone(),
            }
            .into(),
            OrderConfirmed {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                customer_email: email.clone(),
                total: 1250,
                currency: currency("EUR"),
                payment_id: "pay_1".into(),
                reservation_id: "res_1".into(),
                lines,
            }
            .into(),
            OrderCancelled {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                customer_email: email.clone(),
                reason: "out-of-stock".into(),
            }
            .into(),
            OrderShipped {
                order_id: order.clone(),
                shipment_id: "shp_1".into(),
                carrier: "DHL".into(),
                tracking_number: "JD1".into(),
                customer_email: email.clone(),
            }
            .into(),
            FraudSuspected {
                order_id: order.clone(),
                reason: "velocity".into(),
                score: 90,
                pattern: None,
            }
            .into(),
            contracts::FraudCleared {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                rule: contracts::FraudRule {
                    min_orders: 5,
                    window_seconds: 60,
                    min_locations: 2,
                },
                orders_in_window: 1,
                locations_in_window: 1,
            }
            .into(),
            EmailSent {
                cause_event_id: "e-0".into(),
                template: "welcome".into(),
                to: email,
                subject: "Welcome".into(),
                message_id: "ses-1".into(),
                order_id: None,
            }
            .into(),
        ]
    }

    fn raw(source: &str, detail_type: &str, data: Value) -> RawEvent {
        RawEvent::from_eventbridge_json(json!({
            "id": "e-1", "source": source, "detail-type": detail_type,
            "time": "2026-11-21T10:30:00Z", "detail": {"data": data}
        }))
        .unwrap()
    }

    #[test]
    fn the_samples_cover_every_routed_type() {
        let mut sampled: Vec<_> = one_of_each().iter().map(Payload::detail_type).collect();
        let mut routed: Vec<_> = ROUTES.iter().map(|r| r.detail_type).collect();
        sampled.sort_unstable();
        routed.sort_unstable();
        assert_eq!(sampled, routed);
    }

    #[tokio::test]
    async fn every_routed_type_is_counted_once_in_its_hour_even_when_delivered_twice() {
        let (store, service) = service();
        for data in one_of_each() {
            let detail_type = data.detail_type();
            let event = event_at("2026-11-21T10:30:00Z", data);

            let first = service.handle(event.clone(), invocation()).await.unwrap();
            let again = service.handle(event.clone(), invocation()).await.unwrap();

            assert_eq!(
                (first, again),
                (Handled::Processed, Handled::Duplicate),
                "{detail_type}"
            );
            assert_eq!(store.counter(HOUR, detail_type, COUNT), 1, "{detail_type}");
            let marker = store
                .markers
                .get(&marker_key(&event.metadata.event_id).pk)
                .unwrap();
            assert_eq!(
                (marker.detail_type, marker.duplicates),
                (detail_type, 1),
                "{detail_type}"
            );
        }
    }

    #[tokio::test]
    async fn a_payment_delivered_twice_adds_to_revenue_once() {
        let (store, service) = service();
        let payment = event_at("2026-11-21T10:30:00Z", processed(1234, "XTS"));

        service.handle(payment.clone(), invocation()).await.unwrap();
        let again = service.handle(payment.clone(), invocation()).await.unwrap();

        assert_eq!(again, Handled::Duplicate);
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 1234);
        assert_eq!(store.counter(DAY, "XTS", ORDERS), 1);
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 1);
        let marker = store
            .markers
            .get(&marker_key(&payment.metadata.event_id).pk)
            .unwrap();
        let week = Utc::now().timestamp() + MARKER_TTL.as_secs() as i64;
        assert!((week - 5..=week).contains(&marker.expires_at));
        assert_eq!(marker.duplicates, 1);
    }

    #[tokio::test]
    async fn revenue_is_summed_per_currency_per_day_with_refunds_apart() {
        let (store, service) = service();
        for event in [
            event_at("2026-11-21T00:00:00Z", processed(100, "EUR")),
            event_at("2026-11-21T23:59:59Z", processed(250, "EUR")),
            event_at("2026-11-21T12:00:00Z", processed(999, "XTS")),
            event_at("2026-11-22T00:00:00Z", processed(7, "EUR")),
            event_at("2026-11-21T18:00:00Z", refunded(40, "EUR")),
        ] {
            assert_eq!(
                service.handle(event, invocation()).await.unwrap(),
                Handled::Processed
            );
        }

        let day = |pk: &str, sk: &str| {
            [AMOUNT, ORDERS, REFUNDED, REFUNDS].map(|a| store.counter(pk, sk, a))
        };
        assert_eq!(day(DAY, "EUR"), [350, 2, 40, 1]);
        assert_eq!(day(DAY, "XTS"), [999, 1, 0, 0]);
        assert_eq!(day("revenue#2026-11-22", "EUR"), [7, 1, 0, 0]);
    }

    #[tokio::test]
    async fn a_transaction_conflict_is_transient_and_the_redelivery_counts_once() {
        let (store, service) = service();
        let payment = event_at("2026-11-21T10:30:00Z", processed(500, "XTS"));
        store.conflict_next(1);

        let err = service
            .handle(payment.clone(), invocation())
            .await
            .unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "transaction-conflict");
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 0);

        let retried = service.handle(payment, invocation()).await.unwrap();
        assert_eq!(retried, Handled::Processed);
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 500);
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 1);
    }

    #[test]
    fn a_poison_payment_is_refused_at_intake_naming_the_field() {
        let payment = |amount: Value, code: &str| json!({"orderId": "o-1", "paymentId": "pay_1", "amount": amount, "currency": code});
        for (detail_type, data, path) in [
            (
                "PaymentProcessed",
                payment(json!("1234"), "EUR"),
                "data.amount",
            ),
            ("PaymentProcessed", payment(json!(-1), "EUR"), "data.amount"),
            (
                "PaymentProcessed",
                payment(json!(1), "euro"),
                "data.currency",
            ),
            ("PaymentRefunded", json!({"orderId": "o-1"}), "data"),
        ] {
            let err =
                take_in::<Event>(ROUTES, &raw("orderflow.payment", detail_type, data)).unwrap_err();
            assert_eq!(err.reason(), "invalid-data", "{detail_type}: {err}");
            assert!(err.to_string().contains(&format!("`{path}`")), "{err}");
        }
    }

    #[test]
    fn unknown_types_and_forged_sources_are_refused_at_intake() {
        let unknown = take_in::<Event>(
            ROUTES,
            &raw("orderflow.returns", "ReturnRequested", json!(42)),
        );
        assert_eq!(unknown.unwrap_err().reason(), "not-routed");
        let empty = take_in::<Event>(ROUTES, &raw("orderflow.payment", "", json!({})));
        assert_eq!(empty.unwrap_err().reason(), "not-routed");
        let forged = take_in::<Event>(
            ROUTES,
            &raw(
                "acme.payment",
                "PaymentProcessed",
                json!({"orderId": "o-1", "paymentId": "p", "amount": 1, "currency": "EUR"}),
            ),
        );
        assert_eq!(forged.unwrap_err().reason(), "untrusted-source");
    }
}
