//! Sending mail. The port says not only whether a send failed but whether the mail may
//! have gone out anyway, because that decides whether a retry is allowed (see the service).

use async_trait::async_trait;
use aws_sdk_ses::config::retry::RetryConfig;
use aws_sdk_ses::error::SdkError;
use aws_sdk_ses::operation::send_email::SendEmailError;
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use eventkit::error::sdk_error_text;

use crate::templates::Email;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Not sent, and sending it again cannot help (e.g. the sender is not verified).
    #[error("email rejected: {0}")]
    Rejected(String),
    /// Not sent; a later attempt may succeed (throttling, sending paused, service error).
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

fn classify<R: std::fmt::Debug>(err: SdkError<SendEmailError, R>) -> SendError {
    let text = sdk_error_text(&err);
    match &err {
        // An error answer from SES: the mail was not accepted.
        SdkError::ServiceError(service) => match service.err() {
            SendEmailError::MessageRejected(_)
            | SendEmailError::MailFromDomainNotVerifiedException(_)
            | SendEmailError::ConfigurationSetDoesNotExistException(_) => SendError::Rejected(text),
            _ => SendError::NotSent(text),
        },
        // The request was never built, so never sent.
        SdkError::ConstructionFailure(_) => SendError::Rejected(text),
        _ => SendError::Unknown(text),
    }
}

/// A mailer in memory: answers the failures it is given, in order, then sends, numbering
/// the provider message ids `ses-1`, `ses-2`, ...
#[cfg(test)]
pub(crate) mod memory {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryMailer {
        failures: Mutex<VecDeque<SendError>>,
        sent: Mutex<Vec<Email>>,
    }

    impl MemoryMailer {
        /// The next sends fail with these errors, one each, in order.
        pub fn fail_with(&self, errors: impl IntoIterator<Item = SendError>) {
            self.failures.lock().unwrap().extend(errors);
        }

        /// Every email sent so far, in order.
        pub fn sent(&self) -> Vec<Email> {
            self.sent.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Mailer for MemoryMailer {
        async fn send(&self, email: &Email) -> Result<String, SendError> {
            if let Some(e) = self.failures.lock().unwrap().pop_front() {
                return Err(e);
            }
            let mut sent = self.sent.lock().unwrap();
            sent.push(email.clone());
            Ok(format!("ses-{}", sent.len()))
        }
    }
}
