//! Handles one event for the notification function.
//!
//! # At most one email per event
//!
//! An email cannot be taken back, and SES has no idempotency token, so no sequence of
//! calls makes "send" and "remember that we sent" one atomic step. We choose to risk a
//! lost email rather than a duplicate one:
//!
//! 1. Before sending, claim the event in the emails table: a conditional put of
//!    `id = <source>#<event id>` with the event's content digest, status SENDING (it
//!    succeeds only if there is no record, or a FAILED one of the same digest).
//! 2. Send. 3. Mark the record SENT with the SES message id. 4. Publish `EmailSent`.
//!
//! The key holds the source because an event id is its producer's choice (the shop front
//! can reuse one, or compute a saga's derived id in advance); the digest tells the same
//! event from another one reusing its id under the same source. Such an event finds a
//! record with another digest and is refused as `conflicting-duplicate`, nothing sent and
//! the record untouched, whatever its status.
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
//! # Sending rate and throttling
//!
//! SES accepts at most the account's send rate, so every send first waits for a slot of the
//! process's [`SendRateLimiter`] (its share of that rate; see [`crate::rate`]). The slot is
//! taken *before* the claim: a message whose slot would come too late for this invocation
//! (after its deadline less [`DEADLINE_MARGIN`]) gives up holding nothing, fails
//! transiently as `email-rate-limited` and is received again later, claimable as if it had
//! never been seen. The other order would hold a SENDING claim through the wait, and an
//! invocation that died while waiting would lose the email for good. (A redelivery of an
//! email already sent also waits for a slot before its claim tells it so; those are rare.)
//!
//! A send that SES throttles anyway ("Maximum sending rate exceeded": more environments
//! sending than `EMAIL_SENDING_ENVIRONMENTS` says, or other senders on the account) certainly
//! did not go out, so sending it again keeps to "at most one email": it is retried within
//! the invocation, after a backoff with full jitter ([`THROTTLE_RETRY`]) and a new slot,
//! while one still fits before the deadline. Meanwhile the record stays SENDING, so a
//! concurrent delivery of the same event sends nothing; if no retry fits, the record is
//! marked FAILED and the message fails transiently (`email-throttled`) for SQS to redeliver.
//! The daily quota ("Daily message quota exceeded") is not retried here: seconds do not
//! refill it. The record is marked FAILED and the message left to the queue's retries
//! (`email-quota-exceeded`).
//!
//! The claim is the event's first-writer-wins record (key `id`), see [`eventkit::once`]; a
//! FAILED claim is the one a later attempt of the same event may take again.

use std::sync::Arc;
use std::time::Duration;

use contracts::{
    CustomerRegistered, EmailSent, Event, OrderCancelled, OrderConfirmed, OrderShipped,
};
use eventkit::once::conflicts;
use eventkit::{
    DecodeError, Envelope, EventData, EventMetadata, FirstWrite, Handled, HandlerError, Invocation,
    Publish, Publisher, RetryPolicy, Route,
};
use tokio::time::Instant;

use crate::mailer::{Mailer, SendError, SesMailer};
use crate::rate::{SendRateLimiter, SendRateSettings};
use crate::repository::{
    email_key, DynamoEmailRepository, EmailRecord, EmailRepository, EmailStatus,
};
use crate::templates::{self, Email};

/// What the notification function takes in: the events a customer is emailed about, each
/// from the source that owns it.
pub const ROUTES: &[Route] = &[
    OrderConfirmed::ROUTE,
    OrderCancelled::ROUTE,
    OrderShipped::ROUTE,
    CustomerRegistered::ROUTE,
];

/// SES usually answers `SendEmail` within a few hundred milliseconds; this much is allowed.
const EXPECTED_SEND_TIME: Duration = Duration::from_secs(1);

/// How long before the invocation's deadline a send must start: the send itself, then 2 s
/// for the record update, the `EmailSent` publish and the batch's report to Lambda.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2).saturating_add(EXPECTED_SEND_TIME);

/// Retries of a send that SES throttled: exponential backoff with full jitter (the first
/// retry within 400 ms, doubling up to 2 s), on top of waiting for a new slot. The deadline
/// usually ends them before `max_attempts` does.
pub const THROTTLE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 10,
    base_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
};

pub struct NotificationService {
    repository: Arc<dyn EmailRepository>,
    mailer: Arc<dyn Mailer>,
    bus: Arc<dyn Publish<Event>>,
    /// Shared by all the messages this process handles at once.
    sending: SendRateLimiter,
}

impl NotificationService {
    /// Reads `EMAILS_TABLE`, `EMAIL_SENDER`, `EVENT_BUS_NAME`, and the sending rate
    /// (`EMAIL_MAX_SEND_RATE`, `EMAIL_SENDING_ENVIRONMENTS`; see [`crate::rate`]); asks SES
    /// for the account's rate (`GetSendQuota`) when none is configured.
    pub async fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let (table, sender, bus) = (
            required_env("EMAILS_TABLE")?,
            required_env("EMAIL_SENDER")?,
            required_env("EVENT_BUS_NAME")?,
        );
        let rate = SendRateSettings::from_env()?;
        let mailer = SesMailer::new(aws, sender);
        let sending = rate.limiter(&mailer).await?;
        Ok(NotificationService::new(
            Arc::new(DynamoEmailRepository::new(
                aws_sdk_dynamodb::Client::new(aws),
                table,
            )),
            Arc::new(mailer),
            Arc::new(Publisher::new(aws_sdk_eventbridge::Client::new(aws), bus)),
            sending,
        ))
    }

    pub fn new(
        repository: Arc<dyn EmailRepository>,
        mailer: Arc<dyn Mailer>,
        bus: Arc<dyn Publish<Event>>,
        sending: SendRateLimiter,
    ) -> Self {
        NotificationService {
            repository,
            mailer,
            bus,
            sending,
        }
    }

    pub async fn handle(
        &self,
        event: Envelope<Event>,
        invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let claim = Claim {
            key: email_key(&event.source, &event.metadata.event_id),
            digest: event.content_digest(),
        };
        let email = render(event.data)?;
        // On tokio's clock from here on (the limiter's, and tests' paused one).
        let latest_send = Instant::now() + invocation.remaining().saturating_sub(DEADLINE_MARGIN);
        self.deliver(&event.metadata, &claim, &email, latest_send)
            .await
    }

    /// Waits for a send slot, then claims, sends, records and announces the email of event
    /// `cause`. No send starts after `latest_send`.
    async fn deliver(
        &self,
        cause: &EventMetadata,
        claim: &Claim,
        email: &Email,
        latest_send: Instant,
    ) -> Result<Handled, HandlerError> {
        // The slot before the claim: see the module comment.
        if let Err(late) = self.sending.acquire(Instant::now(), latest_send).await {
            tracing::warn!(event_id = %cause.event_id, template = email.template.name(),
                error = %late, "no send slot left in this invocation; the message is retried");
            return Err(HandlerError::transient("email-rate-limited", late));
        }
        let record = EmailRecord {
            id: claim.key.clone(),
            digest: Some(claim.digest.clone()),
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
            if conflicts(stored.digest.as_deref(), &claim.digest) {
                return Err(HandlerError::permanent(
                    "conflicting-duplicate",
                    format!(
                        "email record {} belongs to another event with the same id (content \
                         digest {} here, {} recorded): nothing sent",
                        stored.id,
                        short(&claim.digest),
                        short(stored.digest.as_deref().unwrap_or_default())
                    ),
                ));
            }
            return self.already_recorded(cause, stored).await;
        }
        let message_id = match self.send(cause, email, latest_send).await {
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
                    SendError::Throttled(_) => HandlerError::transient("email-throttled", e),
                    SendError::DailyQuotaExceeded(_) => {
                        tracing::error!(event_id = %cause.event_id, error = %e,
                            "the SES daily sending quota is used up; the message is retried");
                        HandlerError::transient("email-quota-exceeded", e)
                    }
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

    /// Sends `email`, and sends it again after each rate throttle while a backoff and a new
    /// slot still fit before `latest_send`: a throttled mail was not sent (see the module
    /// comment). Returns the last error when no retry fits.
    async fn send(
        &self,
        cause: &EventMetadata,
        email: &Email,
        latest_send: Instant,
    ) -> Result<String, SendError> {
        let mut attempt = 0;
        loop {
            let throttled = match self.mailer.send(email).await {
                Err(SendError::Throttled(text)) => text,
                other => return other,
            };
            attempt += 1;
            let retry = if THROTTLE_RETRY.allows_another(attempt) {
                let backoff = THROTTLE_RETRY.delay(attempt);
                self.sending
                    .reserve(Instant::now() + backoff, latest_send)
                    .map_err(|late| late.to_string())
            } else {
                Err(format!("{attempt} attempts"))
            };
            match retry {
                Ok(slot) => {
                    tracing::warn!(event_id = %cause.event_id, attempt, error = %throttled,
                        retry_in_ms = slot.saturating_duration_since(Instant::now()).as_millis(),
                        "SES throttled the send (nothing was sent); sending again");
                    tokio::time::sleep_until(slot).await;
                }
                Err(why) => {
                    tracing::warn!(event_id = %cause.event_id, attempt, error = %throttled,
                        gave_up_because = %why,
                        "SES throttled the send (nothing was sent); no retry fits in this \
                         invocation");
                    return Err(SendError::Throttled(throttled));
                }
            }
        }
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

/// Who claims an email: the event's key in the emails table and its content digest.
struct Claim {
    key: String,
    digest: String,
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
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
    const SECOND: Duration = Duration::from_secs(1);

    struct World {
        emails: Arc<MemoryEmails>,
        mailer: Arc<MemoryMailer>,
        bus: Arc<MemoryBus<Event>>,
        service: Arc<NotificationService>,
    }

    /// A world whose sending rate never makes a test wait.
    fn world() -> World {
        world_sending_at(1000.0)
    }

    /// A world that sends at most `per_second` emails a second.
    fn world_sending_at(per_second: f64) -> World {
        let emails = Arc::new(MemoryEmails::default());
        let mailer = Arc::new(MemoryMailer::default());
        let bus = MemoryBus::new();
        let service = Arc::new(NotificationService::new(
            emails.clone(),
            mailer.clone(),
            bus.clone(),
            SendRateLimiter::new(per_second).unwrap(),
        ));
        World {
            emails,
            mailer,
            bus,
            service,
        }
    }

    fn rate_throttle() -> SendError {
        SendError::Throttled("Throttling: Maximum sending rate exceeded.".into())
    }

    impl World {
        async fn handle(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
            self.service.handle(event.clone(), invocation()).await
        }

        async fn handle_with(
            &self,
            event: &Envelope<Event>,
            remaining: Duration,
        ) -> Result<Handled, HandlerError> {
            let invocation = Invocation::with_remaining(remaining);
            self.service.handle(event.clone(), invocation).await
        }

        /// Handles `events` all at once, as the batch processor does, each in an invocation
        /// with `remaining` time left; the results in the order of `events`.
        async fn handle_at_once(
            &self,
            events: &[Envelope<Event>],
            remaining: Duration,
        ) -> Vec<Result<Handled, HandlerError>> {
            let mut running = tokio::task::JoinSet::new();
            for (index, event) in events.iter().enumerate() {
                let (service, event) = (self.service.clone(), event.clone());
                let invocation = Invocation::with_remaining(remaining);
                running.spawn(async move { (index, service.handle(event, invocation).await) });
            }
            let mut results = running.join_all().await;
            results.sort_by_key(|(index, _)| *index);
            results.into_iter().map(|(_, result)| result).collect()
        }

        fn subjects_sent(&self) -> Vec<String> {
            self.mailer.sent().into_iter().map(|e| e.subject).collect()
        }

        fn record(&self, cause: &Envelope<Event>) -> Option<EmailRecord> {
            self.emails
                .table
                .get(&email_key(&cause.source, &cause.metadata.event_id))
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
            let id = &email_key(&cause.source, &cause.metadata.event_id);
            self.emails.table.put(
                id,
                EmailRecord {
                    id: id.clone(),
                    digest: None,
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
        w.mailer.fail_with([SendError::NotSent(
            "ServiceUnavailable: try again later".into(),
        )]);

        let err = w.handle(&cause).await.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "email-not-sent");
        let failed = w.record(&cause).unwrap();
        assert_eq!(failed.status, EmailStatus::Failed);
        assert_eq!(
            failed.last_error.as_deref(),
            Some("email not sent: ServiceUnavailable: try again later")
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

    #[tokio::test(start_paused = true)]
    async fn a_throttled_send_is_retried_within_the_invocation_and_sent_once() {
        let w = world_sending_at(1.0);
        let cause = shipped();
        w.mailer
            .fail_with([rate_throttle(), rate_throttle(), rate_throttle()]);
        let start = Instant::now();

        let handled = w.handle(&cause).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        assert_eq!(w.mailer.attempts(), 4, "three throttled, the fourth sent");
        assert_eq!(w.subjects_sent(), vec!["Your order ord-3 has shipped"]);
        let record = w.record(&cause).unwrap();
        assert_eq!(
            (record.status, record.message_id.as_deref()),
            (EmailStatus::Sent, Some("ses-1"))
        );
        assert_eq!(
            w.bus.events(),
            vec![announced(
                &cause,
                "order-shipped",
                "Your order ord-3 has shipped"
            )]
        );
        // Each retry took a new slot of the 1/s limiter.
        assert!(Instant::now() - start >= 3 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_throttled_until_the_deadline_gives_up_in_time_and_is_sent_once_later() {
        let w = world();
        let cause = confirmed();
        w.mailer
            .fail_with(std::iter::repeat_with(rate_throttle).take(1000));
        let start = Instant::now();
        let remaining = 10 * SECOND;

        let err = w.handle_with(&cause, remaining).await.unwrap_err();

        assert!(!err.is_permanent());
        assert_eq!(err.reason, "email-throttled");
        assert!(w.mailer.attempts() > 1, "retried within the invocation");
        assert!(
            Instant::now() - start <= remaining - DEADLINE_MARGIN,
            "no send after the deadline less the margin: {:?}",
            Instant::now() - start
        );
        assert!(w.mailer.sent().is_empty());
        assert!(w.bus.events().is_empty());
        let failed = w.record(&cause).unwrap();
        assert_eq!(failed.status, EmailStatus::Failed, "claimable again");
        assert_eq!(
            failed.last_error.as_deref(),
            Some("email throttled: Throttling: Maximum sending rate exceeded.")
        );

        // SES takes mail again; SQS redelivers.
        w.mailer.recover();
        let redelivered = w.handle(&cause).await.unwrap();

        assert_eq!(redelivered, Handled::Processed);
        assert_eq!(w.mailer.sent().len(), 1, "one email");
        assert_eq!(w.status(&cause), Some(EmailStatus::Sent));
        assert_eq!(w.bus.events().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_quota_is_left_to_the_queue_and_not_retried_in_the_invocation() {
        let w = world();
        let cause = registered();
        w.mailer.fail_with([SendError::DailyQuotaExceeded(
            "Throttling: Daily message quota exceeded.".into(),
        )]);

        let err = w.handle(&cause).await.unwrap_err();

        assert!(!err.is_permanent());
        assert_eq!(err.reason, "email-quota-exceeded");
        assert_eq!(w.mailer.attempts(), 1, "no retry within the invocation");
        assert_eq!(
            w.status(&cause),
            Some(EmailStatus::Failed),
            "claimable again"
        );
        assert!(w.bus.events().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_without_a_send_slot_in_its_invocation_claims_nothing() {
        let w = world_sending_at(0.5);
        let (first, second) = (shipped(), cancelled());
        w.handle(&first).await.unwrap();
        let start = Instant::now();

        // The next slot is 2 s away; 4 s left less the 3 s margin leaves 1 s.
        let err = w.handle_with(&second, 4 * SECOND).await.unwrap_err();

        assert!(!err.is_permanent());
        assert_eq!(err.reason, "email-rate-limited");
        assert_eq!(Instant::now(), start, "gave up without waiting");
        assert_eq!(w.record(&second), None, "nothing claimed");
        assert_eq!(w.mailer.attempts(), 1);

        let redelivered = w.handle(&second).await.unwrap();

        assert_eq!(redelivered, Handled::Processed);
        assert_eq!(
            w.subjects_sent(),
            vec![
                "Your order ord-3 has shipped",
                "Your order ord-2 was cancelled"
            ]
        );
    }

    /// Ten different customers' welcome emails.
    fn ten_registrations() -> Vec<Envelope<Event>> {
        (0..10)
            .map(|n| {
                event(CustomerRegistered {
                    customer_id: format!("cus-{n}"),
                    email: ADA.into(),
                    name: format!("Customer {n}"),
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_sent_at_once_goes_out_at_the_process_rate() {
        // 1/s for the account over 2 environments.
        let w = world_sending_at(0.5);
        let events = ten_registrations();

        let results = w.handle_at_once(&events, 30 * SECOND).await;

        assert!(
            results.iter().all(|r| matches!(r, Ok(Handled::Processed))),
            "{results:?}"
        );
        let times = w.mailer.send_times();
        assert_eq!(times.len(), 10);
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= 2 * SECOND, "{:?}", pair[1] - pair[0]);
        }
        assert!(times[9] - times[0] < 18 * SECOND + SECOND / 10);
        assert_eq!(w.bus.events().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn what_does_not_fit_in_the_invocation_is_left_unclaimed_for_the_next() {
        let w = world_sending_at(0.5);
        let events = ten_registrations();

        // 10 s (the function's timeout) less the 3 s margin: slots at 0, 2, 4 and 6 s.
        let results = w.handle_at_once(&events, 10 * SECOND).await;

        let sent = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(sent, 4);
        assert_eq!(w.mailer.sent().len(), 4);
        for (event, result) in events.iter().zip(&results) {
            match result {
                Ok(handled) => assert_eq!(handled, &Handled::Processed),
                Err(e) => {
                    assert_eq!(e.reason, "email-rate-limited");
                    assert!(!e.is_permanent());
                    assert_eq!(w.record(event), None, "left unclaimed");
                }
            }
        }
    }

    #[tokio::test]
    async fn another_event_reusing_an_id_gets_no_email_and_is_refused() {
        let w = world();
        let first = confirmed();
        w.handle(&first).await.unwrap();

        // the same source and event id, other content: another customer's address
        let mut reused = confirmed();
        reused.metadata = first.metadata.clone();
        if let Event::OrderConfirmed(order) = &mut reused.data {
            order.customer_email = "mallory@example.com".into();
        }
        let err = w.handle(&reused).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "conflicting-duplicate");
        assert_eq!(w.subjects_sent().len(), 1, "nothing more was sent");
        assert_eq!(w.bus.events().len(), 1);
    }

    #[tokio::test]
    async fn another_event_reusing_an_id_cannot_take_over_a_failed_email() {
        // given a confirmation whose send SES refused (FAILED: free for its own retry)
        let w = world();
        let first = confirmed();
        w.mailer
            .fail_with([SendError::Rejected("MessageRejected: not verified".into())]);
        w.handle(&first).await.unwrap_err();
        w.mailer.recover();

        // when another confirmation comes under its source and id
        let mut reused = confirmed();
        reused.metadata = first.metadata.clone();
        if let Event::OrderConfirmed(order) = &mut reused.data {
            order.customer_email = "mallory@example.com".into();
        }
        let err = w.handle(&reused).await.unwrap_err();

        // then it is refused, nothing is sent, and the record is still the first one's
        assert!(err.is_permanent());
        assert_eq!(err.reason, "conflicting-duplicate");
        assert!(w.mailer.sent().is_empty());
        let record = w.record(&first).unwrap();
        assert_eq!(record.digest, Some(first.content_digest()));
        assert_eq!(record.to, ADA);

        // and the first one's redelivery still gets its email
        assert_eq!(w.handle(&first).await.unwrap(), Handled::Processed);
        assert_eq!(w.mailer.sent().len(), 1);
    }

    #[tokio::test]
    async fn the_same_id_from_another_source_is_its_own_email() {
        let w = world();
        let first = confirmed();
        w.handle(&first).await.unwrap();

        // the shop front sends a sign-up (its own type) with the id of the saga's
        // confirmation, computed in advance: it must not take or block the saga's email
        let mut sign_up = registered();
        sign_up.metadata = first.metadata.clone();
        assert_ne!(sign_up.source, first.source);
        w.handle(&sign_up).await.unwrap();

        assert_eq!(w.subjects_sent().len(), 2);
        assert_eq!(w.record(&first).map(|r| r.status), Some(EmailStatus::Sent));
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
