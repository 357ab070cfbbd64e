//! Shared setup for the integration tests: real DynamoDB Local and SQS through LocalStack
//! (started by `make test`). Each test makes its own uniquely named table or queue.
#![allow(dead_code)]

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

pub async fn config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the integration tests with `make test`"
    );
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn attr(name: &str, t: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .unwrap()
}

fn key(name: &str, t: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .unwrap()
}

/// A table shaped like the template's idempotency table.
pub async fn idempotency_table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = unique("it-idempotency");
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("id", ScalarAttributeType::S))
        .key_schema(key("id", KeyType::Hash))
        .send()
        .await
        .expect("create idempotency table");
    name
}

/// A table shaped like the template's event store table.
pub async fn event_store_table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = unique("it-events");
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("streamId", ScalarAttributeType::S))
        .attribute_definitions(attr("version", ScalarAttributeType::N))
        .attribute_definitions(attr("timeBucket", ScalarAttributeType::S))
        .attribute_definitions(attr("timeKey", ScalarAttributeType::S))
        .key_schema(key("streamId", KeyType::Hash))
        .key_schema(key("version", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("byTime")
                .key_schema(key("timeBucket", KeyType::Hash))
                .key_schema(key("timeKey", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        // As in infra/template.yaml: the sparse index of unpublished events, keys only.
        .attribute_definitions(attr("unpublished", ScalarAttributeType::S))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("unpublished")
                .key_schema(key("unpublished", KeyType::Hash))
                .key_schema(key("timeKey", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create event store table");
    name
}
