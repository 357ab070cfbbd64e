//! The emails table: one item per event that asked for an email (`id` = [`email_key`] of
//! its source and event id), recording whether its email is being sent, was sent, or failed
//! to send, and the event's content digest.
//!
//! The key holds the source because an event id is its producer's: the shop front could
//! reuse, or compute in advance, an id the saga's derived ids use, and an id alone would let
//! its event take the saga's email slot. The digest tells a redelivery (same content: at
//! most one email) from a different event reusing the id (a conflicting duplicate, refused).

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use eventkit::dynamo::attr::s;
use eventkit::dynamo::put_if;
use eventkit::{DynamoError, FirstWrite, HandlerError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EmailStatus {
    /// Recorded before the send; stays so if the outcome of the send is unknown.
    Sending,
    Sent,
    /// Known not to have been sent: a later attempt may send it.
    Failed,
}

impl EmailStatus {
    /// The stored value, as serde writes it (a test keeps the two in step), for the
    /// expressions that name a status.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Sending => "SENDING",
            EmailStatus::Sent => "SENT",
            EmailStatus::Failed => "FAILED",
        }
    }

    fn attribute(self) -> AttributeValue {
        s(self.as_str())
    }
}

/// `<source>#<eventId>`: neither part holds `#` (sources are fixed names, ids cannot), so
/// no two events share a key.
pub fn email_key(source: &str, event_id: &str) -> String {
    format!("{source}#{event_id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailRecord {
    /// [`email_key`] of the event the email is about.
    pub id: String,
    /// The event's content digest (`Envelope::content_digest`); absent in records written
    /// before digests were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub status: EmailStatus,
    pub template: String,
    pub to: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub correlation_id: String,
    pub created_at: String,
    /// The provider's message id, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The record is no longer SENDING: a newer attempt moved it on, and a late, slow one
    /// must not overwrite what it recorded.
    #[error("emails table: record {0} is not SENDING")]
    NotSending(String),
    #[error("emails table: {0}")]
    Dynamo(#[from] DynamoError),
}

impl From<RepositoryError> for HandlerError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::Dynamo(dynamo) if dynamo.is_permanent() => dynamo.into(),
            RepositoryError::Dynamo(_) | RepositoryError::NotSending(_) => {
                HandlerError::transient("emails-table", e)
            }
        }
    }
}

/// The emails table, as the handler needs it.
#[async_trait]
pub trait EmailRepository: Send + Sync {
    /// Stores `record` (status SENDING) unless its key already has a record that is not
    /// FAILED, or a FAILED one of another event (another digest: a failed email is retaken
    /// only by the event it belongs to, never by one reusing its id); that record is
    /// returned instead.
    async fn claim(&self, record: &EmailRecord)
        -> Result<FirstWrite<EmailRecord>, RepositoryError>;
    /// SENDING -> SENT with the provider's message id.
    async fn mark_sent(&self, id: &str, message_id: &str) -> Result<(), RepositoryError>;
    /// SENDING -> FAILED, freeing the event for a later attempt.
    async fn mark_failed(&self, id: &str, error: &str) -> Result<(), RepositoryError>;
}

/// The DynamoDB adapter.
pub struct DynamoEmailRepository {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoEmailRepository {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoEmailRepository {
            client,
            table: table.into(),
        }
    }

    /// Moves a SENDING record on; the condition keeps a late, slow attempt from
    /// overwriting what a newer one recorded.
    async fn finish(
        &self,
        id: &str,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), RepositoryError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression(update)
            .condition_expression("#status = :sending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", EmailStatus::Sending.attribute());
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(RepositoryError::NotSending(id.to_string()))
                }
                _ => Err(DynamoError::from_sdk(&e).into()),
            },
        }
    }
}

fn now() -> String {
    eventkit::envelope::format_time(&chrono::Utc::now())
}

#[async_trait]
impl EmailRepository for DynamoEmailRepository {
    async fn claim(
        &self,
        record: &EmailRecord,
    ) -> Result<FirstWrite<EmailRecord>, RepositoryError> {
        // Records from before digests were kept have none: those are retaken as before.
        let condition = "attribute_not_exists(id) OR (#status = :failed AND \
                         (attribute_not_exists(digest) OR digest = :digest))";
        let names = [("#status", "status")];
        let values = [
            (":failed", EmailStatus::Failed.attribute()),
            (":digest", s(record.digest.as_deref().unwrap_or_default())),
        ];
        Ok(put_if(
            &self.client,
            &self.table,
            "id",
            record,
            condition,
            &names,
            &values,
        )
        .await?)
    }

    async fn mark_sent(&self, id: &str, message_id: &str) -> Result<(), RepositoryError> {
        self.finish(
            id,
            "SET #status = :sent, messageId = :message_id, sentAt = :now REMOVE lastError",
            vec![
                (":sent", EmailStatus::Sent.attribute()),
                (":message_id", s(message_id)),
                (":now", s(now())),
            ],
        )
        .await
    }

    async fn mark_failed(&self, id: &str, error: &str) -> Result<(), RepositoryError> {
        self.finish(
            id,
            "SET #status = :failed, lastError = :error",
            vec![
                (":failed", EmailStatus::Failed.attribute()),
                (":error", s(error)),
            ],
        )
        .await
    }
}

/// The emails table in memory, with the DynamoDB adapter's conditions.
#[cfg(any(test, feature = "testing"))]
pub mod memory {
    use super::*;
    use eventkit::testing::MemoryTable;

    #[derive(Default)]
    pub struct MemoryEmails {
        pub table: MemoryTable<EmailRecord>,
    }

    impl MemoryEmails {
        fn finish(
            &self,
            id: &str,
            change: impl FnOnce(&mut EmailRecord),
        ) -> Result<(), RepositoryError> {
            self.table
                .update_if(id, |record| {
                    let sending = record.status == EmailStatus::Sending;
                    if sending {
                        change(record);
                    }
                    sending
                })
                .map(drop)
                .ok_or_else(|| RepositoryError::NotSending(id.to_string()))
        }
    }

    #[async_trait]
    impl EmailRepository for MemoryEmails {
        async fn claim(
            &self,
            record: &EmailRecord,
        ) -> Result<FirstWrite<EmailRecord>, RepositoryError> {
            // `attribute_not_exists(id) OR (status = FAILED AND the same digest)`, each half
            // checked atomically.
            let FirstWrite::Existing(stored) = self.table.first_write(&record.id, record.clone())
            else {
                return Ok(FirstWrite::Written);
            };
            let retaken = self.table.update_if(&record.id, |stored| {
                let retakable = stored.status == EmailStatus::Failed
                    && (stored.digest.is_none() || stored.digest == record.digest);
                if retakable {
                    *stored = record.clone();
                }
                retakable
            });
            Ok(match retaken {
                Some(_) => FirstWrite::Written,
                None => FirstWrite::Existing(self.table.get(&record.id).unwrap_or(stored)),
            })
        }

        async fn mark_sent(&self, id: &str, message_id: &str) -> Result<(), RepositoryError> {
            self.finish(id, |record| {
                record.status = EmailStatus::Sent;
                record.message_id = Some(message_id.to_string());
                record.sent_at = Some(now());
                record.last_error = None;
            })
        }

        async fn mark_failed(&self, id: &str, error: &str) -> Result<(), RepositoryError> {
            self.finish(id, |record| {
                record.status = EmailStatus::Failed;
                record.last_error = Some(error.to_string());
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_expressions_are_the_stored_ones() {
        for status in [EmailStatus::Sending, EmailStatus::Sent, EmailStatus::Failed] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
