//! Handles one event for the payment function.

use contracts::{
    sources, Currency, OrderPlaced, PaymentFailed, PaymentProcessed, PaymentRefunded,
    RefundPaymentRequested,
};
use eventkit::envelope::format_time;
use eventkit::publisher::PutEventsTransport;
use eventkit::{
    DecodeError, Envelope, EventData, EventMetadata, Handled, HandlerError, Idempotency,
    Invocation, Publisher, RawEvent,
};

use crate::decision::{
    decide, plan_refund, NoRefund, PaymentDecision, PaymentPolicy, RefundPlan, CHARGED, DECLINED,
};
use crate::repository::{
    DynamoPaymentRepository, PaymentRecord, PaymentRepository, Recorded, Refund, RefundRequest,
};

pub struct PaymentService<R = DynamoPaymentRepository, T = aws_sdk_eventbridge::Client> {
    repository: R,
    publisher: Publisher<T>,
    idempotency: Idempotency,
    policy: PaymentPolicy,
}

impl PaymentService {
    /// Reads `PAYMENTS_TABLE`, `IDEMPOTENCY_TABLE`, `EVENT_BUS_NAME` and optionally
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
            DynamoPaymentRepository::new(dynamo.clone(), required_env("PAYMENTS_TABLE")?),
            Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            ),
            Idempotency::new(dynamo, required_env("IDEMPOTENCY_TABLE")?, "payment"),
            policy,
        ))
    }
}

impl<R: PaymentRepository, T: PutEventsTransport> PaymentService<R, T> {
    pub fn new(
        repository: R,
        publisher: Publisher<T>,
        idempotency: Idempotency,
        policy: PaymentPolicy,
    ) -> Self {
        PaymentService {
            repository,
            publisher,
            idempotency,
            policy,
        }
    }

    /// Handles one event: `OrderPlaced` charges, `RefundPaymentRequested` refunds. Anything
    /// else is misrouted and fails permanently.
    pub async fn handle(
        &self,
        event: RawEvent,
        invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        match event.detail_type.as_str() {
            OrderPlaced::DETAIL_TYPE => {
                let order = event.decode::<OrderPlaced>()?;
                self.idempotency
                    .handle_once(&order.metadata, &order.data, &invocation, || {
                        self.charge(&order)
                    })
                    .await
            }
            RefundPaymentRequested::DETAIL_TYPE => {
                let request = event.decode::<RefundPaymentRequested>()?;
                self.idempotency
                    .handle_once(&request.metadata, &request.data, &invocation, || {
                        self.refund(&request)
                    })
                    .await
            }
            other => Err(DecodeError::UnknownType(other.to_string()).into()),
        }
    }

    async fn charge(&self, order: &Envelope<OrderPlaced>) -> Result<Handled, HandlerError> {
        let decision = decide(&order.data, &self.policy)
            .map_err(|e| HandlerError::permanent("invalid-order", e))?;
        let record = record_of(order, &decision);
        match self.repository.record_once(&record).await? {
            Recorded::Created => {}
            // The same event again after a failed publish: publish the stored outcome.
            Recorded::Existing(existing) if existing.event_id == order.metadata.event_id => {}
            Recorded::Existing(existing) => {
                tracing::warn!(order_id = %existing.order_id, payment_id = %existing.payment_id,
                    "order already has a payment from another event; not charging again");
                return Ok(Handled::Duplicate);
            }
        }
        self.publisher
            .publish(&[outcome_event(order, &decision)])
            .await?;
        tracing::info!(order_id = %order.data.order_id, payment_id = decision.payment_id(),
            status = %record.status, amount = record.amount, "payment recorded");
        Ok(Handled::Processed)
    }

    /// Refunds the order's charge in full, once, and publishes `PaymentRefunded`.
    ///
    /// The conditional update (`CHARGED -> REFUNDED`) is what makes it once: it holds past
    /// the idempotency record's expiry and across different requests for the same order.
    async fn refund(
        &self,
        request: &Envelope<RefundPaymentRequested>,
    ) -> Result<Handled, HandlerError> {
        let order_id = request.data.order_id.as_str();
        if order_id.trim().is_empty() {
            return Err(HandlerError::permanent(
                "invalid-request",
                "orderId must not be empty",
            ));
        }
        let refund = RefundRequest {
            event_id: request.metadata.event_id.clone(),
            reason: request.data.reason.clone(),
            at: format_time(&chrono::Utc::now()),
        };
        // Write first: a charged payment, the usual case, needs no read.
        let refunded = match self.repository.refund_once(order_id, &refund).await? {
            Refund::Refunded(record) => *record,
            Refund::NotCharged => {
                let Some(current) = self.repository.payment(order_id).await? else {
                    return Ok(nothing_to_refund(order_id, NoRefund::NoPayment));
                };
                match plan_refund(
                    &current.status,
                    current.refund_event_id.as_deref(),
                    &request.metadata.event_id,
                ) {
                    RefundPlan::Republish => current,
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
        self.publisher
            .publish(&[refunded_event(&request.metadata, &refunded)?])
            .await?;
        tracing::info!(order_id, payment_id = %refunded.payment_id, amount = refunded.amount,
            reason = %request.data.reason, "payment refunded");
        Ok(Handled::Processed)
    }
}

fn nothing_to_refund(order_id: &str, why: NoRefund) -> Handled {
    tracing::info!(order_id, ?why, "nothing to refund");
    match why {
        NoRefund::RefundedByAnother => Handled::Duplicate,
        NoRefund::NoPayment | NoRefund::Declined | NoRefund::UnknownStatus => Handled::Ignored,
    }
}

/// `PaymentRefunded` for a refunded record; its id is derived from the request, so
/// publishing it again after a crash is the same event.
fn refunded_event(cause: &EventMetadata, record: &PaymentRecord) -> Result<RawEvent, HandlerError> {
    let currency = Currency::try_from(record.currency.clone()).map_err(|e| {
        HandlerError::permanent(
            "corrupt-payment",
            format!("payment of order {}: currency: {e}", record.order_id),
        )
    })?;
    Ok(Envelope::caused_by(
        cause,
        sources::PAYMENT,
        &record.payment_id,
        PaymentRefunded {
            order_id: record.order_id.clone(),
            payment_id: record.payment_id.clone(),
            amount: record.amount,
            currency,
        },
    )
    .to_raw())
}

fn record_of(order: &Envelope<OrderPlaced>, decision: &PaymentDecision) -> PaymentRecord {
    let (status, reason) = match decision {
        PaymentDecision::Approved { .. } => (CHARGED, None),
        PaymentDecision::Declined { reason, .. } => (DECLINED, Some(reason.code().to_string())),
    };
    PaymentRecord {
        order_id: order.data.order_id.clone(),
        payment_id: decision.payment_id().to_string(),
        status: status.into(),
        amount: order.data.total,
        currency: order.data.currency.to_string(),
        decline_reason: reason,
        event_id: order.metadata.event_id.clone(),
        correlation_id: order.metadata.correlation_id.clone(),
        processed_at: format_time(&chrono::Utc::now()),
        refunded_at: None,
        refund_event_id: None,
        refund_reason: None,
    }
}

fn outcome_event(order: &Envelope<OrderPlaced>, decision: &PaymentDecision) -> RawEvent {
    let cause = &order.metadata;
    match decision.clone() {
        PaymentDecision::Approved {
            payment_id,
            amount,
            currency,
        } => Envelope::caused_by(
            cause,
            sources::PAYMENT,
            &payment_id,
            PaymentProcessed {
                order_id: order.data.order_id.clone(),
                payment_id: payment_id.clone(),
                amount,
                currency,
            },
        )
        .to_raw(),
        PaymentDecision::Declined {
            payment_id,
            amount,
            currency,
            reason,
        } => Envelope::caused_by(
            cause,
            sources::PAYMENT,
            &payment_id,
            PaymentFailed {
                order_id: order.data.order_id.clone(),
                payment_id: payment_id.clone(),
                amount,
                currency,
                reason: reason.code().into(),
            },
        )
        .to_raw(),
    }
}

#[cfg(test)]
mod tests {
    //! Refunds against an in-memory payments table with DynamoDB's conditional semantics and
    //! a bus that can fail on demand. (The idempotency layer needs DynamoDB; the e2e tests
    //! cover it.)
    use super::*;
    use crate::decision::REFUNDED;
    use crate::repository::RepositoryError;
    use async_trait::async_trait;
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    use eventkit::publisher::{EntryResult, RetryPolicy};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct MemoryPayments(Arc<Mutex<HashMap<String, PaymentRecord>>>);

    #[async_trait]
    impl PaymentRepository for MemoryPayments {
        async fn record_once(&self, record: &PaymentRecord) -> Result<Recorded, RepositoryError> {
            let mut t = self.0.lock().unwrap();
            match t.get(&record.order_id) {
                Some(existing) => Ok(Recorded::Existing(Box::new(existing.clone()))),
                None => {
                    t.insert(record.order_id.clone(), record.clone());
                    Ok(Recorded::Created)
                }
            }
        }

        async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, RepositoryError> {
            Ok(self.0.lock().unwrap().get(order_id).cloned())
        }

        async fn refund_once(
            &self,
            order_id: &str,
            request: &RefundRequest,
        ) -> Result<Refund, RepositoryError> {
            let mut t = self.0.lock().unwrap();
            match t.get_mut(order_id) {
                Some(p) if p.status == CHARGED => {
                    p.status = REFUNDED.into();
                    p.refund_event_id = Some(request.event_id.clone());
                    p.refund_reason = Some(request.reason.clone());
                    p.refunded_at = Some(request.at.clone());
                    Ok(Refund::Refunded(Box::new(p.clone())))
                }
                _ => Ok(Refund::NotCharged),
            }
        }
    }

    #[derive(Clone, Default)]
    struct Bus {
        published: Arc<Mutex<Vec<serde_json::Value>>>,
        down: Arc<Mutex<bool>>,
    }

    #[async_trait]
    impl PutEventsTransport for Bus {
        async fn put_events(
            &self,
            entries: Vec<PutEventsRequestEntry>,
        ) -> Result<Vec<EntryResult>, String> {
            if *self.down.lock().unwrap() {
                return Err("bus unavailable".into());
            }
            for e in &entries {
                self.published
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(e.detail().unwrap_or_default()).unwrap());
            }
            Ok(entries.iter().map(|_| EntryResult::default()).collect())
        }
    }

    fn service(payments: &MemoryPayments, bus: &Bus) -> PaymentService<MemoryPayments, Bus> {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        PaymentService::new(
            payments.clone(),
            Publisher::new(bus.clone(), "bus").with_retry(RetryPolicy {
                max_attempts: 1,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
            }),
            Idempotency::new(
                aws_sdk_dynamodb::Client::from_conf(config),
                "unused",
                "payment",
            ),
            PaymentPolicy::default(),
        )
    }

    fn payment(order_id: &str, status: &str) -> PaymentRecord {
        PaymentRecord {
            order_id: order_id.into(),
            payment_id: "pay_1".into(),
            status: status.into(),
            amount: 2500,
            currency: "EUR".into(),
            decline_reason: None,
            event_id: "charge-1".into(),
            correlation_id: "corr".into(),
            processed_at: "2026-11-21T10:00:00.000Z".into(),
            refunded_at: None,
            refund_event_id: None,
            refund_reason: None,
        }
    }

    fn request(event_id: &str, order_id: &str) -> Envelope<RefundPaymentRequested> {
        let mut e = Envelope::new(
            sources::SAGA,
            RefundPaymentRequested {
                order_id: order_id.into(),
                reason: "out-of-stock".into(),
            },
        );
        e.metadata.event_id = event_id.into();
        e
    }

    #[tokio::test]
    async fn a_charge_is_refunded_once_whoever_asks_again() {
        let (payments, bus) = (MemoryPayments::default(), Bus::default());
        payments
            .0
            .lock()
            .unwrap()
            .insert("ord-1".into(), payment("ord-1", CHARGED));
        let svc = service(&payments, &bus);

        // The bus fails after the write: the retry publishes the same event.
        *bus.down.lock().unwrap() = true;
        assert!(!svc
            .refund(&request("r1", "ord-1"))
            .await
            .unwrap_err()
            .is_permanent());
        *bus.down.lock().unwrap() = false;
        assert_eq!(
            svc.refund(&request("r1", "ord-1")).await.unwrap(),
            Handled::Processed
        );
        // A second request for the same order finds nothing left to refund.
        assert_eq!(
            svc.refund(&request("r2", "ord-1")).await.unwrap(),
            Handled::Duplicate
        );

        let published = bus.published.lock().unwrap().clone();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0]["data"]["amount"], 2500);
        assert_eq!(published[0]["data"]["paymentId"], "pay_1");
        assert_eq!(
            published[0]["metadata"]["eventId"],
            eventkit::envelope::derived_event_id("r1", "PaymentRefunded", "pay_1")
        );
        let stored = payments.0.lock().unwrap()["ord-1"].clone();
        assert_eq!(stored.status, REFUNDED);
        assert_eq!(stored.refund_event_id.as_deref(), Some("r1"));
    }

    #[tokio::test]
    async fn declined_or_missing_payments_refund_nothing() {
        let (payments, bus) = (MemoryPayments::default(), Bus::default());
        payments
            .0
            .lock()
            .unwrap()
            .insert("ord-1".into(), payment("ord-1", DECLINED));
        let svc = service(&payments, &bus);
        assert_eq!(
            svc.refund(&request("r1", "ord-1")).await.unwrap(),
            Handled::Ignored
        );
        assert_eq!(
            svc.refund(&request("r2", "ord-none")).await.unwrap(),
            Handled::Ignored
        );
        assert!(bus.published.lock().unwrap().is_empty());
        assert_eq!(payments.0.lock().unwrap()["ord-1"].status, DECLINED);
        assert!(svc
            .refund(&request("r3", " "))
            .await
            .unwrap_err()
            .is_permanent());
    }
}
