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
    /// Nothing is known about what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// Orders of a load run that were not SHIPPED or CANCELLED in time (the report, printed
    /// first, lists them).
    #[error("{unfinished} of {orders} order(s) did not finish")]
    Unfinished { unfinished: usize, orders: usize },
    /// The output could not be encoded as JSON.
    #[error("encoding the JSON output")]
    Json(#[source] serde_json::Error),
    /// The output could not be written.
    #[error("writing the output")]
    Output(#[source] std::io::Error),
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

/// What the CLI prints for a failed command: `error: <message>`, then each cause of the
/// chain on its own line. A cause whose text the line above already holds is left out: many
/// errors here (eventkit's) put their source's text in their own message.
pub fn report_lines(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut lines = vec![format!("error: {err}")];
    let mut above = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !above.contains(&text) {
            lines.push(format!("  caused by: {text}"));
        }
        above = text;
        source = cause.source();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line_then_its_causes_not_repeated() {
        let e = CliError::Output(std::io::Error::other("disk full"));
        assert_eq!(
            report_lines(&e),
            ["error: writing the output", "  caused by: disk full"]
        );
        // StoreError::Dynamo says its source's text itself: no cause line repeats it.
        let e = CliError::Store(eventkit::StoreError::Dynamo(
            eventkit::DynamoError::Unavailable("ThrottlingException: slow down".into()),
        ));
        assert_eq!(
            report_lines(&e),
            ["error: event store: DynamoDB: ThrottlingException: slow down"]
        );
        let e = CliError::NotFound("nothing found for ord-x".into());
        assert_eq!(report_lines(&e), ["error: nothing found for ord-x"]);
    }
}
