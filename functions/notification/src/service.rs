//! Handles one event for the notification function.
//!
//! # At most one email per event
//!
//! An email cannot be taken back, and SES has no idempotency token, so no sequence of
//! calls makes "send" and "remember that we sent" one atomic step. We choose to risk a
//! lost email rather than a duplicate one:
//!
//! 1. Before sending, claim the event in the emails table: a conditional put of
//!    `id = <event id>`, status SENDING (it succeeds only if there is no record, or a
//!    FAILED one).
//! 2. Send. 3. Mark the record SENT with the SES message id. 4. Publish `EmailSent`.
//!
//! A later attempt for the same event (SQS redelivery, a retry after a failed publish, a
//! replay) finds the record:
//! - SENT: the email went out; only `EmailSent` is published again, with the same derived
//!   id, so downstream sees one event.
//! - SENDING: an earlier attempt died between 1 and 3, or could not tell whether SES took
//!   the mail (a timeout). The email may or may not have gone out and nothing can tell us,
//!   so we do not send again: at most one email, at the price of possibly none. Such events
//!   are logged as warnings and reported as duplicates; an operator who knows the mail was
//!   not delivered deletes the record and redrives the event.
//!
//! Only when SES answered with an error (so the mail certainly did not go out) is the
//! record marked FAILED, which lets a retry claim it again. That is also why the SES client
//! makes a single attempt per send (see [`crate::mailer::SesMailer`]).
//!
//! There is no separate idempotency record (eventkit's `Idempotency`) in front of this: the
//! claim is already a conditional write keyed by the event, so it is the record. One more
//! would cost two DynamoDB writes per email and keep no email from going out twice that the
//! claim does not.

use std::sync::Arc;

use contracts::{
    CustomerRegistered, EmailSent, Event, OrderCancelled, OrderConfirmed, OrderShipped,
};
use eventkit::{
    DecodeError, Envelope, EventData, EventMetadata, FirstWrite, Handled, HandlerError, Invocation,
    Publish, Publisher, Route,
};

use crate::mailer::{Mailer, SendError, SesMailer};
use crate::repository::{DynamoEmailRepository, EmailRecord, EmailRepository, EmailStatus};
use crate::templates::{self, Email};

/// What the notification function takes in: the events a customer is emailed about, each
/// from the source that owns it.
pub const ROUTES: &[Route] = &[
    OrderConfirmed::ROUTE,
    OrderCancelled::ROUTE,
    OrderShipped::ROUTE,
    CustomerRegistered::ROUTE,
];

pub struct NotificationService {
    repository: Arc<dyn EmailRepository>,
    mailer: Arc<dyn Mailer>,
    bus: Arc<dyn Publish<Event>>,
}

impl NotificationService {
    /// Reads `EMAILS_TABLE`, `EMAIL_SENDER` and `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(NotificationService::new(
            Arc::new(DynamoEmailRepository::new(
                dynamo,
                required_env("EMAILS_TABLE")?,
            )),
            Arc::new(SesMailer::new(aws, required_env("EMAIL_SENDER")?)),
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            )),
        ))
    }

    pub fn new(
        repository: Arc<dyn EmailRepository>,
        mailer: Arc<dyn Mailer>,
        bus: Arc<dyn Publish<Event>>,
    ) -> Self {
        NotificationService {
            repository,
            mailer,
            bus,
        }
    }

    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let email = render(event.data)?;
        self.deliver(&event.metadata, &email).await
    }

    /// Claims, sends, records and announces the email of event `cause`.
    async fn deliver(&self, cause: &EventMetadata, email: &Email) -> Result<Handled, HandlerError> {
        let record = EmailRecord {
            id: cause.event_id.clone(),
            status: EmailStatus::Sending,
            template: email.template.name().to_string(),
            to: email.to.clone(),
            subject: email.subject.clone(),
            order_id: email.order_id.clone(),
            correlation_id: cause.correlation_id.clone(),
            created_at: eventkit::envelope::format_time(&chrono::Utc::now()),
            message_id: None,
            sent_at: None,
            last_error: None,
        };
        if let FirstWrite::Existing(stored) = self.repository.claim(&record).await? {
            return self.already_recorded(cause, stored).await;
        }
        let message_id = match self.mailer.send(email).await {
            Ok(id) => id,
            Err(e @ SendError::Unknown(_)) => {
                // Left SENDING: see the module comment. The DLQ keeps the event for a person.
                tracing::error!(event_id = %cause.event_id, to = %masked(&email.to), error = %e,
                    "email may have been sent; it will not be sent again");
                return Err(HandlerError::permanent("email-outcome-unknown", e));
            }
            Err(e) => {
                self.repository
                    .mark_failed(&record.id, &e.to_string())
                    .await?;
                return Err(match e {
                    SendError::Rejected(_) => HandlerError::permanent("email-rejected", e),
                    _ => HandlerError::transient("email-not-sent", e),
                });
            }
        };
        // The email is out: announce it even if the record cannot be updated. A record left
        // SENDING still blocks a second email, which is all it must do from here on.
        if let Err(e) = self.repository.mark_sent(&record.id, &message_id).await {
            tracing::error!(event_id = %cause.event_id, %message_id, error = %e,
                "email sent but its record is still SENDING");
        }
        let sent = EmailRecord {
            status: EmailStatus::Sent,
            message_id: Some(message_id),
            ..record
        };
        self.bus.publish(&[email_sent(cause, &sent)?]).await?;
        tracing::info!(template = %sent.template, to = %masked(&sent.to),
            message_id = sent.message_id.as_deref().unwrap_or_default(), "email sent");
        Ok(Handled::Processed)
    }

    async fn already_recorded(
        &self,
        cause: &EventMetadata,
        stored: EmailRecord,
    ) -> Result<Handled, HandlerError> {
        match stored.status {
            EmailStatus::Sent => {
                self.bus.publish(&[email_sent(cause, &stored)?]).await?;
                tracing::info!(event_id = %cause.event_id,
                    "email was sent before; EmailSent published again, nothing sent");
            }
            EmailStatus::Sending | EmailStatus::Failed => {
                tracing::warn!(event_id = %cause.event_id, template = %stored.template,
                    to = %masked(&stored.to), created_at = %stored.created_at,
                    "an earlier attempt claimed this email and its outcome is unknown; \
                     not sending again (at most one email per event)");
            }
        }
        Ok(Handled::Duplicate)
    }
}

/// The email an event asks for. Fails permanently for a type we do not mail about (the
/// routes keep those out) and for a recipient that is not an address.
pub fn render(event: Event) -> Result<Email, HandlerError> {
    let email = match event {
        Event::OrderConfirmed(order) => templates::order_confirmed(&order),
        Event::OrderCancelled(order) => templates::order_cancelled(&order),
        Event::OrderShipped(shipment) => templates::order_shipped(&shipment),
        Event::CustomerRegistered(customer) => templates::welcome(&customer),
        other => return Err(DecodeError::not_routed(&other).into()),
    };
    email
        .check()
        .map_err(|e| HandlerError::permanent("invalid-recipient", e))?;
    Ok(email)
}

/// `EmailSent` for a SENT record. Its id derives from the cause and the template, so
/// publishing it again from the record gives the same event.
fn email_sent(cause: &EventMetadata, sent: &EmailRecord) -> Result<Envelope<Event>, HandlerError> {
    let message_id = sent.message_id.clone().ok_or_else(|| {
        HandlerError::transient(
            "emails-table",
            format!("email record {} is SENT without a message id", sent.id),
        )
    })?;
    Ok(Envelope::caused_by(
        cause,
        &sent.template,
        EmailSent {
            cause_event_id: cause.event_id.clone(),
            template: sent.template.clone(),
            to: sent.to.clone(),
            subject: sent.subject.clone(),
            message_id,
            order_id: sent.order_id.clone(),
        },
    )
    .widen())
}

/// A recipient as logs show it: the first character and the domain (`a***@example.com`),
/// enough to tell mails apart and spot a failing provider, without writing customers'
/// addresses into log storage that outlives them.
pub fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailer::memory::MemoryMailer;
    use crate::repository::memory::MemoryEmails;
    use contracts::{sources, Currency, PaymentProcessed, StockLine};
    use eventkit::envelope::derived_event_id;
    use eventkit::testing::{invocation, MemoryBus};
    use eventkit::{take_in, RawEvent};
    use serde_json::{json, Value};
    use std::sync::Mutex;

    const ADA: &str = "ada@example.com";

    struct World {
        emails: Arc<MemoryEmails>,
        mailer: Arc<MemoryMailer>,
        bus: Arc<MemoryBus<Event>>,
        service: NotificationService,
    }

    fn world() -> World {
        let emails = Arc::new(MemoryEmails::default());
        let mailer = Arc::new(MemoryMailer::default());
        let bus = MemoryBus::new();
        let service = NotificationService::new(emails.clone(), mailer.clone(), bus.clone());
        World {
            emails,
            mailer,
            bus,
            service,
        }
    }

    impl World {
        async fn handle(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
            self.service.handle(event.clone(), invocation()).await
        }

        fn subjects_sent(&self) -> Vec<String> {
            self.mailer.sent().into_iter().map(|e| e.subject).collect()
        }

        fn record(&self, cause: &Envelope<Event>) -> Option<EmailRecord> {
            self.emails.table.get(&cause.metadata.event_id)
        }

        fn status(&self, cause: &Envelope<Event>) -> Option<EmailStatus> {
            self.record(cause).map(|r| r.status)
        }

        /// Every published envelope is `cause`'s `EmailSent` for `template`: its id derived
        /// from the cause, in the cause's conversation, from the notification source.
        fn assert_announced_as_caused_by(&self, cause: &Envelope<Event>, template: &str) {
            for sent in self.bus.published() {
                assert_eq!(sent.metadata.event_id, email_sent_id(cause, template));
                assert_eq!(
                    sent.metadata.causation_id.as_deref(),
                    Some(cause.metadata.event_id.as_str())
                );
                assert_eq!(sent.metadata.correlation_id, cause.metadata.correlation_id);
                assert_eq!(sent.source, sources::NOTIFICATION);
            }
        }

        /// Puts an emails record as an earlier attempt would have left it.
        fn earlier_attempt(&self, cause: &Envelope<Event>, status: EmailStatus) {
            let id = &cause.metadata.event_id;
            self.emails.table.put(
                id,
                EmailRecord {
                    id: id.clone(),
                    status,
                    template: "welcome".into(),
                    to: ADA.into(),
                    subject: "Welcome to Orderflow, Earlier".into(),
                    order_id: None,
                    correlation_id: cause.metadata.correlation_id.clone(),
                    created_at: "2026-11-21T10:00:00.000Z".into(),
                    message_id: (status == EmailStatus::Sent)
                        .then(|| "ses-from-the-earlier-attempt".into()),
                    sent_at: None,
                    last_error: None,
                },
            );
        }
    }

    fn email_sent_id(cause: &Envelope<Event>, template: &str) -> String {
        derived_event_id(&cause.metadata.event_id, EmailSent::DETAIL_TYPE, template)
    }

    fn event(data: impl Into<Event>) -> Envelope<Event> {
        Envelope::new(data.into())
    }

    fn confirmed() -> Envelope<Event> {
        event(OrderConfirmed {
            order_id: "ord-1".into(),
            customer_id: "cus-1".into(),
            customer_email: ADA.into(),
            total: 3300,
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            payment_id: "pay_1".into(),
            reservation_id: "res_1".into(),
            lines: vec![StockLine {
                sku: "MUG-RED".into(),
                quantity: 2,
            }],
        })
    }

    fn cancelled() -> Envelope<Event> {
        event(OrderCancelled {
            order_id: "ord-2".into(),
            customer_id: "cus-1".into(),
            customer_email: ADA.into(),
            reason: "out-of-stock".into(),
        })
    }

    fn shipped() -> Envelope<Event> {
        event(OrderShipped {
            order_id: "ord-3".into(),
            shipment_id: "shp_1".into(),
            carrier: "UPS".into(),
            tracking_number: "1Z000000000042".into(),
            customer_email: ADA.into(),
        })
    }

    fn registered() -> Envelope<Event> {
        event(CustomerRegistered {
            customer_id: "cus-1".into(),
            email: ADA.into(),
            name: "Ada".into(),
        })
    }

    /// The `EmailSent` of the first email `cause` sent.
    fn announced(cause: &Envelope<Event>, template: &str, subject: &str) -> Event {
        Event::EmailSent(EmailSent {
            cause_event_id: cause.metadata.event_id.clone(),
            template: template.into(),
            to: ADA.into(),
            subject: subject.into(),
            message_id: "ses-1".into(),
            order_id: cause.data.order_id().map(str::to_string),
        })
    }

    /// Given `cause`, when it is delivered twice, then one email with `subject` goes out
    /// and one `EmailSent` announces it (published again, with the same id, by the
    /// redelivery).
    async fn one_email_for(cause: Envelope<Event>, template: &str, subject: &str) {
        let w = world();

        let first = w.handle(&cause).await.unwrap();
        let again = w.handle(&cause).await.unwrap();

        assert_eq!((first, again), (Handled::Processed, Handled::Duplicate));
        assert_eq!(w.subjects_sent(), vec![subject.to_string()]);
        let announcement = announced(&cause, template, subject);
        assert_eq!(w.bus.events(), vec![announcement.clone(), announcement]);
        w.assert_announced_as_caused_by(&cause, template);
        let record = w.record(&cause).unwrap();
        assert_eq!(
            (record.status, record.message_id.as_deref()),
            (EmailStatus::Sent, Some("ses-1"))
        );
    }

    #[tokio::test]
    async fn order_confirmed_sends_one_confirmation() {
        one_email_for(
            confirmed(),
            "order-confirmed",
            "Your order ord-1 is confirmed (33.00 EUR)",
        )
        .await;
    }

    #[tokio::test]
    async fn order_cancelled_sends_one_cancellation() {
        one_email_for(
            cancelled(),
            "order-cancelled",
            "Your order ord-2 was cancelled",
        )
        .await;
    }

    #[tokio::test]
    async fn order_shipped_sends_one_shipping_notice() {
        one_email_for(shipped(), "order-shipped", "Your order ord-3 has shipped").await;
    }

    #[tokio::test]
    async fn customer_registered_sends_one_welcome() {
        one_email_for(registered(), "welcome", "Welcome to Orderflow, Ada").await;
    }

    #[tokio::test]
    async fn after_a_bus_failure_the_redelivery_announces_the_same_event_without_resending() {
        let w = world();
        let cause = shipped();
        w.bus.fail_next(1);

        let err = w.handle(&cause).await.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "publish-failed");
        assert!(err
            .message
            .contains(&email_sent_id(&cause, "order-shipped")));
        assert!(w.bus.published().is_empty());
        assert_eq!(w.status(&cause), Some(EmailStatus::Sent));

        let redelivered = w.handle(&cause).await.unwrap();

        assert_eq!(redelivered, Handled::Duplicate);
        assert_eq!(w.subjects_sent().len(), 1, "one email");
        assert_eq!(
            w.bus.events(),
            vec![announced(
                &cause,
                "order-shipped",
                "Your order ord-3 has shipped"
            )]
        );
        w.assert_announced_as_caused_by(&cause, "order-shipped");
    }

    #[tokio::test]
    async fn an_email_sent_before_is_announced_again_but_not_sent_again() {
        let w = world();
        let cause = registered();
        w.earlier_attempt(&cause, EmailStatus::Sent);

        let handled = w.handle(&cause).await.unwrap();

        assert_eq!(handled, Handled::Duplicate);
        assert!(w.mailer.sent().is_empty());
        assert_eq!(
            w.bus.events(),
            vec![Event::EmailSent(EmailSent {
                cause_event_id: cause.metadata.event_id.clone(),
                template: "welcome".into(),
                to: ADA.into(),
                subject: "Welcome to Orderflow, Earlier".into(),
                message_id: "ses-from-the-earlier-attempt".into(),
                order_id: None,
            })]
        );
        w.assert_announced_as_caused_by(&cause, "welcome");
    }

    #[tokio::test]
    async fn a_claim_left_by_an_attempt_that_died_is_not_sent_again() {
        let w = world();
        let cause = registered();
        w.earlier_attempt(&cause, EmailStatus::Sending);

        let handled = w.handle(&cause).await.unwrap();

        assert_eq!(handled, Handled::Duplicate);
        assert!(w.mailer.sent().is_empty());
        assert!(w.bus.events().is_empty());
        assert_eq!(w.status(&cause), Some(EmailStatus::Sending));
    }

    #[tokio::test]
    async fn a_send_known_to_have_failed_is_retried_and_sent_once() {
        let w = world();
        let cause = shipped();
        w.mailer
            .fail_with([SendError::NotSent("Throttling: slow down".into())]);

        let err = w.handle(&cause).await.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "email-not-sent");
        let failed = w.record(&cause).unwrap();
        assert_eq!(failed.status, EmailStatus::Failed);
        assert_eq!(
            failed.last_error.as_deref(),
            Some("email not sent: Throttling: slow down")
        );

        let retried = w.handle(&cause).await.unwrap();

        assert_eq!(retried, Handled::Processed);
        assert_eq!(w.subjects_sent(), vec!["Your order ord-3 has shipped"]);
        assert_eq!(
            w.bus.events(),
            vec![announced(
                &cause,
                "order-shipped",
                "Your order ord-3 has shipped"
            )]
        );
        assert_eq!(w.record(&cause).unwrap().last_error, None);
    }

    #[tokio::test]
    async fn a_rejected_email_fails_for_good() {
        let w = world();
        let cause = confirmed();
        w.mailer
            .fail_with([SendError::Rejected("MessageRejected: not verified".into())]);

        let err = w.handle(&cause).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "email-rejected");
        assert_eq!(w.status(&cause), Some(EmailStatus::Failed));
        assert!(w.bus.events().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_never_sent_again() {
        let w = world();
        let cause = cancelled();
        w.mailer.fail_with([SendError::Unknown("timeout".into())]);

        let err = w.handle(&cause).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "email-outcome-unknown");
        assert_eq!(w.status(&cause), Some(EmailStatus::Sending));

        // A redrive of the dead letter: still nothing sent.
        let redriven = w.handle(&cause).await.unwrap();

        assert_eq!(redriven, Handled::Duplicate);
        assert!(w.mailer.sent().is_empty());
        assert!(w.bus.events().is_empty());
    }

    #[tokio::test]
    async fn a_recipient_that_is_not_an_address_fails_for_good_and_records_nothing() {
        let w = world();
        let cause = event(CustomerRegistered {
            customer_id: "cus-1".into(),
            email: "not-an-address".into(),
            name: "X".into(),
        });

        let err = w.handle(&cause).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "invalid-recipient");
        assert!(w.emails.table.items().is_empty());
        assert!(w.mailer.sent().is_empty());
    }

    #[tokio::test]
    async fn an_event_not_routed_here_is_refused() {
        let w = world();
        let payment = event(PaymentProcessed {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            amount: 1,
            currency: Currency::try_from("EUR".to_string()).unwrap(),
        });

        let err = w.handle(&payment).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "not-routed");
        assert!(w.emails.table.items().is_empty());
    }

    fn raw(source: &str, detail_type: &str, data: Value) -> RawEvent {
        RawEvent::from_eventbridge_json(json!({
            "id": "e1", "source": source, "detail-type": detail_type,
            "time": "2026-11-21T10:00:00Z", "detail": {"data": data}
        }))
        .unwrap()
    }

    #[test]
    fn poison_and_foreign_events_are_refused_at_intake_with_a_reason() {
        let shipped = json!({"orderId": "o", "shipmentId": "s", "carrier": "DHL",
            "customerEmail": "a@b.co"});
        let err = take_in::<Event>(ROUTES, &raw("orderflow.shipping", "OrderShipped", shipped))
            .unwrap_err();
        assert_eq!(err.reason(), "invalid-data");
        assert!(err.to_string().contains("trackingNumber"), "{err}");

        let forged = json!({"orderId": "o", "shipmentId": "s", "carrier": "DHL",
            "trackingNumber": "t", "customerEmail": "a@b.co"});
        let err =
            take_in::<Event>(ROUTES, &raw("orderflow.saga", "OrderShipped", forged)).unwrap_err();
        assert_eq!(err.reason(), "untrusted-source");

        let err = take_in::<Event>(
            ROUTES,
            &raw("orderflow.payment", "PaymentProcessed", json!({})),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "not-routed");
    }

    /// What every test of this binary logs, as JSON lines.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The process-wide log capture. A global subscriber, not a thread-local one: with
    /// `set_default`, a callsite first reached by a test on another thread (no subscriber
    /// there) is cached as disabled for every thread, and its lines go missing at random.
    fn captured_logs() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let sink = logs.clone();
            tracing::subscriber::set_global_default(eventkit::observability::json_subscriber(
                "info",
                move || sink.clone(),
            ))
            .expect("no other global subscriber in this test binary");
            logs
        })
        .clone()
    }

    #[tokio::test]
    async fn logs_never_show_a_customer_address_in_clear() {
        let logs = captured_logs();
        let w = world();
        // Every line that names a recipient: sent, outcome unknown, claimed before.
        let (shipped, cancelled, claimed) = (shipped(), cancelled(), registered());
        w.handle(&shipped).await.unwrap();
        w.mailer.fail_with([SendError::Unknown("timeout".into())]);
        w.handle(&cancelled).await.unwrap_err();
        w.earlier_attempt(&claimed, EmailStatus::Sending);
        w.handle(&claimed).await.unwrap();

        // Other tests of this binary log into the same capture, and every line of theirs
        // must be masked too; this test's three situations must each have been logged.
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        for line in lines.iter().filter(|l| !l["to"].is_null()) {
            assert_eq!(line["to"], "a***@example.com", "{line}");
        }
        for message in [
            "email sent",
            "email may have been sent; it will not be sent again",
            "an earlier attempt claimed this email and its outcome is unknown; \
             not sending again (at most one email per event)",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l["message"] == message && !l["to"].is_null()),
                "no line `{message}` naming the recipient in:\n{text}"
            );
        }
        assert!(!text.contains(ADA), "{text}");
    }

    #[test]
    fn masking_keeps_the_first_character_and_the_domain() {
        assert_eq!(masked("ada@example.com"), "a***@example.com");
        assert_eq!(masked("@example.com"), "***@example.com");
        assert_eq!(masked("nobody"), "***");
    }
}
