//! The orders read model's projector. Two ways in:
//! - the event store's DynamoDB stream: each new event is folded into its order's view;
//! - a direct invoke `{"rebuild": {"asOf": "<RFC 3339>"?, "from": "<RFC 3339>"?}}`: drop
//!   every view and replay the store's global time index (up to `asOf`, default now).
//!
//! Views carry the stream version they reflect, so redeliveries and replays change nothing,
//! and a gap (an event newer than the view's next version, e.g. after an as-of rebuild) is
//! filled from the order's stream before the event is applied.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use chrono::{DateTime, Utc};
use eventkit::stream::{inserted_events, process_in_order};
use eventkit::{EventStore, HandlerError, StoredEvent};
use orderview::{project, OrderView, ReadModel};
use serde::Deserialize;
use serde_json::{json, Value};

/// Where a rebuild starts when the request does not say: before the first Orderflow event.
pub const DEFAULT_REPLAY_FROM: &str = "2026-01-01T00:00:00Z";

pub struct Projector {
    store: EventStore,
    views: ReadModel,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebuildRequest {
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
}

impl Projector {
    /// Reads `EVENT_STORE_TABLE` and `ORDERS_VIEW_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(Projector {
            store: EventStore::new(
                dynamo.clone(),
                eventkit::aws::required_env("EVENT_STORE_TABLE")?,
            ),
            views: ReadModel::new(dynamo, eventkit::aws::required_env("ORDERS_VIEW_TABLE")?),
        })
    }

    /// Dispatches a stream batch or a rebuild request.
    pub async fn invoke(&self, payload: Value) -> Result<Value, HandlerError> {
        if payload.get("Records").is_some() {
            let batch: StreamBatch = serde_json::from_value(payload)
                .map_err(|e| HandlerError::permanent("not-a-stream-batch", e))?;
            let response = process_in_order(inserted_events(batch), |e| self.project_one(e)).await;
            return serde_json::to_value(response)
                .map_err(|e| HandlerError::permanent("response", e));
        }
        if let Some(request) = payload.get("rebuild") {
            let request: RebuildRequest = serde_json::from_value(request.clone())
                .map_err(|e| HandlerError::permanent("bad-rebuild-request", e))?;
            return self.rebuild(request).await;
        }
        Err(HandlerError::permanent(
            "unknown-request",
            "expected a DynamoDB stream batch or {\"rebuild\": {\"asOf\"?: ..., \"from\"?: ...}}",
        ))
    }

    async fn project_one(&self, event: StoredEvent) -> Result<(), HandlerError> {
        let Some(order_id) = event.stream_id.strip_prefix("order#") else {
            return Ok(());
        };
        let view = self.views.get(order_id).await?;
        let last = view.as_ref().map_or(0, |v| v.last_version);
        if event.version <= last {
            return Ok(());
        }
        let events = if event.version == last + 1 {
            vec![event]
        } else {
            let target = event.version;
            let mut missing = self.store.read_stream(&event.stream_id, last + 1).await?;
            missing.retain(|e| e.version <= target);
            missing
        };
        let view = events.iter().fold(view, |v, e| Some(project(v, e)));
        if let Some(view) = view {
            self.views.save(&view).await?;
        }
        Ok(())
    }

    /// Drops the read model and replays the store's time index into it.
    pub async fn rebuild(&self, request: RebuildRequest) -> Result<Value, HandlerError> {
        let to = request
            .as_of
            .unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(1));
        let from = request
            .from
            .or_else(|| DEFAULT_REPLAY_FROM.parse().ok())
            .unwrap_or(to - chrono::Duration::days(365));
        let dropped = self.views.clear().await?;
        let events = self.store.read_all_between(from, to).await?;
        let mut views: BTreeMap<String, OrderView> = BTreeMap::new();
        for event in events.iter().filter(|e| e.stream_id.starts_with("order#")) {
            let id = event.stream_id.trim_start_matches("order#").to_string();
            let view = project(views.remove(&id), event);
            views.insert(id, view);
        }
        for view in views.values() {
            self.views.save(view).await?;
        }
        tracing::info!(dropped, replayed = events.len(), orders = views.len(), as_of = %to, "read model rebuilt");
        Ok(json!({
            "dropped": dropped,
            "replayedEvents": events.len(),
            "orders": views.len(),
            "from": eventkit::envelope::format_time(&from),
            "asOf": eventkit::envelope::format_time(&to),
        }))
    }
}
