//! Handles one event for the payment function.
//!
//! Why a charge or a refund happens once under at-least-once delivery: the payments table
//! decides it, for a redelivered event as for a different event about the same order. The
//! first writer wins per order (a conditional put), and only `CHARGED -> REFUNDED` happens,
//! by a conditional update. The outcome's id is derived from its cause, so a redelivery that
//! finds its own record publishes the same event again: after a failed publish that is the
//! recovery, after a successful one downstream consumers drop it as a duplicate.
//!
//! There is no separate idempotency record (eventkit's `Idempotency`): the effect is already
//! one conditional write keyed by the order, so that write is the record. A record per event
//! would cost two more DynamoDB writes per event and would guard nothing the table does not.

use std::sync::Arc;

use contracts::{
    Event, OrderPlaced, PaymentFailed, PaymentProcessed, PaymentRefunded, RefundPaymentRequested,
};
use eventkit::envelope::format_time;
use eventkit::{
    DecodeError, Envelope, EventMetadata, FirstWrite, Handled, HandlerError, Invocation, Publish,
    Publisher,
};

use crate::decision::{
    decide, plan_refund, NoRefund, PaymentDecision, PaymentPolicy, PaymentStatus, RefundPlan,
};
use crate::repository::{
    DynamoPaymentRepository, PaymentRecord, PaymentRepository, Refund, RefundRequest,
};

pub struct PaymentService {
    payments: Arc<dyn PaymentRepository>,
    bus: Arc<dyn Publish<Event>>,
    policy: PaymentPolicy,
}

impl PaymentService {
    /// Reads `PAYMENTS_TABLE`, `EVENT_BUS_NAME` and optionally
    /// `MAX_CHARGE_MINOR` (default 100000).
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
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            )),
            policy,
        ))
    }

    pub fn new(
        payments: Arc<dyn PaymentRepository>,
        bus: Arc<dyn Publish<Event>>,
        policy: PaymentPolicy,
    ) -> Self {
        PaymentService {
            payments,
            bus,
            policy,
        }
    }

    /// Handles one event: `OrderPlaced` charges, `RefundPaymentRequested` refunds. Anything
    /// else is misrouted and fails permanently.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let Envelope { metadata, data, .. } = event;
        match data {
            Event::OrderPlaced(order) => self.charge(&metadata, &order).await,
            Event::RefundPaymentRequested(request) => self.refund(&metadata, &request).await,
            other => Err(DecodeError::not_routed(&other).into()),
        }
    }

    async fn charge(
        &self,
        cause: &EventMetadata,
        order: &OrderPlaced,
    ) -> Result<Handled, HandlerError> {
        let decision = decide(order, &self.policy);
        let record = record_of(cause, order, &decision);
        let handled = match self.payments.record_once(&record).await? {
            FirstWrite::Written => Handled::Processed,
            // The same event again (after a failed publish, or a plain redelivery): nothing
            // is charged; the stored outcome is published again, with the same id.
            FirstWrite::Existing(existing) if existing.event_id == cause.event_id => {
                Handled::Duplicate
            }
            FirstWrite::Existing(existing) => {
                tracing::warn!(order_id = %existing.order_id, payment_id = %existing.payment_id,
                    "order already has a payment from another event; not charging again");
                return Ok(Handled::Duplicate);
            }
        };
        self.bus
            .publish(&[outcome_event(cause, order, &decision)])
            .await?;
        tracing::info!(order_id = %order.order_id, payment_id = decision.payment_id(),
            status = %record.status, amount = record.amount, ?handled, "payment recorded");
        Ok(handled)
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

fn nothing_to_refund(order_id: &str, why: NoRefund) -> Handled {
    tracing::info!(order_id, ?why, "nothing to refund");
    match why {
        NoRefund::RefundedByAnother => Handled::Duplicate,
        NoRefund::NoPayment | NoRefund::Declined => Handled::Ignored,
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
        correlation_id: cause.correlation_id.clone(),
        processed_at: format_time(&chrono::Utc::now()),
        refunded_at: None,
        refund_event_id: None,
        refund_reason: None,
    }
}

/// `PaymentProcessed` or `PaymentFailed`, with the payment id as discriminator: the same
/// order charged again yields the same event id.
fn outcome_event(
    cause: &EventMetadata,
    order: &OrderPlaced,
    decision: &PaymentDecision,
) -> Envelope<Event> {
    let order_id = order.order_id.clone();
    let event = match decision.clone() {
        PaymentDecision::Approved {
            payment_id,
            amount,
            currency,
        } => Event::PaymentProcessed(PaymentProcessed {
            order_id,
            payment_id,
            amount,
            currency,
        }),
        PaymentDecision::Declined {
            payment_id,
            amount,
            currency,
            reason,
        } => Event::PaymentFailed(PaymentFailed {
            order_id,
            payment_id,
            amount,
            currency,
            reason: reason.code().into(),
        }),
    };
    Envelope::caused_by(cause, decision.payment_id(), event)
}

#[cfg(test)]
mod tests {
    //! The handler through in-memory adapters of its ports: the payments table with the
    //! DynamoDB adapter's conditions and a bus that fails on demand.
    use super::*;
    use crate::decision::payment_id_for;
    use crate::repository::MemoryPaymentRepository;
    use contracts::{sources, Currency, FraudSuspected, OrderLine};
    use eventkit::envelope::derived_event_id;
    use eventkit::testing::{invocation, MemoryBus};

    struct World {
        payments: Arc<MemoryPaymentRepository>,
        bus: Arc<MemoryBus<Event>>,
        service: PaymentService,
    }

    fn world() -> World {
        let payments = Arc::new(MemoryPaymentRepository::default());
        let bus = MemoryBus::new();
        let service = PaymentService::new(payments.clone(), bus.clone(), PaymentPolicy::default());
        World {
            payments,
            bus,
            service,
        }
    }

    impl World {
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
            correlation_id: order.metadata.correlation_id.clone(),
            processed_at: String::new(),
            refunded_at: None,
            refund_event_id: None,
            refund_reason: None,
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
    async fn a_second_order_placed_for_the_same_order_does_not_charge_again() {
        let w = world();
        let first = order_placed("ord-1", "tok_visa");
        w.deliver(&first).await.unwrap();

        let second = w.deliver(&order_placed("ord-1", "tok_visa")).await.unwrap();

        assert_eq!(second, Handled::Duplicate);
        assert_eq!(w.bus.published().len(), 1);
        assert_eq!(w.payment("ord-1").event_id, first.metadata.event_id);
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
    }
}
