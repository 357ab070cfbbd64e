//! What an operator of a deployed stage relies on, read back from the deployment itself:
//! the bus policy that admits producers in other accounts (template parameter
//! `ProducerAccounts`), and the CloudWatch dashboard.

use std::collections::BTreeSet;

use e2e::*;
use serde_json::Value;

/// The stack's value of template parameter `name` (empty when unset).
fn stack_parameter(stack: &Stack, name: &str) -> String {
    let stack_name = format!("orderflow-{}", stack.stage);
    let parameters = aws_cli(&[
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        &stack_name,
        "--query",
        "Stacks[0].Parameters",
    ]);
    parameters
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["ParameterKey"] == name)
        .and_then(|p| p["ParameterValue"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// An IAM policy element that is a string or a list of strings, as a list.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
#[ignore = "needs a deployment (make test, make test-aws)"]
async fn the_bus_admits_each_producer_account_only_with_its_own_source() {
    let stack = Stack::connect().await;
    let producers = stack_parameter(&stack, "ProducerAccounts");
    if Deployment::from_env() == Deployment::LocalStack {
        // make test deploys two producers (tests/run.sh), so this test cannot pass vacuously.
        assert!(
            !producers.is_empty(),
            "the test stage has no ProducerAccounts"
        );
    }
    let expected: BTreeSet<(String, Vec<String>)> = producers
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (account, source) = pair.split_once(':').expect("<account>:<source>");
            (account.to_string(), vec![source.to_string()])
        })
        .collect();

    let bus = stack
        .events
        .describe_event_bus()
        .name(stack.bus())
        .send()
        .await
        .expect("describe the bus");
    let policy: Value =
        serde_json::from_str(bus.policy().expect("the bus has a policy")).expect("policy JSON");
    let statements = policy["Statement"].as_array().expect("statements").clone();

    let mut own_account = 0;
    let mut admitted = BTreeSet::new();
    for statement in &statements {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert_eq!(
            strings(&statement["Action"]),
            ["events:PutEvents"],
            "{statement}"
        );
        let principal = strings(&statement["Principal"]["AWS"]);
        assert_eq!(principal.len(), 1, "one account per statement: {statement}");
        let account = principal[0]
            .trim_end_matches(":root")
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let condition = &statement["Condition"]["ForAllValues:StringEquals"]["events:source"];
        if condition.is_null() {
            // The stack's own account: its functions' IAM grants limit their sources.
            own_account += 1;
        } else {
            admitted.insert((account, strings(condition)));
        }
    }
    assert_eq!(own_account, 1, "one unconditional statement: {policy}");
    assert_eq!(admitted, expected, "{policy}");
}

#[tokio::test]
#[ignore = "needs a deployment (make test, make test-aws)"]
async fn the_dashboard_shows_every_function_and_queue_of_the_stack() {
    let stack = Stack::connect().await;
    let prefix = format!("orderflow-{}-", stack.stage);
    let dashboard = aws_cli(&[
        "cloudwatch",
        "get-dashboard",
        "--dashboard-name",
        &stack.bus(),
    ]);
    let body: Value = serde_json::from_str(dashboard["DashboardBody"].as_str().expect("a body"))
        .expect("the body is JSON");
    // Each metric is [namespace, name, dimension, value, ...].
    let mut shown = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for metric in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let parts = strings(metric);
            for pair in parts[2..].chunks(2) {
                if let [dimension, value] = pair {
                    if dimension == "FunctionName" || dimension == "QueueName" {
                        shown.insert((dimension.clone(), value.clone()));
                    }
                }
            }
        }
    }

    let functions = stack
        .lambda
        .list_functions()
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    // (dimension, name): a function and its queue share a name (orderflow-<stage>-payment).
    let mut deployed: BTreeSet<(String, String)> = functions
        .into_iter()
        .filter_map(|f| f.ok()?.function_name().map(str::to_string))
        .filter(|name| name.starts_with(&prefix))
        .map(|name| ("FunctionName".to_string(), name))
        .collect();
    let queues = stack
        .sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .max_results(1000)
        .send()
        .await
        .expect("list queues");
    deployed.extend(
        queues
            .queue_urls()
            .iter()
            .filter_map(|url| url.rsplit('/').next())
            .map(|name| ("QueueName".to_string(), name.to_string())),
    );
    assert_eq!(
        deployed.len(),
        12 + 22,
        "the stack's functions and queues: {deployed:?}"
    );
    assert_eq!(shown, deployed, "dashboard vs the stack");
}
