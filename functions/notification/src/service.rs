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
//! replay after the idempotency record expired) finds the record:
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

use contracts::{
    sources, CustomerRegistered, EmailSent, OrderCancelled, OrderConfirmed, OrderShipped,
};
use eventkit::publisher::PutEventsTransport;
use eventkit::{
    DecodeError, Envelope, EventData, EventMetadata, Handled, HandlerError, Idempotency,
    Invocation, Publisher, RawEvent,
};

use crate::mailer::{Mailer, SendError, SesMailer};
use crate::repository::{
    Claimed, DynamoEmailRepository, EmailRecord, EmailRepository, EmailStatus,
};
use crate::templates::{self, Email};

pub struct NotificationService<
    R = DynamoEmailRepository,
    M = SesMailer,
    T = aws_sdk_eventbridge::Client,
> {
    repository: R,
    mailer: M,
    publisher: Publisher<T>,
    idempotency: Idempotency,
}

impl NotificationService {
    /// Reads `EMAILS_TABLE`, `EMAIL_SENDER`, `IDEMPOTENCY_TABLE` and `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(NotificationService::new(
            DynamoEmailRepository::new(dynamo.clone(), required_env("EMAILS_TABLE")?),
            SesMailer::new(aws, required_env("EMAIL_SENDER")?),
            Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            ),
            Idempotency::new(dynamo, required_env("IDEMPOTENCY_TABLE")?, "notification"),
        ))
    }
}

/// The email an event asks for. Fails permanently for events that are malformed, of a
/// type we do not mail about, or addressed to something that is not an address.
pub fn render(event: &RawEvent) -> Result<Email, HandlerError> {
    let email = match event.detail_type.as_str() {
        OrderConfirmed::DETAIL_TYPE => {
            templates::order_confirmed(&event.decode::<OrderConfirmed>()?.data)
        }
        OrderCancelled::DETAIL_TYPE => {
            templates::order_cancelled(&event.decode::<OrderCancelled>()?.data)
        }
        OrderShipped::DETAIL_TYPE => {
            templates::order_shipped(&event.decode::<OrderShipped>()?.data)
        }
        CustomerRegistered::DETAIL_TYPE => {
            templates::welcome(&event.decode::<CustomerRegistered>()?.data)
        }
        other => return Err(DecodeError::UnknownType(other.to_string()).into()),
    };
    email
        .check()
        .map_err(|e| HandlerError::permanent("invalid-recipient", e))?;
    Ok(email)
}

impl<R: EmailRepository, M: Mailer, T: PutEventsTransport> NotificationService<R, M, T> {
    pub fn new(
        repository: R,
        mailer: M,
        publisher: Publisher<T>,
        idempotency: Idempotency,
    ) -> Self {
        NotificationService {
            repository,
            mailer,
            publisher,
            idempotency,
        }
    }

    pub async fn handle(
        &self,
        event: RawEvent,
        invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let email = render(&event)?;
        // The idempotency record makes ordinary duplicates cheap (no emails-table write);
        // the emails record below is what actually keeps the email from going out twice.
        self.idempotency
            .handle_once(&event.metadata, &event.data, &invocation, || {
                self.deliver(&event.metadata, &email)
            })
            .await
    }

    /// Claims, sends, records and announces the email of event `cause`.
    pub(crate) async fn deliver(
        &self,
        cause: &EventMetadata,
        email: &Email,
    ) -> Result<Handled, HandlerError> {
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
        if let Claimed::Existing(stored) = self.repository.claim(&record).await? {
            return self.already_recorded(cause, *stored).await;
        }
        let message_id = match self.mailer.send(email).await {
            Ok(id) => id,
            Err(e @ SendError::Unknown(_)) => {
                // Left SENDING: see the module comment. The DLQ keeps the event for a person.
                tracing::error!(event_id = %cause.event_id, to = %email.to, error = %e,
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
        self.publisher.publish(&[email_sent(cause, &sent)?]).await?;
        tracing::info!(template = %sent.template, to = %sent.to,
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
                self.publisher
                    .publish(&[email_sent(cause, &stored)?])
                    .await?;
                tracing::info!(event_id = %cause.event_id,
                    "email was sent before; EmailSent published again, nothing sent");
            }
            EmailStatus::Sending | EmailStatus::Failed => {
                tracing::warn!(event_id = %cause.event_id, template = %stored.template,
                    to = %stored.to, created_at = %stored.created_at,
                    "an earlier attempt claimed this email and its outcome is unknown; \
                     not sending again (at most one email per event)");
            }
        }
        Ok(Handled::Duplicate)
    }
}

/// `EmailSent` for a SENT record. Its id derives from the cause and the template, so
/// publishing it again from the record gives the same event.
fn email_sent(cause: &EventMetadata, sent: &EmailRecord) -> Result<RawEvent, HandlerError> {
    let message_id = sent.message_id.clone().ok_or_else(|| {
        HandlerError::transient(
            "emails-table",
            format!("email record {} is SENT without a message id", sent.id),
        )
    })?;
    Ok(Envelope::caused_by(
        cause,
        sources::NOTIFICATION,
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
    .to_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::RepositoryError;
    use async_trait::async_trait;
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    use eventkit::publisher::EntryResult;
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    /// The emails table with the same conditions as the DynamoDB adapter.
    #[derive(Default, Clone)]
    struct MemoryEmails(Arc<Mutex<HashMap<String, EmailRecord>>>);

    #[async_trait]
    impl EmailRepository for MemoryEmails {
        async fn claim(&self, record: &EmailRecord) -> Result<Claimed, RepositoryError> {
            let mut table = self.0.lock().unwrap();
            match table.get(&record.id) {
                Some(stored) if stored.status != EmailStatus::Failed => {
                    Ok(Claimed::Existing(Box::new(stored.clone())))
                }
                _ => {
                    table.insert(record.id.clone(), record.clone());
                    Ok(Claimed::Claimed)
                }
            }
        }
        async fn mark_sent(&self, id: &str, message_id: &str) -> Result<(), RepositoryError> {
            let mut table = self.0.lock().unwrap();
            let r = table.get_mut(id).unwrap();
            assert_eq!(r.status, EmailStatus::Sending);
            r.status = EmailStatus::Sent;
            r.message_id = Some(message_id.into());
            Ok(())
        }
        async fn mark_failed(&self, id: &str, error: &str) -> Result<(), RepositoryError> {
            let mut table = self.0.lock().unwrap();
            let r = table.get_mut(id).unwrap();
            assert_eq!(r.status, EmailStatus::Sending);
            r.status = EmailStatus::Failed;
            r.last_error = Some(error.into());
            Ok(())
        }
    }

    /// Answers from a script (then succeeds), counting what it was asked to send.
    #[derive(Default, Clone)]
    struct ScriptedMailer {
        script: Arc<Mutex<VecDeque<SendError>>>,
        sent: Arc<Mutex<Vec<Email>>>,
    }

    #[async_trait]
    impl Mailer for ScriptedMailer {
        async fn send(&self, email: &Email) -> Result<String, SendError> {
            if let Some(e) = self.script.lock().unwrap().pop_front() {
                return Err(e);
            }
            let mut sent = self.sent.lock().unwrap();
            sent.push(email.clone());
            Ok(format!("ses-{}", sent.len()))
        }
    }

    #[derive(Default, Clone)]
    struct RecordingBus(Arc<Mutex<Vec<PutEventsRequestEntry>>>);

    #[async_trait]
    impl PutEventsTransport for RecordingBus {
        async fn put_events(
            &self,
            entries: Vec<PutEventsRequestEntry>,
        ) -> Result<Vec<EntryResult>, String> {
            let results = entries.iter().map(|_| EntryResult::default()).collect();
            self.0.lock().unwrap().extend(entries);
            Ok(results)
        }
    }

    struct Fixture {
        emails: MemoryEmails,
        mailer: ScriptedMailer,
        bus: RecordingBus,
        service: NotificationService<MemoryEmails, ScriptedMailer, RecordingBus>,
    }

    fn fixture(script: Vec<SendError>) -> Fixture {
        let (emails, bus) = (MemoryEmails::default(), RecordingBus::default());
        let mailer = ScriptedMailer::default();
        mailer.script.lock().unwrap().extend(script);
        // Never called: `deliver` is tested below the idempotency layer.
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .build(),
        );
        let service = NotificationService::new(
            emails.clone(),
            mailer.clone(),
            Publisher::new(bus.clone(), "bus"),
            Idempotency::new(dynamo, "idempotency", "notification"),
        );
        Fixture {
            emails,
            mailer,
            bus,
            service,
        }
    }

    impl Fixture {
        fn sent(&self) -> usize {
            self.mailer.sent.lock().unwrap().len()
        }
        fn published(&self) -> Vec<serde_json::Value> {
            self.bus
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|e| serde_json::from_str(e.detail().unwrap()).unwrap())
                .collect()
        }
        fn status(&self, id: &str) -> EmailStatus {
            self.emails.0.lock().unwrap()[id].status
        }
    }

    fn shipped() -> (EventMetadata, Email) {
        let event = Envelope::new(
            sources::SHIPPING,
            OrderShipped {
                order_id: "ord-1".into(),
                shipment_id: "shp_1".into(),
                carrier: "UPS".into(),
                tracking_number: "1Z000000000042".into(),
                customer_email: "ada@example.com".into(),
            },
        )
        .to_raw();
        (event.metadata.clone(), render(&event).unwrap())
    }

    #[tokio::test]
    async fn an_email_is_claimed_sent_recorded_and_announced() {
        let f = fixture(vec![]);
        let (cause, email) = shipped();
        assert_eq!(
            f.service.deliver(&cause, &email).await.unwrap(),
            Handled::Processed
        );
        assert_eq!(f.sent(), 1);
        assert_eq!(f.status(&cause.event_id), EmailStatus::Sent);
        let published = f.published();
        assert_eq!(published.len(), 1);
        let data = &published[0]["data"];
        assert_eq!(data["template"], "order-shipped");
        assert_eq!(data["messageId"], "ses-1");
        assert_eq!(data["causeEventId"], cause.event_id.as_str());
        assert_eq!(data["orderId"], "ord-1");
        assert_eq!(data["to"], "ada@example.com");
    }

    #[tokio::test]
    async fn a_sent_email_is_announced_again_with_the_same_id_but_not_sent_again() {
        let f = fixture(vec![]);
        let (cause, email) = shipped();
        f.service.deliver(&cause, &email).await.unwrap();
        assert_eq!(
            f.service.deliver(&cause, &email).await.unwrap(),
            Handled::Duplicate
        );
        assert_eq!(f.sent(), 1);
        let published = f.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0], {
            let mut again = published[1].clone();
            again["metadata"]["occurredAt"] = published[0]["metadata"]["occurredAt"].clone();
            again
        });
    }

    #[tokio::test]
    async fn a_claim_left_by_an_attempt_that_died_is_not_sent_again() {
        let f = fixture(vec![]);
        let (cause, email) = shipped();
        let stale = EmailRecord {
            id: cause.event_id.clone(),
            status: EmailStatus::Sending,
            template: "order-shipped".into(),
            to: email.to.clone(),
            subject: email.subject.clone(),
            order_id: None,
            correlation_id: cause.correlation_id.clone(),
            created_at: "2026-11-21T10:00:00.000Z".into(),
            message_id: None,
            sent_at: None,
            last_error: None,
        };
        f.emails
            .0
            .lock()
            .unwrap()
            .insert(cause.event_id.clone(), stale);
        assert_eq!(
            f.service.deliver(&cause, &email).await.unwrap(),
            Handled::Duplicate
        );
        assert_eq!(f.sent(), 0);
        assert!(f.published().is_empty());
    }

    #[tokio::test]
    async fn a_send_known_to_have_failed_is_retried_and_sent_once() {
        let f = fixture(vec![SendError::NotSent("Throttling: slow down".into())]);
        let (cause, email) = shipped();
        let err = f.service.deliver(&cause, &email).await.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "email-not-sent");
        assert_eq!(f.status(&cause.event_id), EmailStatus::Failed);
        assert_eq!(
            f.service.deliver(&cause, &email).await.unwrap(),
            Handled::Processed
        );
        assert_eq!(f.sent(), 1);
        assert_eq!(f.published().len(), 1);
    }

    #[tokio::test]
    async fn a_rejected_email_fails_for_good() {
        let f = fixture(vec![SendError::Rejected(
            "MessageRejected: not verified".into(),
        )]);
        let (cause, email) = shipped();
        let err = f.service.deliver(&cause, &email).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "email-rejected");
        assert_eq!(f.status(&cause.event_id), EmailStatus::Failed);
        assert!(f.published().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_never_sent_again() {
        let f = fixture(vec![SendError::Unknown("timeout".into())]);
        let (cause, email) = shipped();
        let err = f.service.deliver(&cause, &email).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "email-outcome-unknown");
        assert_eq!(f.status(&cause.event_id), EmailStatus::Sending);
        // A redrive of the dead letter: still nothing sent.
        assert_eq!(
            f.service.deliver(&cause, &email).await.unwrap(),
            Handled::Duplicate
        );
        assert_eq!(f.sent(), 0);
    }

    fn raw(detail_type: &str, data: serde_json::Value) -> RawEvent {
        RawEvent::from_sqs_body(
            &serde_json::json!({
                "id": "e1", "source": "test", "detail-type": detail_type,
                "time": "2026-11-21T10:00:00Z", "detail": {"data": data}
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn each_event_type_renders_its_template() {
        let cases = [
            (
                "OrderConfirmed",
                serde_json::json!({"orderId": "o", "customerId": "c", "customerEmail": "a@b.co",
                    "total": 100, "currency": "EUR", "paymentId": "p", "reservationId": "r",
                    "lines": []}),
                "order-confirmed",
            ),
            (
                "OrderCancelled",
                serde_json::json!({"orderId": "o", "customerId": "c", "customerEmail": "a@b.co",
                    "reason": "out-of-stock"}),
                "order-cancelled",
            ),
            (
                "CustomerRegistered",
                serde_json::json!({"customerId": "c", "email": "a@b.co", "name": "Ada"}),
                "welcome",
            ),
        ];
        for (detail_type, data, template) in cases {
            assert_eq!(
                render(&raw(detail_type, data)).unwrap().template.name(),
                template
            );
        }
    }

    #[test]
    fn poison_events_fail_permanently_with_a_reason() {
        let err = render(&raw(
            "OrderShipped",
            serde_json::json!({"orderId": "o", "shipmentId": "s", "carrier": "DHL",
                "customerEmail": "a@b.co"}),
        ))
        .unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "invalid-data");
        assert!(err.message.contains("trackingNumber"), "{}", err.message);

        let err = render(&raw(
            "CustomerRegistered",
            serde_json::json!({"customerId": "c", "email": "not-an-address", "name": "X"}),
        ))
        .unwrap_err();
        assert_eq!(err.reason, "invalid-recipient");

        let err = render(&raw("PaymentProcessed", serde_json::json!({}))).unwrap_err();
        assert_eq!(err.reason, "unknown-type");
    }
}
