//! `orderflow dlq list | show | redrive`: the stage's dead-letter queues.
//!
//! Three kinds of message land in a DLQ here, told apart by their attributes:
//! - eventkit dead-lettered it at once: `FailureReason`, `FailureKind: permanent` (older
//!   dead letters have the reason only; eventkit never dead-letters anything else);
//! - SQS moved it after `maxReceiveCount` failed receives: no attributes at all
//!   ("Using dead-letter queues in Amazon SQS",
//!   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html):
//!   transient (it failed by being retried too often, not by being wrong);
//! - EventBridge could not deliver it to the queue: `ERROR_CODE`, `ERROR_MESSAGE`, `RULE_ARN`,
//!   `TARGET_ARN` ("Using dead-letter queues to process undelivered events in EventBridge",
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html): transient,
//!   and its body is the event, which belongs on the same source queue.
//!
//! Peeking receives with a visibility timeout of 0, so the messages stay available to
//! everyone else at once ("ReceiveMessage", VisibilityTimeout, Amazon SQS API Reference,
//! https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use eventkit::dead_letter::{
    FAILURE_KIND_ATTRIBUTE, FAILURE_REASON_ATTRIBUTE, PERMANENT, TRANSIENT,
};
use eventkit::RawEvent;
use serde::Serialize;

use crate::context::Context;
use crate::error::{CliError, Result};

pub const DLQ_SUFFIX: &str = "-dlq";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Permanent,
    Transient,
}

/// One message on a DLQ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqMessage {
    pub message_id: String,
    #[serde(skip)]
    pub receipt_handle: String,
    pub body: String,
    /// The failure's reason code: `FailureReason`, EventBridge's `ERROR_CODE`, or
    /// `max-receive-count` when SQS moved it.
    pub reason: String,
    pub kind: Kind,
    pub failure_message: String,
    /// Receives on the source queue before it was dead-lettered, as eventkit saw them.
    pub source_receive_count: Option<String>,
    /// Receives on the DLQ (peeks count too).
    pub dlq_receive_count: Option<String>,
    pub source_queue_arn: Option<String>,
}

/// The reason SQS-moved messages are shown with.
pub const MAX_RECEIVE_COUNT: &str = "max-receive-count";

/// Reason and kind from a message's attributes (see the module doc).
pub fn classify(attributes: &HashMap<String, String>) -> (String, Kind) {
    if let Some(reason) = attributes.get(FAILURE_REASON_ATTRIBUTE) {
        let kind = match attributes.get(FAILURE_KIND_ATTRIBUTE).map(String::as_str) {
            Some(TRANSIENT) => Kind::Transient,
            Some(PERMANENT) | Some(_) | None => Kind::Permanent,
        };
        return (reason.clone(), kind);
    }
    if let Some(code) = attributes.get("ERROR_CODE") {
        return (format!("eventbridge:{code}"), Kind::Transient);
    }
    (MAX_RECEIVE_COUNT.into(), Kind::Transient)
}

/// What a redrive does with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Move,
    Keep(String),
}

/// Which messages a redrive moves: those of `reason` (all without), and permanent ones only
/// when asked, since they will fail the same way again unless what made them fail was fixed.
pub fn plan_redrive(
    messages: &[DlqMessage],
    reason: Option<&str>,
    include_permanent: bool,
) -> Vec<Decision> {
    messages
        .iter()
        .map(|m| {
            if reason.is_some_and(|r| r != m.reason) {
                Decision::Keep(format!(
                    "reason {} is not {}",
                    m.reason,
                    reason.unwrap_or_default()
                ))
            } else if m.kind == Kind::Permanent && !include_permanent {
                Decision::Keep(format!(
                    "permanent failure ({}): fix the cause, then --include-permanent",
                    m.reason
                ))
            } else {
                Decision::Move
            }
        })
        .collect()
}

/// The DLQ name for what the user typed: `payment`, `payment-dlq` or the full name.
pub fn dlq_name(stage: &str, arg: &str) -> String {
    let prefix = format!("orderflow-{stage}-");
    let base = arg.strip_prefix(&prefix).unwrap_or(arg);
    let base = base.strip_suffix(DLQ_SUFFIX).unwrap_or(base);
    format!("{prefix}{base}{DLQ_SUFFIX}")
}

/// The queue a DLQ's messages came from: the one its `SourceQueueArn` names, else the
/// template's pairing (`<name>-dlq` is the DLQ of `<name>`).
pub fn source_queue_name(dlq: &str, message: &DlqMessage) -> Option<String> {
    if let Some(arn) = &message.source_queue_arn {
        if let Some(name) = arn.rsplit(':').next().filter(|n| !n.is_empty()) {
            return Some(name.to_string());
        }
    }
    dlq.strip_suffix(DLQ_SUFFIX).map(str::to_string)
}

/// How many messages of a DLQ failed for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    pub reason: String,
    pub kind: Kind,
    pub count: usize,
}

/// One line of `dlq list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqSummary {
    pub queue: String,
    /// Approximate number of messages (visible and in flight).
    pub depth: u64,
    /// Counts of the messages peeked (at most [`LIST_PEEK_MAX`]), by reason and kind.
    pub by_reason: Vec<ReasonCount>,
}

/// How many messages `dlq list` peeks per queue to count them by reason.
pub const LIST_PEEK_MAX: usize = 500;

/// Counts by (reason, kind), in that order.
pub fn counts_by_reason(messages: &[DlqMessage]) -> Vec<ReasonCount> {
    let mut counts: BTreeMap<(&str, Kind), usize> = BTreeMap::new();
    for m in messages {
        *counts.entry((m.reason.as_str(), m.kind)).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .map(|((reason, kind), count)| ReasonCount {
            reason: reason.to_string(),
            kind,
            count,
        })
        .collect()
}

/// Every DLQ of the stage with its depth and counts by reason.
pub async fn summaries(ctx: &Context) -> Result<Vec<DlqSummary>> {
    let mut rows = Vec::new();
    for (queue, url) in list_dlqs(ctx).await? {
        let depth = depth(ctx, &url).await?;
        let messages = if depth > 0 {
            peek(ctx, &url, LIST_PEEK_MAX).await?
        } else {
            vec![]
        };
        rows.push(DlqSummary {
            queue,
            depth,
            by_reason: counts_by_reason(&messages),
        });
    }
    Ok(rows)
}

pub fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::Permanent => "permanent",
        Kind::Transient => "transient",
    }
}

/// The stage's DLQs as (name, url), by name.
pub async fn list_dlqs(ctx: &Context) -> Result<Vec<(String, String)>> {
    let urls = ctx.queue_urls().await?;
    let mut dlqs: Vec<(String, String)> = urls
        .into_iter()
        .filter_map(|url| {
            let name = url.rsplit('/').next()?.to_string();
            name.ends_with(DLQ_SUFFIX).then_some((name, url))
        })
        .collect();
    dlqs.sort();
    Ok(dlqs)
}

pub async fn queue_url(ctx: &Context, name: &str) -> Result<String> {
    let out = ctx
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| CliError::aws("sqs", &e))?;
    out.queue_url()
        .map(str::to_string)
        .ok_or_else(|| CliError::Usage(format!("no queue {name}")))
}

/// The queue's approximate depth (visible + in flight).
pub async fn depth(ctx: &Context, url: &str) -> Result<u64> {
    let out = ctx
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| CliError::aws("sqs", &e))?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let get = |n: QueueAttributeName| {
        attrs
            .get(&n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(QueueAttributeName::ApproximateNumberOfMessages)
        + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

/// One ReceiveMessage call with every attribute.
async fn receive(ctx: &Context, url: &str, visibility: i32) -> Result<Vec<DlqMessage>> {
    let out = ctx
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .wait_time_seconds(0)
        .send()
        .await
        .map_err(|e| CliError::aws("sqs", &e))?;
    Ok(out
        .messages()
        .iter()
        .map(|m| {
            let attributes: HashMap<String, String> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let (reason, kind) = classify(&attributes);
            DlqMessage {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                reason,
                kind,
                failure_message: attributes
                    .get("FailureMessage")
                    .or_else(|| attributes.get("ERROR_MESSAGE"))
                    .cloned()
                    .unwrap_or_default(),
                source_receive_count: attributes.get("ReceiveCount").cloned(),
                dlq_receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .cloned(),
                source_queue_arn: attributes.get("SourceQueueArn").cloned(),
            }
        })
        .collect())
}

/// Up to `max` messages of a queue, without taking them. First with a visibility timeout
/// of 0, so that the messages stay available to everyone else at once; a receive samples
/// only some of the queue's messages and may return the same ones again (LocalStack always
/// returns the first ten), so when those rounds stall short of the queue's depth the rest
/// is read by hiding what was seen for a moment (`PEEK_HIDE_SECONDS`) and releasing every
/// hidden message at the end.
pub async fn peek(ctx: &Context, url: &str, max: usize) -> Result<Vec<DlqMessage>> {
    let expected = (depth(ctx, url).await? as usize).min(max);
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    let mut hidden = Vec::new();
    for visibility in [0, PEEK_HIDE_SECONDS] {
        let mut idle_rounds = 0;
        while messages.len() < expected && idle_rounds < 3 {
            let round = receive(ctx, url, visibility).await?;
            let before = messages.len();
            for m in round {
                if visibility > 0 {
                    hidden.push(m.receipt_handle.clone());
                }
                if seen.insert(m.message_id.clone()) {
                    messages.push(m);
                }
            }
            idle_rounds = if messages.len() == before {
                idle_rounds + 1
            } else {
                0
            };
        }
    }
    for handle in hidden {
        // Best effort: a message not released now comes back when its few seconds run out.
        let _ = ctx
            .sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
    Ok(messages)
}

/// How long a peek that has to hide messages hides them (they are released when it ends).
pub const PEEK_HIDE_SECONDS: i32 = 10;

/// What a redrive did with one message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    pub message_id: String,
    pub reason: String,
    pub to: Option<String>,
    /// Why it stayed, when it did.
    pub kept: Option<String>,
}

/// Moves the chosen messages of DLQ `name` back to their source queue, body unchanged:
/// send to the source first, then delete from the DLQ, so a crash between the two leaves a
/// message in both (consumers are idempotent) and never in neither. Messages it keeps are
/// held invisible while the redrive runs (so it does not see them twice), then released.
pub async fn redrive(
    ctx: &Context,
    name: &str,
    reason: Option<&str>,
    include_permanent: bool,
    dry_run: bool,
) -> Result<Vec<Moved>> {
    let url = queue_url(ctx, name).await?;
    let mut report = Vec::new();
    let mut held = Vec::new();
    let mut source_urls: HashMap<String, Option<String>> = HashMap::new();
    let mut seen = HashSet::new();
    loop {
        let batch = receive(ctx, &url, 60).await?;
        if batch.is_empty() {
            break;
        }
        let decisions = plan_redrive(&batch, reason, include_permanent);
        for (message, decision) in batch.into_iter().zip(decisions) {
            if !seen.insert(message.message_id.clone()) {
                continue;
            }
            let source = source_queue_name(name, &message);
            let decision = match (&decision, &source) {
                (Decision::Move, None) => Decision::Keep("no source queue known".into()),
                _ => decision,
            };
            let source_url = match (&decision, &source) {
                (Decision::Move, Some(source)) => {
                    if !source_urls.contains_key(source) {
                        let found = queue_url(ctx, source).await.ok();
                        source_urls.insert(source.clone(), found);
                    }
                    source_urls.get(source).cloned().flatten()
                }
                _ => None,
            };
            match (decision, source_url) {
                (Decision::Move, Some(target)) if !dry_run => {
                    ctx.sqs
                        .send_message()
                        .queue_url(&target)
                        .message_body(&message.body)
                        .send()
                        .await
                        .map_err(|e| CliError::aws("sqs", &e))?;
                    ctx.sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(&message.receipt_handle)
                        .send()
                        .await
                        .map_err(|e| CliError::aws("sqs", &e))?;
                    report.push(Moved {
                        message_id: message.message_id,
                        reason: message.reason,
                        to: source,
                        kept: None,
                    });
                }
                (Decision::Move, Some(_)) => {
                    held.push(message.receipt_handle.clone());
                    report.push(Moved {
                        message_id: message.message_id,
                        reason: message.reason,
                        to: source,
                        kept: Some("dry run".into()),
                    });
                }
                (Decision::Move, None) => {
                    held.push(message.receipt_handle.clone());
                    report.push(Moved {
                        message_id: message.message_id,
                        reason: message.reason,
                        to: None,
                        kept: Some(format!(
                            "source queue {} not found",
                            source.unwrap_or_default()
                        )),
                    });
                }
                (Decision::Keep(why), _) => {
                    held.push(message.receipt_handle.clone());
                    report.push(Moved {
                        message_id: message.message_id,
                        reason: message.reason,
                        to: None,
                        kept: Some(why),
                    });
                }
            }
        }
    }
    for handle in held {
        // Best effort: a message not released now comes back when its 60 s run out.
        let _ = ctx
            .sqs
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
    Ok(report)
}

/// `dlq list`: one line per DLQ, with counts by reason.
pub fn render_list(rows: &[DlqSummary]) -> String {
    let mut out = format!("{:<40} {:>6}  by reason\n", "dead-letter queue", "depth");
    for row in rows {
        let reasons: Vec<String> = row
            .by_reason
            .iter()
            .map(|r| format!("{} ({}): {}", r.reason, kind_text(r.kind), r.count))
            .collect();
        out.push_str(&format!(
            "{:<40} {:>6}  {}\n",
            row.queue,
            row.depth,
            if reasons.is_empty() {
                "-".into()
            } else {
                reasons.join(", ")
            }
        ));
    }
    out
}

/// `dlq show`: each message with its reason, what it is and the receive counts.
pub fn render_messages(queue: &str, messages: &[DlqMessage]) -> String {
    let mut out = format!("{queue}: {} message(s)\n", messages.len());
    for m in messages {
        let (what, detail) = match RawEvent::from_sqs_body(&m.body) {
            Ok(raw) => (
                format!(
                    "{} from {} (event {}, order {})",
                    raw.detail_type,
                    raw.source,
                    raw.metadata.event_id,
                    raw.data
                        .get("orderId")
                        .and_then(|v| v.as_str())
                        .unwrap_or("-")
                ),
                raw.detail().to_string(),
            ),
            Err(e) => (format!("(not an event: {e})"), m.body.clone()),
        };
        out.push_str(&format!(
            "- {}  {} ({})\n    {}\n    receives: {} before dead-lettering, {} on the DLQ\n",
            m.message_id,
            m.reason,
            kind_text(m.kind),
            what,
            m.source_receive_count.as_deref().unwrap_or("?"),
            m.dlq_receive_count.as_deref().unwrap_or("?"),
        ));
        if !m.failure_message.is_empty() {
            out.push_str(&format!("    error: {}\n", m.failure_message));
        }
        out.push_str(&format!("    detail: {detail}\n"));
    }
    out
}

/// `dlq redrive --json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    pub queue: String,
    pub dry_run: bool,
    /// Messages sent back to their source queue (none in a dry run).
    pub moved: usize,
    /// Messages left on the DLQ (in a dry run, all: each says where it would go).
    pub kept: usize,
    pub messages: Vec<Moved>,
}

impl RedriveReport {
    pub fn new(queue: &str, messages: Vec<Moved>, dry_run: bool) -> Self {
        let moved = messages.iter().filter(|m| m.kept.is_none()).count();
        RedriveReport {
            queue: queue.to_string(),
            dry_run,
            moved,
            kept: messages.len() - moved,
            messages,
        }
    }
}

/// `dlq redrive`: what moved where, and what stayed and why.
pub fn render_redrive(queue: &str, moved: &[Moved], dry_run: bool) -> String {
    let n = moved.iter().filter(|m| m.kept.is_none()).count();
    let mut out = format!(
        "{queue}: {} {n} message(s), kept {}\n",
        if dry_run { "would move" } else { "moved" },
        moved.len() - n
    );
    for m in moved {
        match (&m.kept, &m.to) {
            (None, to) => out.push_str(&format!(
                "  moved {} ({}) -> {}\n",
                m.message_id,
                m.reason,
                to.as_deref().unwrap_or("?")
            )),
            (Some(why), to) => out.push_str(&format!(
                "  kept  {} ({}){}: {why}\n",
                m.message_id,
                m.reason,
                to.as_ref()
                    .map(|t| format!(" [-> {t}]"))
                    .unwrap_or_default()
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(reason: &str, kind: Kind) -> DlqMessage {
        DlqMessage {
            message_id: format!("m-{reason}"),
            receipt_handle: "h".into(),
            body: "{}".into(),
            reason: reason.into(),
            kind,
            failure_message: String::new(),
            source_receive_count: None,
            dlq_receive_count: None,
            source_queue_arn: None,
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn messages_are_classified_by_who_dead_lettered_them() {
        assert_eq!(
            classify(&attrs(&[
                ("FailureReason", "invalid-data"),
                ("FailureKind", "permanent")
            ])),
            ("invalid-data".into(), Kind::Permanent)
        );
        // Dead letters written before eventkit stated the kind were permanent ones.
        assert_eq!(
            classify(&attrs(&[("FailureReason", "not-routed")])).1,
            Kind::Permanent
        );
        assert_eq!(
            classify(&attrs(&[
                ("FailureReason", "x"),
                ("FailureKind", "transient")
            ]))
            .1,
            Kind::Transient
        );
        assert_eq!(
            classify(&attrs(&[])),
            (MAX_RECEIVE_COUNT.into(), Kind::Transient)
        );
        assert_eq!(
            classify(&attrs(&[("ERROR_CODE", "SQS_ACCESS_DENIED")])),
            ("eventbridge:SQS_ACCESS_DENIED".into(), Kind::Transient)
        );
    }

    #[test]
    fn a_redrive_moves_transient_failures_and_keeps_permanent_ones_unless_asked() {
        let messages = [
            message("max-receive-count", Kind::Transient),
            message("invalid-data", Kind::Permanent),
        ];
        assert_eq!(
            plan_redrive(&messages, None, false),
            vec![
                Decision::Move,
                Decision::Keep(
                    "permanent failure (invalid-data): fix the cause, then --include-permanent"
                        .into()
                )
            ]
        );
        assert_eq!(
            plan_redrive(&messages, None, true),
            vec![Decision::Move, Decision::Move]
        );
    }

    #[test]
    fn a_reason_filter_keeps_every_other_reason() {
        let messages = [
            message("max-receive-count", Kind::Transient),
            message("invalid-data", Kind::Permanent),
        ];
        let plan = plan_redrive(&messages, Some("invalid-data"), true);
        assert!(matches!(plan[0], Decision::Keep(_)));
        assert_eq!(plan[1], Decision::Move);
    }

    #[test]
    fn queue_names_follow_the_template() {
        assert_eq!(dlq_name("dev", "payment"), "orderflow-dev-payment-dlq");
        assert_eq!(dlq_name("dev", "payment-dlq"), "orderflow-dev-payment-dlq");
        assert_eq!(
            dlq_name("dev", "orderflow-dev-payment-dlq"),
            "orderflow-dev-payment-dlq"
        );
        let mut m = message("x", Kind::Transient);
        assert_eq!(
            source_queue_name("orderflow-dev-payment-dlq", &m).as_deref(),
            Some("orderflow-dev-payment")
        );
        m.source_queue_arn =
            Some("arn:aws:sqs:us-east-1:000000000000:orderflow-dev-inventory".into());
        assert_eq!(
            source_queue_name("orderflow-dev-payment-dlq", &m).as_deref(),
            Some("orderflow-dev-inventory")
        );
    }

    #[test]
    fn the_list_counts_by_reason_and_kind() {
        let messages = [
            message("invalid-data", Kind::Permanent),
            message("invalid-data", Kind::Permanent),
            message("max-receive-count", Kind::Transient),
        ];
        let row = DlqSummary {
            queue: "orderflow-dev-payment-dlq".into(),
            depth: 3,
            by_reason: counts_by_reason(&messages),
        };
        let text = render_list(std::slice::from_ref(&row));
        assert!(
            text.contains("invalid-data (permanent): 2, max-receive-count (transient): 1"),
            "{text}"
        );
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            serde_json::json!({
                "queue": "orderflow-dev-payment-dlq", "depth": 3,
                "byReason": [
                    {"reason": "invalid-data", "kind": "permanent", "count": 2},
                    {"reason": "max-receive-count", "kind": "transient", "count": 1}
                ]
            })
        );
    }

    #[test]
    fn a_redrive_report_counts_what_moved_and_what_stayed() {
        let moved = vec![
            Moved {
                message_id: "m-1".into(),
                reason: "max-receive-count".into(),
                to: Some("orderflow-dev-payment".into()),
                kept: None,
            },
            Moved {
                message_id: "m-2".into(),
                reason: "invalid-data".into(),
                to: None,
                kept: Some("permanent failure".into()),
            },
        ];
        let report = RedriveReport::new("orderflow-dev-payment-dlq", moved.clone(), false);
        assert_eq!((report.moved, report.kept), (1, 1));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["dryRun"], false);
        assert_eq!(json["messages"][0]["to"], "orderflow-dev-payment");
        assert!(json["messages"][1]["to"].is_null());
        assert!(render_redrive(&report.queue, &moved, false)
            .starts_with("orderflow-dev-payment-dlq: moved 1 message(s), kept 1\n"));
    }
}
