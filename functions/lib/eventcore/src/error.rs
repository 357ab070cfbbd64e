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
    /// A known type this function has no route for: the rule and the code disagree.
    #[error("{detail_type} is not routed to this function")]
    NotRouted { detail_type: String },
    /// The type is known but came from a source that does not own it: a forgery or a
    /// misconfigured producer. Never acted on.
    #[error("{detail_type} is owned by `{owner}`, not by `{sent_by}`")]
    UntrustedSource {
        detail_type: String,
        sent_by: String,
        owner: String,
    },
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
    /// The answer of a handler's catch-all arm: `event` is of a type this function has no
    /// route for (admission keeps such events out; this is the arm the compiler asks for).
    pub fn not_routed(event: &impl crate::envelope::Payload) -> Self {
        DecodeError::NotRouted {
            detail_type: event.detail_type().to_string(),
        }
    }

    /// A short machine-readable reason, used as the DLQ `failure-reason` attribute.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::EmptyBody => "empty-body",
            DecodeError::TooLarge { .. } => "too-large",
            DecodeError::NotJson(_) => "not-json",
            DecodeError::NotAnEvent { .. } => "not-an-event",
            DecodeError::InvalidMetadata { .. } => "invalid-metadata",
            DecodeError::UnknownType(_) => "unknown-type",
            DecodeError::NotRouted { .. } => "not-routed",
            DecodeError::UntrustedSource { .. } => "untrusted-source",
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
#[derive(Debug, Clone, Error)]
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
