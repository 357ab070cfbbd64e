//! The order deadline timer. Every `OrderPlaced` reaches this function through a queue whose
//! messages are delayed by `OrderDeadlineSeconds` (SQS `DelaySeconds`), and the function
//! answers each with the order's [`OrderDeadlineReached`]: a fact it owns (source
//! `orderflow.deadlines`), routed to the saga like every other fact, which cancels the order
//! if it is still pending then, records it for a confirmed one, and drops it for one that
//! has ended.
//!
//! Why a delayed queue and not a schedule per order or a sweep: the timer is started by the
//! same rule delivery that starts payment and inventory, so no order can be placed without
//! one (a schedule created by the saga would be one more write that can fail after the
//! order is in the stream), and it costs one SQS message and no table or index. The price
//! is SQS's limit: a delay is at most 900 s, so the deadline is at most 15 minutes (the
//! template's `MaxValue`).
//!
//! # Why each order gets one deadline fact
//!
//! The fact's id is derived from the `OrderPlaced` it answers (with the order id as
//! discriminator), so a redelivered message, or a batch retried after a failed publish,
//! publishes the same event again and the saga's store keeps it once. The timer decides
//! nothing and remembers nothing: it holds no state that could be lost or disagree.

use std::sync::Arc;

use contracts::{Event, EventData, OrderDeadlineReached, OrderPlaced, Route};
use eventkit::{DecodeError, Envelope, Handled, HandlerError, Invocation, Publish, Publisher};

/// What the timer takes in: orders, from the shop front only. `DeadlineRule` in
/// `infra/template.yaml` routes exactly these (checked by `routes_match_the_template`).
pub const ROUTES: &[Route] = &[OrderPlaced::ROUTE];

pub struct DeadlineTimer {
    bus: Arc<dyn Publish<Event>>,
}

impl DeadlineTimer {
    /// Reads `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(DeadlineTimer::new(Arc::new(Publisher::new(
            aws_sdk_eventbridge::Client::new(aws),
            eventkit::aws::required_env("EVENT_BUS_NAME")?,
        ))))
    }

    pub fn new(bus: Arc<dyn Publish<Event>>) -> Self {
        DeadlineTimer { bus }
    }

    /// Publishes the deadline of the order `event` placed; anything else is misrouted.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let Event::OrderPlaced(placed) = &event.data else {
            return Err(DecodeError::not_routed(&event.data).into());
        };
        let deadline = deadline_of(&event.metadata, &placed.order_id);
        self.bus.publish(&[deadline]).await?;
        tracing::info!(order_id = %placed.order_id, "deadline reached; the saga ends the order if it is still pending");
        Ok(Handled::Processed)
    }
}

/// The deadline fact of the order `placed` placed: the same id for every copy of it.
pub fn deadline_of(placed: &eventkit::EventMetadata, order_id: &str) -> Envelope<Event> {
    Envelope::caused_by(
        placed,
        order_id,
        Event::OrderDeadlineReached(OrderDeadlineReached {
            order_id: order_id.to_string(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{sources, Currency, OrderLine};
    use eventkit::testing::{invocation, MemoryBus};

    fn placed(order_id: &str) -> Envelope<Event> {
        Envelope::new(Event::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            customer_id: "cus-1".into(),
            customer_email: "ada@example.com".into(),
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 1,
                unit_price: 900,
            }],
            total: 900,
            payment_token: "tok_visa".into(),
            shipping_address: None,
        }))
    }

    #[tokio::test]
    async fn an_order_gets_its_deadline_caused_by_it_from_the_timers_source() {
        let bus = MemoryBus::new();
        let timer = DeadlineTimer::new(bus.clone());
        let order = placed("ord-1");

        assert_eq!(
            timer.handle(order.clone(), invocation()).await.unwrap(),
            Handled::Processed
        );

        let published = bus.published();
        assert_eq!(published.len(), 1);
        assert_eq!(
            published[0].data,
            Event::OrderDeadlineReached(OrderDeadlineReached {
                order_id: "ord-1".into()
            })
        );
        assert_eq!(published[0].source, sources::DEADLINES);
        assert_eq!(
            published[0].metadata.causation_id.as_deref(),
            Some(order.metadata.event_id.as_str())
        );
        assert_eq!(
            published[0].metadata.correlation_id,
            order.metadata.correlation_id
        );
    }

    #[tokio::test]
    async fn a_redelivery_or_a_retry_after_a_failed_publish_sends_the_same_event() {
        let bus = MemoryBus::new();
        let timer = DeadlineTimer::new(bus.clone());
        let order = placed("ord-1");
        bus.fail_next(1);
        let err = timer.handle(order.clone(), invocation()).await.unwrap_err();
        assert!(!err.is_permanent(), "{err}");

        timer.handle(order.clone(), invocation()).await.unwrap();
        timer.handle(order.clone(), invocation()).await.unwrap();

        let published = bus.published();
        assert_eq!(published.len(), 2);
        assert_eq!(
            published[0].metadata.event_id,
            published[1].metadata.event_id
        );
        assert_eq!(
            published[0].content_digest(),
            published[1].content_digest(),
            "the same content: the saga keeps one"
        );
    }

    #[tokio::test]
    async fn two_orders_sharing_an_event_id_get_two_deadlines() {
        let bus = MemoryBus::new();
        let timer = DeadlineTimer::new(bus.clone());
        let first = placed("ord-1");
        let mut second = placed("ord-2");
        second.metadata.event_id = first.metadata.event_id.clone();
        timer.handle(first, invocation()).await.unwrap();
        timer.handle(second, invocation()).await.unwrap();
        let ids: Vec<_> = bus
            .published()
            .into_iter()
            .map(|e| e.metadata.event_id)
            .collect();
        assert_ne!(ids[0], ids[1]);
    }

    #[tokio::test]
    async fn anything_but_an_order_is_misrouted() {
        let timer = DeadlineTimer::new(MemoryBus::new());
        let own = deadline_of(&placed("ord-1").metadata, "ord-1");
        let err = timer.handle(own, invocation()).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "not-routed");
    }

    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("DeadlineRule", ROUTES);
    }
}
