//! What can go wrong in a command, by where it went wrong.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// An AWS call failed (its service code and message).
    #[error("{service}: {message}")]
    Aws {
        service: &'static str,
        message: String,
    },
    #[error(transparent)]
    Dynamo(#[from] eventkit::DynamoError),
    #[error(transparent)]
    Store(#[from] eventkit::StoreError),
    #[error(transparent)]
    Publish(#[from] eventkit::PublishError),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A function answered with an error.
    #[error("{function} failed: {body}")]
    Function { function: String, body: String },
    /// A plain HTTP call (LocalStack's own endpoints) failed.
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
}

impl CliError {
    pub fn aws<E, R>(service: &'static str, err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        CliError::Aws {
            service,
            message: eventkit::error::sdk_error_text(err),
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;
