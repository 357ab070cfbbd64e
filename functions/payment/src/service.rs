//! Handles one event for the payment function.
//!
//! Why a charge happens once under at-least-once delivery, and why every copy of its outcome
//! is one event: the payments table is the order's first-writer-wins record (key `orderId`),
//! see [`eventkit::once`]. A refund is once because only `CHARGED -> REFUNDED` happens, by a
//! conditional update.
//!
//! What is published again is built from the stored record alone (status, amount, currency,
//! reason, payment id, the event that caused it and when), never decided again: a policy or
//! a catalogue that changed since cannot turn a stored decline into an announced charge, and
//! the event is the very one published the first time, id and time included.
//!
//! What payment refuses, and why:
//! - **A conflicting `OrderPlaced`.** The record keeps the charged event's content digest.
//!   Another `OrderPlaced` for the order with the same digest is a duplicate (the stored
//!   outcome is published again); with another digest it is a different order under a
//!   reused id, and it is dead-lettered as `conflicting-duplicate` rather than charged,
//!   merged or silently dropped.
//! - **A cancelled order.** `OrderCancelled` for an order with no payment leaves a
//!   `CANCELLED` tombstone through the same first-writer-wins put, so an `OrderPlaced` that
//!   arrives late (or is redriven from the DLQ) charges nothing. If the charge came first the
//!   tombstone loses and changes nothing: the saga's `RefundPaymentRequested` gives the money
//!   back. Both orders of arrival, and duplicates of each, end the same way.
//! - **Prices that are not the catalogue's.** Every line's `unitPrice` and the order's
//!   currency are compared with the catalogue ([`crate::catalogue`]) before charging; any
//!   difference, or a SKU not for sale, is a `PaymentFailed` with reason `price-mismatch`,
//!   stored like any decline, and the saga cancels the order and releases its stock.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use contracts::{
    Currency, Event, OrderCancelled, OrderPlaced, PaymentFailed, PaymentProcessed, PaymentRefunded,
    RefundPaymentRequested,
};
use eventkit::envelope::format_time;
use eventkit::once::conflicts;
use eventkit::{
    Decided, DecidedBy, DecodeError, Envelope, EventMetadata, Handled, HandlerError, Invocation,
    Publish, Publisher,
};

use crate::catalogue::{Catalogue, DynamoCatalogue};
use crate::decision::{
    check_prices, decide, payment_id_for, plan_refund, NoRefund, PaymentDecision, PaymentPolicy,
    PaymentStatus, PriceCheck, RefundPlan,
};
use crate::repository::{
    DynamoPaymentRepository, PaymentRecord, PaymentRepository, Refund, RefundRequest,
};

pub struct PaymentService {
    payments: Arc<dyn PaymentRepository>,
    catalogue: Arc<dyn Catalogue>,
    bus: Arc<dyn Publish<Event>>,
    policy: PaymentPolicy,
}

impl PaymentService {
    /// Reads `PAYMENTS_TABLE`, `INVENTORY_TABLE` (the catalogue's prices), `EVENT_BUS_NAME`
    /// and optionally `MAX_CHARGE_MINOR` (default 100000).
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        let policy = match std::env::var("MAX_CHARGE_MINOR") {
            Ok(v) => PaymentPolicy {
                max_charge_minor: v
                    .parse()
                    .map_err(|_| format!("MAX_CHARGE_MINOR must be a whole number, got `{v}`"))?,
            },
            Err(_) => PaymentPolicy::default(),
        };
        Ok(PaymentService::new(
            Arc::new(DynamoPaymentRepository::new(
                dynamo.clone(),
                required_env("PAYMENTS_TABLE")?,
            )),
            Arc::new(DynamoCatalogue::new(
                dynamo,
                required_env("INVENTORY_TABLE")?,
            )),
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            )),
            policy,
        ))
    }

    pub fn new(
        payments: Arc<dyn PaymentRepository>,
        catalogue: Arc<dyn Catalogue>,
        bus: Arc<dyn Publish<Event>>,
        policy: PaymentPolicy,
    ) -> Self {
        PaymentService {
            payments,
            catalogue,
            bus,
            policy,
        }
    }

    /// Handles one event: `OrderPlaced` charges, `RefundPaymentRequested` refunds,
    /// `OrderCancelled` keeps an uncharged order from ever being charged. Anything else is
    /// misrouted and fails permanently.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        // Of the decoded event: its payload in the current schema, so an upcast older
        // version of the same order has the same digest.
        let digest = event.content_digest();
        let Envelope { metadata, data, .. } = event;
        match data {
            Event::OrderPlaced(order) => self.charge(&metadata, &order, digest).await,
            Event::RefundPaymentRequested(request) => self.refund(&metadata, &request).await,
            Event::OrderCancelled(cancelled) => self.cancel(&metadata, &cancelled).await,
            other => Err(DecodeError::not_routed(&other).into()),
        }
    }

    async fn charge(
        &self,
        cause: &EventMetadata,
        order: &OrderPlaced,
        digest: String,
    ) -> Result<Handled, HandlerError> {
        let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
        let prices = check_prices(order, &self.catalogue.prices(&skus).await?);
        if let PriceCheck::Mismatch(lines) = &prices {
            tracing::warn!(order_id = %order.order_id, ?lines,
                "order prices are not the catalogue's; declining");
        }
        let decision = decide(order, &prices, &self.policy);
        let record = record_of(cause, order, &decision, digest);
        let written = self.payments.record_once(&record).await?;
        let (stored, handled) = match Decided::of(written, &cause.event_id) {
            Decided::First => (record, Handled::Processed),
            Decided::Again(existing) | Decided::DecidedBefore(existing) => {
                match replay(&existing, &record) {
                    // Nothing is charged; the stored outcome is published again, the same
                    // event as the first time.
                    Replay::Republish => (existing, Handled::Duplicate),
                    Replay::Cancelled => {
                        tracing::info!(order_id = %existing.order_id,
                            cancelled_by = %existing.event_id, event_id = %cause.event_id,
                            "order was cancelled before it was charged; charging nothing");
                        return Ok(Handled::Ignored);
                    }
                    Replay::Conflict => {
                        return Err(HandlerError::permanent(
                            "conflicting-duplicate",
                            format!(
                                "order {} was charged for OrderPlaced {} with other content; \
                                 OrderPlaced {} for the same order is refused, nothing charged",
                                existing.order_id, existing.event_id, cause.event_id
                            ),
                        ))
                    }
                }
            }
        };
        self.bus.publish(&[outcome_event(&stored)?]).await?;
        tracing::info!(order_id = %stored.order_id, payment_id = %stored.payment_id,
            status = %stored.status, amount = stored.amount, ?handled, "payment recorded");
        Ok(handled)
    }

    /// Makes sure an order cancelled before its charge is never charged: a `CANCELLED`
    /// tombstone, unless the order has a payment already (then the saga's refund request is
    /// what gives the money back, and this changes nothing).
    async fn cancel(
        &self,
        cause: &EventMetadata,
        cancelled: &OrderCancelled,
    ) -> Result<Handled, HandlerError> {
        let order_id = cancelled.order_id.as_str();
        // Write first, like a charge: the put's condition decides between the two, and the
        // stored item it returns on failure says which came first.
        let written = self
            .payments
            .record_once(&tombstone(cause, cancelled))
            .await?;
        match Decided::of(written, &cause.event_id) {
            Decided::First => {
                tracing::info!(order_id, reason = %cancelled.reason,
                    "no payment yet; the order is marked so that it never will be charged");
                Ok(Handled::Processed)
            }
            Decided::Again(existing) | Decided::DecidedBefore(existing)
                if existing.status == PaymentStatus::Cancelled =>
            {
                tracing::info!(order_id, cancelled_by = %existing.event_id,
                    "order already marked cancelled");
                Ok(Handled::Duplicate)
            }
            Decided::Again(existing) | Decided::DecidedBefore(existing) => {
                tracing::info!(order_id, status = %existing.status,
                    "order has a payment; a cancellation changes nothing here (the saga asks for the refund)");
                Ok(Handled::Ignored)
            }
        }
    }

    /// Refunds the order's charge in full, once, and publishes `PaymentRefunded`.
    ///
    /// The conditional update (`CHARGED -> REFUNDED`) is what makes it once, for a redelivery
    /// and across different requests for the same order.
    async fn refund(
        &self,
        cause: &EventMetadata,
        request: &RefundPaymentRequested,
    ) -> Result<Handled, HandlerError> {
        let order_id = request.order_id.as_str();
        let refund = RefundRequest {
            event_id: cause.event_id.clone(),
            reason: request.reason.clone(),
            at: format_time(&chrono::Utc::now()),
        };
        // Write first: a charged payment, the usual case, needs no read.
        let (refunded, handled) = match self.payments.refund_once(order_id, &refund).await? {
            Refund::Refunded(record) => (*record, Handled::Processed),
            Refund::NotCharged => {
                let Some(current) = self.payments.payment(order_id).await? else {
                    return Ok(nothing_to_refund(order_id, NoRefund::NoPayment));
                };
                match plan_refund(
                    current.status,
                    current.refund_event_id.as_deref(),
                    &cause.event_id,
                ) {
                    RefundPlan::Republish => (current, Handled::Duplicate),
                    RefundPlan::Nothing(why) => return Ok(nothing_to_refund(order_id, why)),
                    // Charged between the update and the read: let SQS bring it back.
                    RefundPlan::Refund => {
                        return Err(HandlerError::transient(
                            "payment-changed",
                            format!("payment of order {order_id} changed during the refund"),
                        ))
                    }
                }
            }
        };
        self.bus
            .publish(&[refunded_event(cause, &refunded)])
            .await?;
        tracing::info!(order_id, payment_id = %refunded.payment_id, amount = refunded.amount,
            reason = %request.reason, ?handled, "payment refunded");
        Ok(handled)
    }
}

/// What an `OrderPlaced` does when its order has a record already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// The same order again: publish the stored outcome again.
    Republish,
    /// The order was cancelled first: charge and publish nothing.
    Cancelled,
    /// Another order under the same id: refuse it.
    Conflict,
}

/// `existing` is the order's stored record, `attempt` the record this delivery would have
/// written.
fn replay(existing: &PaymentRecord, attempt: &PaymentRecord) -> Replay {
    if existing.status == PaymentStatus::Cancelled {
        return Replay::Cancelled;
    }
    // The same order is the same content, whatever its event id (see `once::conflicts`).
    match attempt.order_digest.as_deref() {
        Some(now) if conflicts(existing.order_digest.as_deref(), now) => Replay::Conflict,
        _ => Replay::Republish,
    }
}

fn nothing_to_refund(order_id: &str, why: NoRefund) -> Handled {
    tracing::info!(order_id, ?why, "nothing to refund");
    match why {
        NoRefund::RefundedByAnother => Handled::Duplicate,
        NoRefund::NoPayment | NoRefund::Declined | NoRefund::Cancelled => Handled::Ignored,
    }
}

/// `PaymentRefunded` for a refunded record; its id is derived from the request, so
/// publishing it again after a crash is the same event.
fn refunded_event(cause: &EventMetadata, record: &PaymentRecord) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        &record.payment_id,
        Event::PaymentRefunded(PaymentRefunded {
            order_id: record.order_id.clone(),
            payment_id: record.payment_id.clone(),
            amount: record.amount,
            currency: record.currency.clone(),
        }),
    )
}

fn record_of(
    cause: &EventMetadata,
    order: &OrderPlaced,
    decision: &PaymentDecision,
    digest: String,
) -> PaymentRecord {
    let (status, reason) = match decision {
        PaymentDecision::Approved { .. } => (PaymentStatus::Charged, None),
        PaymentDecision::Declined { reason, .. } => {
            (PaymentStatus::Declined, Some(reason.code().to_string()))
        }
    };
    PaymentRecord {
        order_id: order.order_id.clone(),
        payment_id: decision.payment_id().to_string(),
        status,
        amount: order.total,
        currency: order.currency.clone(),
        decline_reason: reason,
        event_id: cause.event_id.clone(),
        order_digest: Some(digest),
        correlation_id: cause.correlation_id.clone(),
        processed_at: format_time(&chrono::Utc::now()),
        refunded_at: None,
        refund_event_id: None,
        refund_reason: None,
        cancel_reason: None,
    }
}

/// The record of an order cancelled before it was charged. `OrderCancelled` carries no
/// money, so the tombstone holds none: amount 0 in `XXX`, ISO 4217's code for "no currency
/// involved"; nothing ever reads them as a charge (a refund needs `CHARGED`).
fn tombstone(cause: &EventMetadata, cancelled: &OrderCancelled) -> PaymentRecord {
    PaymentRecord {
        order_id: cancelled.order_id.clone(),
        payment_id: payment_id_for(&cancelled.order_id),
        status: PaymentStatus::Cancelled,
        amount: 0,
        currency: no_currency(),
        decline_reason: None,
        event_id: cause.event_id.clone(),
        order_digest: None,
        correlation_id: cause.correlation_id.clone(),
        processed_at: format_time(&chrono::Utc::now()),
        refunded_at: None,
        refund_event_id: None,
        refund_reason: None,
        cancel_reason: Some(cancelled.reason.clone()),
    }
}

fn no_currency() -> Currency {
    // Three upper-case letters: always a valid code.
    Currency::try_from("XXX".to_string()).unwrap_or_else(|_| unreachable!("XXX is a code"))
}

/// `PaymentProcessed` or `PaymentFailed` for a stored charge or decline, built from the
/// record alone: its id is derived from the `OrderPlaced` that made the record (the payment
/// id as discriminator) and its time is the record's, so every publish of it, first or
/// again, is the same event.
fn outcome_event(record: &PaymentRecord) -> Result<Envelope<Event>, HandlerError> {
    let corrupt = |why: &str| {
        HandlerError::permanent(
            "corrupt-record",
            format!("payment of order {}: {why}", record.order_id),
        )
    };
    let data = match record.status {
        // A refunded payment was charged first: that is what the order's charge announced.
        PaymentStatus::Charged | PaymentStatus::Refunded => {
            Event::PaymentProcessed(PaymentProcessed {
                order_id: record.order_id.clone(),
                payment_id: record.payment_id.clone(),
                amount: record.amount,
                currency: record.currency.clone(),
            })
        }
        PaymentStatus::Declined => Event::PaymentFailed(PaymentFailed {
            order_id: record.order_id.clone(),
            payment_id: record.payment_id.clone(),
            amount: record.amount,
            currency: record.currency.clone(),
            reason: record
                .decline_reason
                .clone()
                .ok_or_else(|| corrupt("declined without a reason"))?,
        }),
        PaymentStatus::Cancelled => return Err(corrupt("a tombstone has no outcome")),
    };
    // The record's time, which the first publish used too; an unreadable one (never
    // written by this code) only costs the event its stable time, not its stable id.
    let occurred_at = DateTime::parse_from_rfc3339(&record.processed_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let mut event = Envelope::caused_by(&record.stored_cause(), &record.payment_id, data);
    event.metadata.occurred_at = occurred_at;
    Ok(event)
}

#[cfg(test)]
mod tests {
    //! The handler through in-memory adapters of its ports: the payments table with the
    //! DynamoDB adapter's conditions, a catalogue, and a bus that fails on demand.
    use super::*;
    use crate::catalogue::MemoryCatalogue;
    use crate::repository::MemoryPaymentRepository;
    use contracts::{sources, FraudSuspected, OrderLine};
    use eventkit::envelope::derived_event_id;
    use eventkit::testing::{invocation, MemoryBus};

    struct World {
        payments: Arc<MemoryPaymentRepository>,
        catalogue: Arc<MemoryCatalogue>,
        bus: Arc<MemoryBus<Event>>,
        service: PaymentService,
    }

    /// The catalogue sells the test orders' mug at their price.
    fn world() -> World {
        world_with(PaymentPolicy::default())
    }

    fn world_with(policy: PaymentPolicy) -> World {
        let payments = Arc::new(MemoryPaymentRepository::default());
        let catalogue = Arc::new(MemoryCatalogue::default());
        catalogue.list("MUG", 1250, "EUR");
        let bus = MemoryBus::new();
        let service = PaymentService::new(payments.clone(), catalogue.clone(), bus.clone(), policy);
        World {
            payments,
            catalogue,
            bus,
            service,
        }
    }

    impl World {
        /// The same tables, catalogue and bus behind a service with another policy: a
        /// redeploy with a changed `MAX_CHARGE_MINOR`.
        fn redeployed_with(self, policy: PaymentPolicy) -> World {
            let service = PaymentService::new(
                self.payments.clone(),
                self.catalogue.clone(),
                self.bus.clone(),
                policy,
            );
            World { service, ..self }
        }

        async fn deliver(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
            self.service.handle(event.clone(), invocation()).await
        }

        fn payment(&self, order_id: &str) -> PaymentRecord {
            self.payments.table.get(order_id).expect("a payment")
        }
    }

    fn eur() -> Currency {
        Currency::try_from("EUR".to_string()).unwrap()
    }

    fn order_placed(order_id: &str, token: &str) -> Envelope<Event> {
        Envelope::new(Event::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            customer_id: "cus-1".into(),
            customer_email: "ada@example.com".into(),
            currency: eur(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 2,
                unit_price: 1250,
            }],
            total: 2500,
            payment_token: token.into(),
            shipping_address: None,
        }))
    }

    fn order_cancelled(order_id: &str) -> Envelope<Event> {
        Envelope::new(Event::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            customer_id: "cus-1".into(),
            customer_email: "ada@example.com".into(),
            reason: "fraud-suspected".into(),
        }))
    }

    /// `event` with its order's payment token changed: other content, same metadata.
    fn with_token(event: &Envelope<Event>, token: &str) -> Envelope<Event> {
        let mut changed = event.clone();
        if let Event::OrderPlaced(order) = &mut changed.data {
            order.payment_token = token.into();
        }
        changed
    }

    fn refund_requested(order_id: &str) -> Envelope<Event> {
        Envelope::new(Event::RefundPaymentRequested(RefundPaymentRequested {
            order_id: order_id.into(),
            reason: "out-of-stock".into(),
        }))
    }

    /// The id of the event `cause` leads to.
    fn effect_id(cause: &Envelope<Event>, detail_type: &str, discriminator: &str) -> String {
        derived_event_id(&cause.metadata.event_id, detail_type, discriminator)
    }

    /// The record a charge of `order_placed(order_id, _)` stores.
    fn stored(order: &Envelope<Event>, status: PaymentStatus) -> PaymentRecord {
        PaymentRecord {
            order_id: "ord-1".into(),
            payment_id: payment_id_for("ord-1"),
            status,
            amount: 2500,
            currency: eur(),
            decline_reason: None,
            event_id: order.metadata.event_id.clone(),
            order_digest: Some(order.content_digest()),
            correlation_id: order.metadata.correlation_id.clone(),
            processed_at: String::new(),
            refunded_at: None,
            refund_event_id: None,
            refund_reason: None,
            cancel_reason: None,
        }
    }

    #[tokio::test]
    async fn an_approved_charge_is_recorded_and_payment_processed_is_published() {
        let w = world();
        let order = order_placed("ord-1", "tok_visa");

        let handled = w.deliver(&order).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        let payment_id = payment_id_for("ord-1");
        assert_eq!(
            w.bus.events(),
            vec![Event::PaymentProcessed(PaymentProcessed {
                order_id: "ord-1".into(),
                payment_id: payment_id.clone(),
                amount: 2500,
                currency: eur(),
            })]
        );
        let published = &w.bus.published()[0];
        assert_eq!(published.source, sources::PAYMENT);
        assert_eq!(
            published.metadata.event_id,
            effect_id(&order, "PaymentProcessed", &payment_id)
        );
        assert_eq!(
            published.metadata.causation_id.as_deref(),
            Some(order.metadata.event_id.as_str())
        );
        assert_eq!(
            published.metadata.correlation_id,
            order.metadata.correlation_id
        );
        let payment = w.payment("ord-1");
        assert_eq!(
            payment,
            PaymentRecord {
                processed_at: payment.processed_at.clone(),
                ..stored(&order, PaymentStatus::Charged)
            }
        );
    }

    #[tokio::test]
    async fn a_declined_card_is_recorded_and_payment_failed_is_published() {
        let w = world();
        let order = order_placed("ord-1", "tok_decline");

        let handled = w.deliver(&order).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        let payment_id = payment_id_for("ord-1");
        assert_eq!(
            w.bus.events(),
            vec![Event::PaymentFailed(PaymentFailed {
                order_id: "ord-1".into(),
                payment_id: payment_id.clone(),
                amount: 2500,
                currency: eur(),
                reason: "card-declined".into(),
            })]
        );
        assert_eq!(
            w.bus.published()[0].metadata.event_id,
            effect_id(&order, "PaymentFailed", &payment_id)
        );
        let payment = w.payment("ord-1");
        assert_eq!(
            payment,
            PaymentRecord {
                decline_reason: Some("card-declined".into()),
                processed_at: payment.processed_at.clone(),
                ..stored(&order, PaymentStatus::Declined)
            }
        );
    }

    #[tokio::test]
    async fn the_same_order_placed_delivered_twice_charges_once_and_publishes_the_same_event() {
        let w = world();
        let order = order_placed("ord-1", "tok_visa");
        w.deliver(&order).await.unwrap();
        let first = w.payment("ord-1");

        let again = w.deliver(&order).await.unwrap();

        assert_eq!(again, Handled::Duplicate);
        assert_eq!(w.payment("ord-1"), first);
        // Published again with the same id: one event downstream.
        let published = w.bus.published();
        assert_eq!(published.len(), 2);
        assert_eq!(
            published[0].metadata.event_id,
            published[1].metadata.event_id
        );
        assert_eq!(published[0].data, published[1].data);
    }

    #[tokio::test]
    async fn a_second_order_placed_with_the_same_content_does_not_charge_again() {
        let w = world();
        let first = order_placed("ord-1", "tok_visa");
        w.deliver(&first).await.unwrap();
        let charged = w.payment("ord-1");

        // Another event id, the same order: the digest is the same.
        let second = w.deliver(&order_placed("ord-1", "tok_visa")).await.unwrap();

        assert_eq!(second, Handled::Duplicate);
        assert_eq!(w.payment("ord-1"), charged);
        // What is published again is the first event's outcome, the very same event.
        let published = w.bus.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[1], published[0]);
        assert_eq!(
            published[1].metadata.event_id,
            effect_id(&first, "PaymentProcessed", &payment_id_for("ord-1"))
        );
    }

    #[tokio::test]
    async fn a_charge_whose_publish_failed_is_published_on_redelivery_with_the_same_id() {
        let w = world();
        let order = order_placed("ord-1", "tok_visa");
        w.bus.fail_next(1);

        let err = w.deliver(&order).await.unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert_eq!(err.reason, "publish-failed");
        assert!(w.bus.events().is_empty());
        assert_eq!(w.payment("ord-1").status, PaymentStatus::Charged);

        let redelivered = w.deliver(&order).await.unwrap();

        assert_eq!(redelivered, Handled::Duplicate);
        let published = w.bus.published();
        assert_eq!(published.len(), 1);
        assert_eq!(
            published[0].metadata.event_id,
            effect_id(&order, "PaymentProcessed", &payment_id_for("ord-1"))
        );
    }

    #[tokio::test]
    async fn a_charged_payment_is_refunded_and_payment_refunded_is_published() {
        let w = world();
        w.deliver(&order_placed("ord-1", "tok_visa")).await.unwrap();
        w.bus.clear();
        let request = refund_requested("ord-1");

        let handled = w.deliver(&request).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        let payment_id = payment_id_for("ord-1");
        assert_eq!(
            w.bus.events(),
            vec![Event::PaymentRefunded(PaymentRefunded {
                order_id: "ord-1".into(),
                payment_id: payment_id.clone(),
                amount: 2500,
                currency: eur(),
            })]
        );
        let published = &w.bus.published()[0];
        assert_eq!(
            published.metadata.event_id,
            effect_id(&request, "PaymentRefunded", &payment_id)
        );
        assert_eq!(
            published.metadata.causation_id.as_deref(),
            Some(request.metadata.event_id.as_str())
        );
        let payment = w.payment("ord-1");
        assert_eq!(payment.status, PaymentStatus::Refunded);
        assert_eq!(
            payment.refund_event_id.as_deref(),
            Some(request.metadata.event_id.as_str())
        );
        assert_eq!(payment.refund_reason.as_deref(), Some("out-of-stock"));
        assert!(payment.refunded_at.is_some());
    }

    #[tokio::test]
    async fn a_refund_request_delivered_twice_refunds_once() {
        let w = world();
        w.deliver(&order_placed("ord-1", "tok_visa")).await.unwrap();
        w.bus.clear();
        let request = refund_requested("ord-1");
        w.deliver(&request).await.unwrap();

        let again = w.deliver(&request).await.unwrap();

        // Refunded once; the redelivery publishes the same PaymentRefunded again.
        assert_eq!(again, Handled::Duplicate);
        let published = w.bus.published();
        assert_eq!(published.len(), 2);
        assert_eq!(
            published[0].metadata.event_id,
            published[1].metadata.event_id
        );
        assert_eq!(w.payment("ord-1").status, PaymentStatus::Refunded);
    }

    #[tokio::test]
    async fn a_refund_redelivered_after_a_bus_failure_publishes_the_same_event_once() {
        let w = world();
        w.deliver(&order_placed("ord-1", "tok_visa")).await.unwrap();
        w.bus.clear();
        let request = refund_requested("ord-1");
        w.bus.fail_next(1);

        // The refund is stored, then the publish fails: SQS will deliver the request again.
        let err = w.deliver(&request).await.unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert!(w.bus.events().is_empty());
        assert_eq!(w.payment("ord-1").status, PaymentStatus::Refunded);

        let redelivered = w.deliver(&request).await.unwrap();

        // Refunded already (not again); what the redelivery adds is the missing publish.
        assert_eq!(redelivered, Handled::Duplicate);
        let published = w.bus.published();
        assert_eq!(published.len(), 1);
        assert_eq!(
            published[0].metadata.event_id,
            effect_id(&request, "PaymentRefunded", &payment_id_for("ord-1"))
        );
        // Another request for the same order finds nothing left to refund.
        let another = w.deliver(&refund_requested("ord-1")).await.unwrap();
        assert_eq!(another, Handled::Duplicate);
        assert_eq!(w.bus.published().len(), 1);
        assert_eq!(
            w.payment("ord-1").refund_event_id.as_deref(),
            Some(request.metadata.event_id.as_str())
        );
    }

    #[tokio::test]
    async fn a_refund_when_there_is_no_payment_refunds_nothing() {
        let w = world();

        let handled = w.deliver(&refund_requested("ord-none")).await.unwrap();

        assert_eq!(handled, Handled::Ignored);
        assert!(w.bus.events().is_empty());
        assert!(w.payments.table.items().is_empty());
    }

    #[tokio::test]
    async fn a_refund_of_a_declined_payment_refunds_nothing() {
        let w = world();
        w.deliver(&order_placed("ord-1", "tok_decline"))
            .await
            .unwrap();
        w.bus.clear();
        let declined = w.payment("ord-1");

        let handled = w.deliver(&refund_requested("ord-1")).await.unwrap();

        assert_eq!(handled, Handled::Ignored);
        assert!(w.bus.events().is_empty());
        assert_eq!(w.payment("ord-1"), declined);
    }

    #[tokio::test]
    async fn a_redelivered_decline_is_published_as_stored_after_the_limit_was_raised() {
        // Given a decline under a low limit...
        let w = world_with(PaymentPolicy {
            max_charge_minor: 2000,
        });
        let order = order_placed("ord-1", "tok_visa");
        w.deliver(&order).await.unwrap();
        let declined = w.payment("ord-1");
        assert_eq!(declined.decline_reason.as_deref(), Some("limit-exceeded"));
        // ...and a redeploy that would approve the same total.
        let w = w.redeployed_with(PaymentPolicy::default());

        let again = w.deliver(&order).await.unwrap();

        // The stored decline is announced again, the whole event unchanged.
        assert_eq!(again, Handled::Duplicate);
        assert_eq!(w.payment("ord-1"), declined);
        let published = w.bus.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[1], published[0]);
        assert_eq!(
            published[1].data,
            Event::PaymentFailed(PaymentFailed {
                order_id: "ord-1".into(),
                payment_id: payment_id_for("ord-1"),
                amount: 2500,
                currency: eur(),
                reason: "limit-exceeded".into(),
            })
        );
        assert_eq!(
            published[1].metadata.event_id,
            effect_id(&order, "PaymentFailed", &payment_id_for("ord-1"))
        );
    }

    #[tokio::test]
    async fn a_different_order_placed_for_a_charged_order_is_refused_as_a_conflicting_duplicate() {
        let w = world();
        let first = order_placed("ord-1", "tok_visa");
        w.deliver(&first).await.unwrap();
        let charged = w.payment("ord-1");
        let other = order_placed("ord-1", "tok_mastercard");

        let err = w.deliver(&other).await.unwrap_err();

        assert!(err.is_permanent(), "{err}");
        assert_eq!(err.reason, "conflicting-duplicate");
        for named in ["ord-1", &first.metadata.event_id, &other.metadata.event_id] {
            assert!(err.message.contains(named), "{named} in {}", err.message);
        }
        assert_eq!(w.payment("ord-1"), charged);
        assert_eq!(w.bus.published().len(), 1);
    }

    #[tokio::test]
    async fn the_same_event_id_with_other_content_is_a_conflicting_duplicate() {
        let w = world();
        let first = order_placed("ord-1", "tok_visa");
        w.deliver(&first).await.unwrap();
        let charged = w.payment("ord-1");
        let forged = with_token(&first, "tok_decline");
        assert_eq!(forged.metadata.event_id, first.metadata.event_id);

        let err = w.deliver(&forged).await.unwrap_err();

        assert!(err.is_permanent(), "{err}");
        assert_eq!(err.reason, "conflicting-duplicate");
        assert_eq!(w.payment("ord-1"), charged);
        assert_eq!(w.bus.published().len(), 1);
    }

    #[tokio::test]
    async fn a_payment_stored_before_digests_takes_any_order_placed_for_the_same_order() {
        let w = world();
        let first = order_placed("ord-1", "tok_visa");
        let legacy = PaymentRecord {
            order_digest: None,
            processed_at: "2026-11-21T10:00:00.000Z".into(),
            ..stored(&first, PaymentStatus::Charged)
        };
        w.payments.table.put("ord-1", legacy.clone());

        let handled = w
            .deliver(&order_placed("ord-1", "tok_mastercard"))
            .await
            .unwrap();

        assert_eq!(handled, Handled::Duplicate);
        assert_eq!(w.payment("ord-1"), legacy);
        let published = w.bus.published();
        assert_eq!(published.len(), 1);
        assert_eq!(
            published[0].metadata.event_id,
            effect_id(&first, "PaymentProcessed", &payment_id_for("ord-1"))
        );
    }

    #[tokio::test]
    async fn an_order_cancelled_before_it_was_placed_is_never_charged() {
        let w = world();
        let cancel = order_cancelled("ord-1");

        let handled = w.deliver(&cancel).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        let tombstone = w.payment("ord-1");
        assert_eq!(tombstone.status, PaymentStatus::Cancelled);
        assert_eq!(tombstone.event_id, cancel.metadata.event_id);
        assert_eq!(tombstone.cancel_reason.as_deref(), Some("fraud-suspected"));

        // A late OrderPlaced, then the same one redriven from the DLQ.
        let order = order_placed("ord-1", "tok_visa");
        assert_eq!(w.deliver(&order).await.unwrap(), Handled::Ignored);
        assert_eq!(w.deliver(&order).await.unwrap(), Handled::Ignored);

        assert_eq!(w.payment("ord-1"), tombstone);
        assert!(w.bus.published().is_empty());
    }

    #[tokio::test]
    async fn a_cancellation_after_the_charge_changes_nothing() {
        let w = world();
        w.deliver(&order_placed("ord-1", "tok_visa")).await.unwrap();
        let charged = w.payment("ord-1");
        w.bus.clear();

        let handled = w.deliver(&order_cancelled("ord-1")).await.unwrap();

        // The saga's RefundPaymentRequested is what gives the money back.
        assert_eq!(handled, Handled::Ignored);
        assert_eq!(w.payment("ord-1"), charged);
        assert!(w.bus.published().is_empty());
    }

    #[tokio::test]
    async fn charges_and_cancellations_in_any_order_end_as_the_first_of_them_decided() {
        let (p, c) = ("placed", "cancelled");
        let runs: [&[&str]; 6] = [
            &[c, p],
            &[p, c],
            &[c, c, p, p],
            &[p, p, c, c],
            &[c, p, c, p],
            &[p, c, p, c],
        ];
        for run in runs {
            let w = world();
            let order = order_placed("ord-1", "tok_visa");
            let cancel = order_cancelled("ord-1");
            for step in run {
                let event = if *step == p { &order } else { &cancel };
                w.deliver(event).await.unwrap();
            }
            let payment = w.payment("ord-1");
            let published = w.bus.published();
            if run[0] == c {
                assert_eq!(payment.status, PaymentStatus::Cancelled, "{run:?}");
                assert!(published.is_empty(), "{run:?}");
            } else {
                assert_eq!(payment.status, PaymentStatus::Charged, "{run:?}");
                // Charged once; every publish is the same event.
                assert!(!published.is_empty(), "{run:?}");
                assert!(published.iter().all(|e| *e == published[0]), "{run:?}");
                assert!(
                    matches!(published[0].data, Event::PaymentProcessed(_)),
                    "{run:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_cancellation_delivered_twice_is_a_duplicate() {
        let w = world();
        let cancel = order_cancelled("ord-1");
        w.deliver(&cancel).await.unwrap();
        let tombstone = w.payment("ord-1");

        assert_eq!(w.deliver(&cancel).await.unwrap(), Handled::Duplicate);
        assert_eq!(
            w.deliver(&order_cancelled("ord-1")).await.unwrap(),
            Handled::Duplicate
        );
        assert_eq!(w.payment("ord-1"), tombstone);
    }

    #[tokio::test]
    async fn a_refund_request_for_a_cancelled_uncharged_order_refunds_nothing() {
        let w = world();
        w.deliver(&order_cancelled("ord-1")).await.unwrap();
        let tombstone = w.payment("ord-1");

        let handled = w.deliver(&refund_requested("ord-1")).await.unwrap();

        assert_eq!(handled, Handled::Ignored);
        assert_eq!(w.payment("ord-1"), tombstone);
        assert!(w.bus.published().is_empty());
    }

    #[tokio::test]
    async fn an_order_not_at_the_catalogue_price_fails_with_price_mismatch() {
        let cases = [
            ("a lower price than the catalogue's", ("MUG", 1500, "EUR")),
            (
                "the catalogue's number in another currency",
                ("MUG", 1250, "USD"),
            ),
            ("a SKU not for sale", ("TEA", 1250, "EUR")),
        ];
        for (case, (sku, price, currency)) in cases {
            let payments = Arc::new(MemoryPaymentRepository::default());
            let catalogue = Arc::new(MemoryCatalogue::default());
            catalogue.list(sku, price, currency);
            let bus = MemoryBus::new();
            let w = World {
                service: PaymentService::new(
                    payments.clone(),
                    catalogue.clone(),
                    bus.clone(),
                    PaymentPolicy::default(),
                ),
                payments,
                catalogue,
                bus,
            };
            let order = order_placed("ord-1", "tok_visa");

            let handled = w.deliver(&order).await.unwrap();

            assert_eq!(handled, Handled::Processed, "{case}");
            assert_eq!(
                w.bus.events(),
                vec![Event::PaymentFailed(PaymentFailed {
                    order_id: "ord-1".into(),
                    payment_id: payment_id_for("ord-1"),
                    amount: 2500,
                    currency: eur(),
                    reason: "price-mismatch".into(),
                })],
                "{case}"
            );
            // Stored like a decline: nothing charged, and a redelivery answers the same.
            let payment = w.payment("ord-1");
            assert_eq!(
                payment,
                PaymentRecord {
                    decline_reason: Some("price-mismatch".into()),
                    processed_at: payment.processed_at.clone(),
                    ..stored(&order, PaymentStatus::Declined)
                },
                "{case}"
            );
        }
    }

    #[tokio::test]
    async fn a_correctly_priced_order_stays_charged_when_the_catalogue_changes_later() {
        let w = world();
        let order = order_placed("ord-1", "tok_visa");
        w.deliver(&order).await.unwrap();
        w.catalogue.list("MUG", 9999, "EUR");

        assert_eq!(w.deliver(&order).await.unwrap(), Handled::Duplicate);

        assert_eq!(w.payment("ord-1").status, PaymentStatus::Charged);
        let published = w.bus.published();
        assert_eq!(published[1], published[0]);
        assert!(matches!(published[1].data, Event::PaymentProcessed(_)));
    }

    #[tokio::test]
    async fn an_event_not_routed_here_fails_for_good() {
        let w = world();
        let event = Envelope::new(Event::FraudSuspected(FraudSuspected {
            order_id: "ord-1".into(),
            reason: "velocity".into(),
            score: 90,
            pattern: None,
        }));

        let err = w.deliver(&event).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "not-routed");
        assert!(w.bus.events().is_empty());
    }

    #[test]
    fn what_the_handler_never_sees_is_refused_at_intake() {
        let take_in = |raw: &contracts::RawEvent| {
            eventkit::take_in::<Event>(crate::ROUTES, raw)
                .unwrap_err()
                .reason()
        };
        let mut order = order_placed("ord-1", "tok_visa").to_raw();
        order.data["total"] = 1.into();
        assert_eq!(
            take_in(&order),
            "invalid-data",
            "a total that does not add up"
        );
        let mut refund = refund_requested("ord-1").to_raw();
        refund.data["orderId"] = " ".into();
        assert_eq!(take_in(&refund), "invalid-data", "a blank order id");
        let mut forged = refund_requested("ord-1").to_raw();
        forged.source = sources::ORDERS.into();
        assert_eq!(take_in(&forged), "untrusted-source");
        let mut forged_cancel = order_cancelled("ord-1").to_raw();
        forged_cancel.source = sources::ORDERS.into();
        assert_eq!(take_in(&forged_cancel), "untrusted-source");
        assert!(
            eventkit::take_in::<Event>(crate::ROUTES, &order_cancelled("ord-1").to_raw()).is_ok()
        );
    }
}
