//! The deployment a command talks to: the stage's resource names (`orderflow-<stage>-<suffix>`,
//! as in `infra/template.yaml`) and one client per service.
//!
//! The SDK's default chain decides where requests go and as whom: `AWS_ENDPOINT_URL` (what
//! `infra/scripts/env.sh` sets for LocalStack) overrides every service's endpoint ("Service-
//! specific endpoints", AWS SDKs and Tools Reference Guide,
//! https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html); without it the
//! real AWS endpoints of `--region` (or the configured region) are used.

use aws_config::{BehaviorVersion, Region};
use eventkit::audit::AuditLog;
use eventkit::{EventStore, Publisher};
use orderview::ReadModel;

pub struct Context {
    pub stage: String,
    pub events: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Context {
    pub async fn connect(stage: &str, region: Option<String>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        let config = loader.load().await;
        Context {
            stage: stage.to_string(),
            events: aws_sdk_eventbridge::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            dynamo: aws_sdk_dynamodb::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
        }
    }

    /// `orderflow-<stage>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        resource_name(&self.stage, suffix)
    }

    /// The stage's event bus.
    pub fn bus(&self) -> String {
        format!("orderflow-{}", self.stage)
    }

    pub fn store(&self) -> EventStore {
        EventStore::new(self.dynamo.clone(), self.name("events"))
    }

    pub fn audit(&self) -> AuditLog {
        AuditLog::new(self.dynamo.clone(), self.name("audit"))
    }

    pub fn read_model(&self) -> ReadModel {
        ReadModel::new(self.dynamo.clone(), self.name("orders"))
    }

    /// The URLs of every queue of this stage (DLQs included), following pagination.
    pub async fn queue_urls(&self) -> crate::error::Result<Vec<String>> {
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .sqs
                .list_queues()
                .queue_name_prefix(self.name(""))
                .set_next_token(token)
                .max_results(1000)
                .send()
                .await
                .map_err(|e| crate::error::CliError::aws("sqs", &e))?;
            urls.extend(out.queue_urls().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(urls);
            }
        }
    }

    pub fn publisher(&self) -> Publisher<aws_sdk_eventbridge::Client> {
        Publisher::new(self.events.clone(), self.bus())
    }
}

/// `orderflow-<stage>-<suffix>`, the template's naming rule.
pub fn resource_name(stage: &str, suffix: &str) -> String {
    format!("orderflow-{stage}-{suffix}")
}
