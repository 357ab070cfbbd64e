//! Error types shared by every part of the toolkit, and the one classification that matters
//! under at-least-once delivery: is a failure permanent (retrying cannot help, send the
//! message to the DLQ now) or transient (let SQS retry it)?

use thiserror::Error;

/// Why an incoming message could not be turned into a typed event. Always permanent: the
/// same bytes will fail the same way on every retry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message body is empty")]
    EmptyBody,
    #[error("message body is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("not an EventBridge event: `{path}`: {message}")]
    NotAnEvent { path: String, message: String },
    #[error("invalid metadata: `{path}`: {message}")]
    InvalidMetadata { path: String, message: String },
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error(
        "unsupported schema version {version} of {detail_type} (this code reads up to {supported})"
    )]
    UnsupportedVersion {
        detail_type: String,
        version: u32,
        supported: u32,
    },
    #[error("invalid {detail_type}: `{path}`: {message}")]
    InvalidData {
        detail_type: String,
        path: String,
        message: String,
    },
}

impl DecodeError {
    /// A short machine-readable reason, used as the DLQ `failure-reason` attribute.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::EmptyBody => "empty-body",
            DecodeError::TooLarge { .. } => "too-large",
            DecodeError::NotJson(_) => "not-json",
            DecodeError::NotAnEvent { .. } => "not-an-event",
            DecodeError::InvalidMetadata { .. } => "invalid-metadata",
            DecodeError::UnknownType(_) => "unknown-type",
            DecodeError::UnsupportedVersion { .. } => "unsupported-version",
            DecodeError::InvalidData { .. } => "invalid-data",
        }
    }

    /// Decoding failures never heal on retry.
    pub fn is_permanent(&self) -> bool {
        true
    }
}

/// Whether retrying a failed message can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Retrying cannot help: dead-letter the message now with its reason.
    Permanent,
    /// A dependency failed or raced: report the message in `batchItemFailures`.
    Transient,
}

/// What a per-message handler returns when it fails: the kind, a short reason code and the
/// full error text (both end up as DLQ message attributes for permanent failures).
#[derive(Debug, Error)]
#[error("{reason}: {message}")]
pub struct HandlerError {
    pub kind: FailureKind,
    pub reason: String,
    pub message: String,
}

impl HandlerError {
    pub fn permanent(reason: impl Into<String>, message: impl ToString) -> Self {
        HandlerError {
            kind: FailureKind::Permanent,
            reason: reason.into(),
            message: message.to_string(),
        }
    }

    pub fn transient(reason: impl Into<String>, message: impl ToString) -> Self {
        HandlerError {
            kind: FailureKind::Transient,
            reason: reason.into(),
            message: message.to_string(),
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.kind == FailureKind::Permanent
    }
}

impl From<DecodeError> for HandlerError {
    fn from(e: DecodeError) -> Self {
        HandlerError::permanent(e.reason(), e)
    }
}

/// Renders an AWS SDK error with its service error code and message, which the default
/// `Display` ("service error") hides.
pub fn sdk_error_text<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("ServiceError"),
                e.message().unwrap_or("no message")
            )
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// Lambda reports a failed invocation with the reason as its error type.
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.reason,
            error_message: e.message,
        }
    }
}
