//! Sending mail. The port says not only whether a send failed but whether the mail may
//! have gone out anyway, because that decides whether a retry is allowed (see the service).
//! A throttled send is told apart from other refusals, because it is the one worth retrying
//! within the invocation.

use async_trait::async_trait;
use aws_sdk_ses::config::retry::RetryConfig;
use aws_sdk_ses::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ses::operation::send_email::SendEmailError;
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use eventkit::error::sdk_error_text;

use crate::rate::SendQuota;
use crate::templates::Email;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Not sent, and sending it again cannot help (e.g. the sender is not verified).
    #[error("email rejected: {0}")]
    Rejected(String),
    /// Not sent: over the account's maximum send rate. Retrying soon is likely to succeed.
    #[error("email throttled: {0}")]
    Throttled(String),
    /// Not sent: the account's 24-hour sending quota is used up. Retrying within seconds
    /// cannot help; the queue retries later.
    #[error("email not sent, daily quota exceeded: {0}")]
    DailyQuotaExceeded(String),
    /// Not sent; a later attempt may succeed (sending paused, service error).
    #[error("email not sent: {0}")]
    NotSent(String),
    /// The request may or may not have reached the provider (timeout, connection lost).
    #[error("email may or may not have been sent: {0}")]
    Unknown(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `email`; returns the provider's message id.
    async fn send(&self, email: &Email) -> Result<String, SendError>;
}

/// SES (API v1 `SendEmail`, which LocalStack emulates).
pub struct SesMailer {
    client: aws_sdk_ses::Client,
    sender: String,
}

impl SesMailer {
    /// The client makes one attempt per send: the SDK's own retries would resend after a
    /// timeout, when the first request may already have been delivered. Retries happen one
    /// level up, only when the mail is known not to have gone out.
    pub fn new(aws: &aws_config::SdkConfig, sender: impl Into<String>) -> Self {
        let config = aws_sdk_ses::config::Builder::from(aws)
            .retry_config(RetryConfig::disabled())
            .build();
        SesMailer {
            client: aws_sdk_ses::Client::from_conf(config),
            sender: sender.into(),
        }
    }

    pub fn sender(&self) -> &str {
        &self.sender
    }
}

fn content(data: &str) -> Result<Content, SendError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| SendError::Rejected(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<String, SendError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let out = self
            .client
            .send_email()
            .source(&self.sender)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .message(message)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.message_id().to_string())
    }
}

/// The account's sending limits. Reads them through the mailer's client (one connection
/// pool, warm for the first send), but with the SDK's standard retries: unlike a send, a
/// read is safe to repeat.
#[async_trait]
impl SendQuota for SesMailer {
    async fn max_send_rate(&self) -> Result<f64, String> {
        let retrying = aws_sdk_ses::config::Builder::default()
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        self.client
            .get_send_quota()
            .customize()
            .config_override(retrying)
            .send()
            .await
            .map(|quota| quota.max_send_rate())
            .map_err(|e| sdk_error_text(&e))
    }
}

fn classify<R: std::fmt::Debug>(err: SdkError<SendEmailError, R>) -> SendError {
    let text = sdk_error_text(&err);
    match &err {
        // An error answer from SES: the mail was not accepted.
        SdkError::ServiceError(service) => match service.err() {
            SendEmailError::MessageRejected(_)
            | SendEmailError::MailFromDomainNotVerifiedException(_)
            | SendEmailError::ConfigurationSetDoesNotExistException(_) => SendError::Rejected(text),
            other if is_throttling(other.code()) => {
                if other.message().is_some_and(is_daily_quota) {
                    SendError::DailyQuotaExceeded(text)
                } else {
                    // "Maximum sending rate exceeded.", and any other throttle: not sent,
                    // so a retry within the invocation (bounded by its deadline) is safe.
                    SendError::Throttled(text)
                }
            }
            _ => SendError::NotSent(text),
        },
        // The request was never built, so never sent.
        SdkError::ConstructionFailure(_) => SendError::Rejected(text),
        _ => SendError::Unknown(text),
    }
}

/// Over a sending limit, SES's API answers with a throttling error whose message says which
/// limit: "Maximum sending rate exceeded." or "Daily message quota exceeded." ("Errors
/// related to the sending quotas for your Amazon SES account",
/// https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html). The query
/// API (SES v1, which the SDK speaks) names the error `Throttling` ("How to handle a
/// 'Throttling - Maximum sending rate exceeded' error",
/// https://aws.amazon.com/blogs/ses/how-to-handle-a-throttling-maximum-sending-rate-exceeded-error);
/// the guide calls it `ThrottlingException`, so both codes are taken.
fn is_throttling(code: Option<&str>) -> bool {
    matches!(code, Some("Throttling" | "ThrottlingException"))
}

fn is_daily_quota(message: &str) -> bool {
    message.to_ascii_lowercase().contains("daily message quota")
}

/// A mailer in memory: answers the failures it is given, in order, then sends, numbering
/// the provider message ids `ses-1`, `ses-2`, ...
#[cfg(any(test, feature = "testing"))]
pub mod memory {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::time::Instant;

    #[derive(Default)]
    pub struct MemoryMailer {
        failures: Mutex<VecDeque<SendError>>,
        attempts: Mutex<usize>,
        sent: Mutex<Vec<(Instant, Email)>>,
    }

    impl MemoryMailer {
        /// The next sends fail with these errors, one each, in order.
        pub fn fail_with(&self, errors: impl IntoIterator<Item = SendError>) {
            self.failures.lock().unwrap().extend(errors);
        }

        /// The failures not yet answered are forgotten: sends succeed from now on.
        pub fn recover(&self) {
            self.failures.lock().unwrap().clear();
        }

        /// How many sends were asked for, failed or not.
        pub fn attempts(&self) -> usize {
            *self.attempts.lock().unwrap()
        }

        /// Every email sent so far, in order.
        pub fn sent(&self) -> Vec<Email> {
            let sent = self.sent.lock().unwrap();
            sent.iter().map(|(_, email)| email.clone()).collect()
        }

        /// When each email was sent (tokio's clock), in order.
        pub fn send_times(&self) -> Vec<Instant> {
            let sent = self.sent.lock().unwrap();
            sent.iter().map(|(at, _)| *at).collect()
        }
    }

    #[async_trait]
    impl Mailer for MemoryMailer {
        async fn send(&self, email: &Email) -> Result<String, SendError> {
            *self.attempts.lock().unwrap() += 1;
            if let Some(e) = self.failures.lock().unwrap().pop_front() {
                return Err(e);
            }
            let mut sent = self.sent.lock().unwrap();
            sent.push((Instant::now(), email.clone()));
            Ok(format!("ses-{}", sent.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ses::error::ErrorMetadata;
    use aws_sdk_ses::types::error::MessageRejected;

    /// SES's error answer with `code` and `message`, as the SDK hands it over.
    fn answer(code: &str, message: &str) -> SdkError<SendEmailError, ()> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        SdkError::service_error(SendEmailError::generic(meta), ())
    }

    #[test]
    fn a_rate_throttle_is_told_apart_from_the_daily_quota() {
        let rate = classify(answer("Throttling", "Maximum sending rate exceeded."));
        assert!(
            matches!(&rate, SendError::Throttled(text)
                if text == "Throttling: Maximum sending rate exceeded."),
            "{rate:?}"
        );
        let daily = classify(answer("Throttling", "Daily message quota exceeded."));
        assert!(
            matches!(daily, SendError::DailyQuotaExceeded(_)),
            "{daily:?}"
        );
        let named_as_in_the_guide = classify(answer(
            "ThrottlingException",
            "Maximum sending rate exceeded.",
        ));
        assert!(
            matches!(named_as_in_the_guide, SendError::Throttled(_)),
            "{named_as_in_the_guide:?}"
        );
    }

    #[test]
    fn other_answers_keep_their_meaning() {
        let paused = classify(answer("AccountSendingPausedException", "paused"));
        assert!(matches!(paused, SendError::NotSent(_)), "{paused:?}");
        let rejected = classify(SdkError::service_error(
            SendEmailError::MessageRejected(
                MessageRejected::builder()
                    .message("Email address is not verified.")
                    .build(),
            ),
            (),
        ));
        assert!(matches!(rejected, SendError::Rejected(_)), "{rejected:?}");
        let timeout = classify::<()>(SdkError::timeout_error("operation timed out"));
        assert!(matches!(timeout, SendError::Unknown(_)), "{timeout:?}");
    }
}
