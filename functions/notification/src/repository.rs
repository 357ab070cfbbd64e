//! The emails table: one item per event that asked for an email (`id` = the event id),
//! recording whether its email is being sent, was sent, or failed to send.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use eventkit::dynamo::{put_if, PutIf};
use eventkit::error::sdk_error_text;
use eventkit::HandlerError;
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailRecord {
    /// The id of the event the email is about.
    pub id: String,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The record is ours: go ahead and send.
    Claimed,
    /// An earlier attempt recorded this event (SENDING or SENT): the stored record.
    Existing(Box<EmailRecord>),
}

#[derive(Debug, thiserror::Error)]
#[error("emails table: {0}")]
pub struct RepositoryError(String);

impl From<RepositoryError> for HandlerError {
    fn from(e: RepositoryError) -> Self {
        HandlerError::transient("emails-table", e)
    }
}

#[async_trait]
pub trait EmailRepository: Send + Sync {
    /// Stores `record` (status SENDING) unless the event already has a record that is not
    /// FAILED.
    async fn claim(&self, record: &EmailRecord) -> Result<Claimed, RepositoryError>;
    /// SENDING -> SENT with the provider's message id.
    async fn mark_sent(&self, id: &str, message_id: &str) -> Result<(), RepositoryError>;
    /// SENDING -> FAILED, freeing the event for a later attempt.
    async fn mark_failed(&self, id: &str, error: &str) -> Result<(), RepositoryError>;
}

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
            .expression_attribute_values(":sending", status(EmailStatus::Sending));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        request
            .send()
            .await
            .map(drop)
            .map_err(|e| RepositoryError(sdk_error_text(&e)))
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn status(v: EmailStatus) -> AttributeValue {
    // The serde names, written by hand: three constants do not need a serializer.
    s(match v {
        EmailStatus::Sending => "SENDING",
        EmailStatus::Sent => "SENT",
        EmailStatus::Failed => "FAILED",
    })
}

fn now() -> AttributeValue {
    s(&eventkit::envelope::format_time(&chrono::Utc::now()))
}

#[async_trait]
impl EmailRepository for DynamoEmailRepository {
    async fn claim(&self, record: &EmailRecord) -> Result<Claimed, RepositoryError> {
        let condition = "attribute_not_exists(id) OR #status = :failed";
        let names = [("#status", "status")];
        let values = [(":failed", status(EmailStatus::Failed))];
        match put_if(
            &self.client,
            &self.table,
            "id",
            record,
            condition,
            &names,
            &values,
        )
        .await
        {
            Ok(PutIf::Written) => Ok(Claimed::Claimed),
            Ok(PutIf::Existing(stored)) => Ok(Claimed::Existing(Box::new(stored))),
            Err(e) => Err(RepositoryError(e)),
        }
    }

    async fn mark_sent(&self, id: &str, message_id: &str) -> Result<(), RepositoryError> {
        self.finish(
            id,
            "SET #status = :sent, messageId = :message_id, sentAt = :now REMOVE lastError",
            vec![
                (":sent", status(EmailStatus::Sent)),
                (":message_id", s(message_id)),
                (":now", now()),
            ],
        )
        .await
    }

    async fn mark_failed(&self, id: &str, error: &str) -> Result<(), RepositoryError> {
        self.finish(
            id,
            "SET #status = :failed, lastError = :error",
            vec![
                (":failed", status(EmailStatus::Failed)),
                (":error", s(error)),
            ],
        )
        .await
    }
}
