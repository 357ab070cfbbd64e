//! Handles one event for the payment function.

use contracts::{sources, OrderPlaced, PaymentFailed, PaymentProcessed};
use eventkit::envelope::format_time;
use eventkit::publisher::PutEventsTransport;
use eventkit::{
    DecodeError, Envelope, EventData, Handled, HandlerError, Idempotency, Invocation, Publisher,
    RawEvent,
};

use crate::decision::{decide, PaymentDecision, PaymentPolicy};
use crate::repository::{DynamoPaymentRepository, PaymentRecord, PaymentRepository, Recorded};

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

    /// Handles one event. Only `OrderPlaced` is routed here; anything else is misrouted
    /// and fails permanently.
    pub async fn handle(
        &self,
        event: RawEvent,
        invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        match event.detail_type.as_str() {
            OrderPlaced::DETAIL_TYPE => {
                let order = event.decode::<OrderPlaced>()?;
                let outcome = self
                    .idempotency
                    .run(
                        &order.metadata.event_id,
                        &order.data,
                        invocation.remaining(),
                        || self.charge(&order),
                    )
                    .await?;
                Ok(if outcome.is_duplicate() {
                    Handled::Duplicate
                } else {
                    outcome.into_inner()
                })
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
}

fn record_of(order: &Envelope<OrderPlaced>, decision: &PaymentDecision) -> PaymentRecord {
    let (status, reason) = match decision {
        PaymentDecision::Approved { .. } => ("CHARGED", None),
        PaymentDecision::Declined { reason, .. } => ("DECLINED", Some(reason.code().to_string())),
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
