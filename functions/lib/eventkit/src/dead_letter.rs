//! Moving a permanently failed message to its dead-letter queue at once, with the reason
//! attached, instead of letting it burn `maxReceiveCount` retries first.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::MessageAttributeValue;
use tokio::sync::Mutex;

use crate::error::{sdk_error_text, HandlerError};

/// SQS message attribute values are counted against the 256 KiB message size; keep the
/// error text short.
const MAX_ERROR_TEXT: usize = 2048;

/// The message attribute that says whether a dead letter failed for good.
pub const FAILURE_KIND_ATTRIBUTE: &str = "FailureKind";
/// Its value for messages eventkit dead-lettered at once.
pub const PERMANENT: &str = "permanent";
/// Its value for failures that may pass on a retry.
pub const TRANSIENT: &str = "transient";
/// The attribute with the failure's short reason code.
pub const FAILURE_REASON_ATTRIBUTE: &str = "FailureReason";

/// A message that failed for good, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    pub source_queue_arn: Option<String>,
    pub message_group_id: Option<String>,
    pub receive_count: Option<String>,
    pub reason: String,
    pub error: String,
}

impl DeadLetter {
    pub fn new(message: &SqsMessage, error: &HandlerError) -> Self {
        let mut text = error.message.clone();
        if text.len() > MAX_ERROR_TEXT {
            let mut cut = MAX_ERROR_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        DeadLetter {
            message_id: message.message_id.clone().unwrap_or_default(),
            body: message.body.clone().unwrap_or_default(),
            source_queue_arn: message.event_source_arn.clone(),
            message_group_id: message.attributes.get("MessageGroupId").cloned(),
            receive_count: message.attributes.get("ApproximateReceiveCount").cloned(),
            reason: error.reason.clone(),
            error: text,
        }
    }
}

/// Where dead letters go.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    async fn send(&self, letter: &DeadLetter) -> Result<(), String>;
}

/// The SQS dead-letter queue of the queue a message came from: either configured (its URL)
/// or found from the source queue's redrive policy (looked up once per source queue).
pub struct SqsDeadLetterQueue {
    client: aws_sdk_sqs::Client,
    configured_url: Option<String>,
    resolved: Mutex<HashMap<String, String>>,
}

impl SqsDeadLetterQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: Option<String>) -> Self {
        SqsDeadLetterQueue {
            client,
            configured_url: queue_url.filter(|u| !u.is_empty()),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the `DEAD_LETTER_QUEUE_URL` environment variable; without it the redrive
    /// policy of each source queue is used.
    pub fn from_env(client: aws_sdk_sqs::Client) -> Self {
        Self::new(client, std::env::var("DEAD_LETTER_QUEUE_URL").ok())
    }

    async fn url_for(&self, letter: &DeadLetter) -> Result<String, String> {
        if let Some(url) = &self.configured_url {
            return Ok(url.clone());
        }
        let source = letter
            .source_queue_arn
            .as_deref()
            .ok_or("message has no source queue ARN and no DLQ is configured")?;
        let mut cache = self.resolved.lock().await;
        if let Some(url) = cache.get(source) {
            return Ok(url.clone());
        }
        let source_url = self.url_of_arn(source).await?;
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&source_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| sdk_error_text(&e))?;
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
            .ok_or_else(|| format!("queue {source} has no redrive policy"))?;
        let policy: serde_json::Value =
            serde_json::from_str(policy).map_err(|e| format!("bad redrive policy: {e}"))?;
        let dlq_arn = policy["deadLetterTargetArn"]
            .as_str()
            .ok_or("redrive policy has no deadLetterTargetArn")?;
        let url = self.url_of_arn(dlq_arn).await?;
        cache.insert(source.to_string(), url.clone());
        Ok(url)
    }

    async fn url_of_arn(&self, arn: &str) -> Result<String, String> {
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, _, _, _, account, name] = parts.as_slice() else {
            return Err(format!("not an SQS queue ARN: {arn}"));
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| sdk_error_text(&e))?;
        out.queue_url()
            .map(str::to_string)
            .ok_or_else(|| format!("no URL for {arn}"))
    }
}

fn attr(value: &str) -> MessageAttributeValue {
    // Building a String attribute with both required fields set cannot fail.
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap_or_else(|_| unreachable!("data_type is set"))
}

#[async_trait]
impl DeadLetterSink for SqsDeadLetterQueue {
    async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        let url = self.url_for(letter).await?;
        let mut request = self
            .client
            .send_message()
            .queue_url(&url)
            .message_body(if letter.body.is_empty() {
                "(empty body)"
            } else {
                &letter.body
            })
            .message_attributes(FAILURE_REASON_ATTRIBUTE, attr(&letter.reason))
            .message_attributes("FailureMessage", attr(&letter.error))
            // Only permanent failures are dead-lettered by eventkit; transient ones reach the
            // DLQ through SQS's maxReceiveCount, with no attributes. Stated, so that
            // `orderflow dlq redrive` need not infer it.
            .message_attributes(FAILURE_KIND_ATTRIBUTE, attr(PERMANENT))
            .message_attributes("OriginalMessageId", attr(&letter.message_id));
        if let Some(source) = &letter.source_queue_arn {
            request = request.message_attributes("SourceQueueArn", attr(source));
        }
        if let Some(count) = &letter.receive_count {
            request = request.message_attributes("ReceiveCount", attr(count));
        }
        if url.ends_with(".fifo") {
            request = request
                .message_group_id(letter.message_group_id.as_deref().unwrap_or("dead-letters"))
                .message_deduplication_id(&letter.message_id);
        }
        request.send().await.map_err(|e| sdk_error_text(&e))?;
        Ok(())
    }
}
