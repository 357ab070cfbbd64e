//! `orderflow load --cost`: what a load run's orders cost on AWS, per order and per million
//! orders, from the requests and invocations LocalStack recorded during the run.
//!
//! The counts come from the local plugin's usage log (`GET /_orderflow/usage`,
//! infra/localstack/orderflow_local_lambda/orderflow_local_lambda/usage.py): every request
//! with who made it - a function, a service on AWS's side (event source mapping pollers,
//! EventBridge delivering to its targets), or another client (this CLI, excluded) - and the
//! facts its bill depends on (batch entries, DynamoDB item sizes, SQS payload bytes, email
//! recipients); and every invocation with its duration. Why not LocalStack's own log: it has
//! no line for internal requests such as the pollers' (see usage.py).
//!
//! The pricing and aggregation (`bill`, `summarize`, `render`) are pure; the I/O
//! (`fetch_usage`, `queue_depths`, `wait_quiet`) is thin.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::{CliError, Result};
use crate::pricing::*;

/// One AWS request as the plugin recorded it. Fact fields are present only where the
/// operation has them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestRecord {
    pub time: f64,
    pub service: String,
    pub operation: String,
    /// `function`, `service` (LocalStack calling on a service's behalf) or `client`.
    pub caller_kind: String,
    #[serde(default)]
    pub caller: String,
    /// Bytes of each item written; 0 where the request does not show the item (updates,
    /// deletes, condition checks).
    #[serde(default)]
    pub writes: Option<Vec<u64>>,
    #[serde(default)]
    pub read_bytes: Option<u64>,
    #[serde(default)]
    pub read_items: Option<Vec<u64>>,
    #[serde(default)]
    pub consistent: Option<bool>,
    #[serde(default)]
    pub entries: Option<u64>,
    #[serde(default)]
    pub payload_bytes: Option<u64>,
    #[serde(default)]
    pub recipients: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvocationRecord {
    pub time: f64,
    pub function: String,
    pub duration_ms: f64,
    #[serde(default)]
    pub init_ms: Option<f64>,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Usage {
    pub requests: Vec<RequestRecord>,
    pub invocations: Vec<InvocationRecord>,
    /// Records LocalStack dropped from its bounded memory: the counts are short if not 0.
    #[serde(default)]
    pub dropped: u64,
}

/// What a line is billed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    Wru,
    Rru,
    Event,
    SqsRequest,
    Email,
    GbSecond,
    /// Not billed per request (control-plane calls, Lambda API calls whose cost is the
    /// invocation, log delivery, DynamoDB Streams reads by Lambda triggers).
    NotPriced,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::Wru => "WRU",
            Unit::Rru => "RRU",
            Unit::Event => "events",
            Unit::SqsRequest => "requests",
            Unit::Email => "emails",
            Unit::GbSecond => "GB-s",
            Unit::NotPriced => "-",
        }
    }

    pub fn price(self) -> f64 {
        match self {
            Unit::Wru => DYNAMODB_PER_WRU,
            Unit::Rru => DYNAMODB_PER_RRU,
            Unit::Event => EVENTBRIDGE_PER_EVENT,
            Unit::SqsRequest => SQS_PER_REQUEST,
            Unit::Email => SES_PER_EMAIL,
            Unit::GbSecond => LAMBDA_PER_GB_SECOND_ARM64,
            Unit::NotPriced => 0.0,
        }
    }
}

fn units_of(bytes: u64, unit_bytes: u64) -> u64 {
    bytes.div_ceil(unit_bytes).max(1)
}

/// WRU of the items written: each rounds up to 1 KB; an item the request does not show counts 1.
fn write_units(writes: Option<&[u64]>) -> f64 {
    match writes {
        Some(sizes) => sizes
            .iter()
            .map(|&b| units_of(b, DYNAMODB_WRITE_UNIT_BYTES) as f64)
            .sum(),
        None => 1.0,
    }
}

/// The billable units of one request.
pub fn bill(r: &RequestRecord) -> (Unit, f64) {
    let eventual = |consistent: Option<bool>| {
        if consistent == Some(true) {
            1.0
        } else {
            0.5
        }
    };
    match (r.service.as_str(), r.operation.as_str()) {
        ("dynamodb", "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem") => {
            (Unit::Wru, write_units(r.writes.as_deref()))
        }
        // "A transactional write requires two WRUs" per item (DynamoDB on-demand pricing).
        ("dynamodb", "TransactWriteItems") => (Unit::Wru, 2.0 * write_units(r.writes.as_deref())),
        // GetItem: the item; Query/Scan: the sum of the items returned, rounded up to 4 KB once.
        ("dynamodb", "GetItem" | "Query" | "Scan") => (
            Unit::Rru,
            units_of(r.read_bytes.unwrap_or(0), DYNAMODB_READ_UNIT_BYTES) as f64
                * eventual(r.consistent),
        ),
        ("dynamodb", "BatchGetItem") => {
            let items = r.read_items.as_deref().unwrap_or(&[]);
            let units: u64 = items
                .iter()
                .map(|&b| units_of(b, DYNAMODB_READ_UNIT_BYTES))
                .sum();
            (Unit::Rru, units.max(1) as f64 * 0.5)
        }
        ("events", "PutEvents") => (Unit::Event, r.entries.unwrap_or(1) as f64),
        // Every SQS action is a request, batches included, per 64 KB of payload.
        ("sqs", _) => (
            Unit::SqsRequest,
            units_of(r.payload_bytes.unwrap_or(0), CHUNK_BYTES) as f64,
        ),
        ("ses", "SendEmail" | "SendRawEmail") => (Unit::Email, r.recipients.unwrap_or(1) as f64),
        _ => (Unit::NotPriced, 0.0),
    }
}

/// Billed duration of an invocation in ms: the run plus the init phase (billed for custom
/// runtimes such as our `provided.al2023` bootstraps), rounded up to 1 ms.
pub fn billed_ms(inv: &InvocationRecord) -> u64 {
    ((inv.duration_ms + inv.init_ms.unwrap_or(0.0)).ceil() as u64).max(1)
}

pub fn gb_seconds(inv: &InvocationRecord) -> f64 {
    billed_ms(inv) as f64 / 1000.0 * inv.memory_mb as f64 / 1024.0
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    pub service: String,
    /// The API operation, or for Lambda the function.
    pub operation: String,
    pub requests_per_order: f64,
    pub unit: Unit,
    pub units_per_order: f64,
    pub dollars_per_million_orders: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTotal {
    pub service: String,
    pub requests_per_order: f64,
    pub dollars_per_million_orders: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerLine {
    /// A function (without the stage prefix) or `<service> (AWS side)`.
    pub caller: String,
    pub operation: String,
    pub requests_per_order: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    pub orders: usize,
    pub window_seconds: f64,
    /// Whether every queue was empty and the functions idle before the counts were read.
    pub quiet: bool,
    pub lines: Vec<CostLine>,
    pub services: Vec<ServiceTotal>,
    pub dollars_per_million_orders: f64,
    pub by_caller: Vec<CallerLine>,
    /// ReceiveMessage calls that got no message, per order (in the SQS lines).
    pub empty_receives_per_order: f64,
    /// Requests of other clients (this CLI sending and watching the orders): not counted.
    pub excluded_client_requests: u64,
    /// LocalStack's internal requests of its own (no AWS service principal): not counted.
    pub excluded_localstack_requests: u64,
    pub dropped_records: u64,
    pub assumptions: Vec<String>,
}

pub const ASSUMPTIONS: &[&str] = &[
    "prices: public on-demand, us-east-1, no free tier (functions/cli/src/pricing.rs has the pages and date)",
    "DynamoDB writes: WRU = item size rounded up to 1 KB, sizes from the request; UpdateItem, DeleteItem \
     and condition checks do not show the item and count 1 WRU (an overwrite is billed on the larger of \
     old and new item: not visible, new item used); every TransactWriteItems item counts 2 WRU",
    "DynamoDB reads: RRU = bytes returned rounded up to 4 KB (Query: the sum, rounded once), 1 per unit \
     strongly consistent, 0.5 eventually consistent; a read finding nothing counts 1 unit",
    "EventBridge: one event per PutEvents entry (entries under 64 KB); only custom events, delivery to \
     same-account targets is free",
    "SQS: every request, the Lambda pollers' (ReceiveMessage, DeleteMessageBatch) and EventBridge's \
     deliveries (SendMessage) included, per 64 KB of payload; LocalStack polls an idle queue at its own \
     cadence, not Lambda's 20 s long polls, so empty receives depend on the run's length",
    "Lambda: arm64 price (the template's default), the configured memory (128 MB), billed duration = \
     duration + init, rounded up to 1 ms; durations are of local debug builds on a shared machine, far \
     above AWS's: read the GB-s lines as an upper bound",
    "SES: one email per recipient",
    "not priced: Lambda and control-plane API calls, log delivery (CloudWatch Logs bills ingested GB), \
     DynamoDB Streams reads by Lambda triggers (free), and this CLI's own requests (sending the orders \
     included)",
];

fn short_function(name: &str, stage: &str) -> String {
    name.strip_prefix(&format!("orderflow-{stage}-"))
        .unwrap_or(name)
        .to_string()
}

/// The report from what was recorded between `since` and `until` (epoch seconds).
pub fn summarize(
    usage: &Usage,
    orders: usize,
    stage: &str,
    since: f64,
    until: f64,
    quiet: bool,
) -> CostReport {
    let n = orders.max(1) as f64;
    let in_window = |t: f64| t >= since && t <= until;
    // (service, operation) -> (requests, unit, units)
    let mut ops: BTreeMap<(String, String), (u64, Unit, f64)> = BTreeMap::new();
    let mut callers: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut excluded = 0;
    let mut housekeeping = 0;
    let mut empty_receives = 0;
    for r in usage.requests.iter().filter(|r| in_window(r.time)) {
        let caller = match r.caller_kind.as_str() {
            "function" => short_function(&r.caller, stage),
            // An internal call without a service principal is LocalStack's own machinery
            // (CloudFormation, alarms, the Kinesis behind DynamoDB Streams, log delivery, the
            // ESM's Invoke), not a request AWS would bill.
            "service" if r.caller == "localstack" => {
                housekeeping += 1;
                continue;
            }
            "service" => format!("{} (AWS side)", r.caller),
            _ => {
                excluded += 1;
                continue;
            }
        };
        let (unit, units) = bill(r);
        let line = ops
            .entry((r.service.clone(), r.operation.clone()))
            .or_insert((0, unit, 0.0));
        line.0 += 1;
        line.2 += units;
        if r.service == "sqs" && r.operation == "ReceiveMessage" && r.entries == Some(0) {
            empty_receives += 1;
        }
        *callers
            .entry((caller, format!("{}:{}", r.service, r.operation)))
            .or_default() += 1;
    }
    let mut lines: Vec<CostLine> = ops
        .into_iter()
        .map(|((service, operation), (requests, unit, units))| CostLine {
            service,
            operation,
            requests_per_order: requests as f64 / n,
            unit,
            units_per_order: units / n,
            dollars_per_million_orders: units * unit.price() / n * 1e6,
        })
        .collect();
    // Lambda: one line per function, its invocations (requests) and GB-s.
    let mut functions: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for inv in usage.invocations.iter().filter(|i| in_window(i.time)) {
        let f = functions
            .entry(short_function(&inv.function, stage))
            .or_default();
        f.0 += 1;
        f.1 += gb_seconds(inv);
    }
    lines.extend(
        functions
            .into_iter()
            .map(|(function, (invocations, gbs))| CostLine {
                service: "lambda".into(),
                operation: function,
                requests_per_order: invocations as f64 / n,
                unit: Unit::GbSecond,
                units_per_order: gbs / n,
                dollars_per_million_orders: (invocations as f64 * LAMBDA_PER_REQUEST
                    + gbs * LAMBDA_PER_GB_SECOND_ARM64)
                    / n
                    * 1e6,
            }),
    );
    lines.sort_by(|a, b| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)));
    let mut services: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for l in &lines {
        let s = services.entry(l.service.clone()).or_default();
        s.0 += l.requests_per_order;
        s.1 += l.dollars_per_million_orders;
    }
    let services: Vec<ServiceTotal> = services
        .into_iter()
        .map(|(service, (requests, dollars))| ServiceTotal {
            service,
            requests_per_order: requests,
            dollars_per_million_orders: dollars,
        })
        .collect();
    CostReport {
        orders,
        window_seconds: (until - since).max(0.0),
        quiet,
        dollars_per_million_orders: services.iter().map(|s| s.dollars_per_million_orders).sum(),
        lines,
        services,
        by_caller: callers
            .into_iter()
            .map(|((caller, operation), requests)| CallerLine {
                caller,
                operation,
                requests_per_order: requests as f64 / n,
            })
            .collect(),
        empty_receives_per_order: empty_receives as f64 / n,
        excluded_client_requests: excluded,
        excluded_localstack_requests: housekeeping,
        dropped_records: usage.dropped,
        assumptions: ASSUMPTIONS.iter().map(|s| s.to_string()).collect(),
    }
}

fn units_text(l: &CostLine) -> String {
    if l.unit == Unit::NotPriced {
        "-".into()
    } else if l.unit == Unit::GbSecond {
        format!("{:.4} {}", l.units_per_order, l.unit.label())
    } else {
        format!("{:.2} {}", l.units_per_order, l.unit.label())
    }
}

pub fn render(report: &CostReport) -> String {
    let mut out = format!(
        "\ncost: {} orders, {:.1} s window, AWS us-east-1 on-demand prices\n",
        report.orders, report.window_seconds
    );
    if !report.quiet {
        out.push_str("WARNING: the pipeline was not quiet when counted: the counts may be short\n");
    }
    if report.dropped_records > 0 {
        out.push_str(&format!(
            "WARNING: LocalStack dropped {} old usage records: the counts are short\n",
            report.dropped_records
        ));
    }
    let row = |service: &str, operation: &str, requests: &str, units: &str, dollars: &str| {
        format!("  {service:<15} {operation:<22} {requests:>10} {units:>17} {dollars:>13}\n")
    };
    out.push_str(&row(
        "service",
        "operation/function",
        "req/order",
        "units/order",
        "$/M orders",
    ));
    let totals: BTreeMap<&str, &ServiceTotal> = report
        .services
        .iter()
        .map(|s| (s.service.as_str(), s))
        .collect();
    let mut current: Option<&str> = None;
    let close = |out: &mut String, service: Option<&str>| {
        if let Some(total) = service.and_then(|s| totals.get(s)) {
            out.push_str(&row(
                "",
                &format!("{} total", total.service),
                &format!("{:.2}", total.requests_per_order),
                "",
                &format!("{:.2}", total.dollars_per_million_orders),
            ));
        }
    };
    for l in &report.lines {
        if current != Some(l.service.as_str()) {
            close(&mut out, current);
            current = Some(l.service.as_str());
        }
        out.push_str(&row(
            &l.service,
            &l.operation,
            &format!("{:.2}", l.requests_per_order),
            &units_text(l),
            &format!("{:.2}", l.dollars_per_million_orders),
        ));
    }
    close(&mut out, current);
    out.push_str(&row(
        "total",
        "",
        "",
        "",
        &format!("{:.2}", report.dollars_per_million_orders),
    ));
    out.push_str(&format!(
        "  (SQS includes {:.2} empty ReceiveMessage per order; not counted: {} requests of this CLI, \
         {} of LocalStack's own)\n",
        report.empty_receives_per_order,
        report.excluded_client_requests,
        report.excluded_localstack_requests
    ));
    out.push_str("\nrequests per order by caller\n");
    for c in &report.by_caller {
        out.push_str(&format!(
            "  {:<28} {:<36} {:>8.2}\n",
            c.caller, c.operation, c.requests_per_order
        ));
    }
    out.push_str("\nassumptions\n");
    for a in &report.assumptions {
        out.push_str(&format!("  - {a}\n"));
    }
    out
}

// ---------------------------------------------------------------- I/O

pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// LocalStack's endpoint: the usage log exists only there.
pub fn endpoint() -> Result<String> {
    std::env::var("AWS_ENDPOINT_URL")
        .map(|e| e.trim_end_matches('/').to_string())
        .map_err(|_| {
            CliError::Usage(
                "--cost reads LocalStack's usage log: set AWS_ENDPOINT_URL (make cost does)".into(),
            )
        })
}

/// `GET <endpoint>/_orderflow/usage?since=<epoch seconds>`.
pub async fn fetch_usage(endpoint: &str, since: f64) -> Result<Usage> {
    let url = format!("{endpoint}/_orderflow/usage?since={since}");
    let fail = |message: String| CliError::Http {
        url: url.clone(),
        message,
    };
    let uri: http::Uri = url.parse().map_err(|e| fail(format!("{e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(uri).await.map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(format!(
            "{status}: {} (is the orderflow_local_lambda plugin up to date? restart LocalStack)",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice(&body).map_err(|e| fail(format!("unexpected answer: {e}")))
}

/// Messages in each of the stage's queues (visible + in flight + delayed), dead-letter queues
/// left out: what sits there stays.
pub async fn queue_depths(ctx: &Context) -> Result<Vec<(String, u64)>> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let urls = ctx.queue_urls().await?;
    let mut depths = Vec::new();
    for url in urls.into_iter().filter(|u| !u.ends_with("-dlq")) {
        let attrs = ctx
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| CliError::aws("sqs", &e))?;
        let depth = attrs
            .attributes()
            .into_iter()
            .flat_map(|a| a.values())
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        let name = url.rsplit('/').next().unwrap_or(&url).to_string();
        depths.push((name, depth));
    }
    Ok(depths)
}

/// Waits until every queue is empty and no function ran or made a request since the previous
/// poll (a consumer can be between receiving and deleting, or a stream handler mid-batch
/// with all queues empty). False if `deadline` passed first.
pub async fn wait_quiet(ctx: &Context, endpoint: &str, deadline: Duration) -> Result<bool> {
    let clock = Instant::now();
    let mut last_poll = now_epoch();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let poll = now_epoch();
        let depths = queue_depths(ctx).await?;
        let usage = fetch_usage(endpoint, last_poll).await?;
        let busy = !usage.invocations.is_empty()
            || usage.requests.iter().any(|r| r.caller_kind == "function");
        if !busy && depths.iter().all(|(_, d)| *d == 0) {
            return Ok(true);
        }
        if clock.elapsed() > deadline {
            return Ok(false);
        }
        last_poll = poll;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(service: &str, operation: &str) -> RequestRecord {
        RequestRecord {
            time: 10.0,
            service: service.into(),
            operation: operation.into(),
            caller_kind: "function".into(),
            caller: "orderflow-dev-orders".into(),
            ..Default::default()
        }
    }

    #[test]
    fn dynamodb_writes_are_billed_per_kb_and_transactions_double() {
        let mut put = req("dynamodb", "PutItem");
        put.writes = Some(vec![300]);
        assert_eq!(bill(&put), (Unit::Wru, 1.0));
        put.writes = Some(vec![2500]);
        assert_eq!(bill(&put), (Unit::Wru, 3.0));
        let mut tx = req("dynamodb", "TransactWriteItems");
        tx.writes = Some(vec![200, 0]);
        assert_eq!(bill(&tx), (Unit::Wru, 4.0));
        let mut batch = req("dynamodb", "BatchWriteItem");
        batch.writes = Some(vec![100, 100, 1025]);
        assert_eq!(bill(&batch), (Unit::Wru, 4.0));
        assert_eq!(bill(&req("dynamodb", "UpdateItem")), (Unit::Wru, 1.0));
    }

    #[test]
    fn dynamodb_reads_are_billed_per_4_kb_half_when_eventually_consistent() {
        let mut get = req("dynamodb", "GetItem");
        get.read_bytes = Some(0);
        get.consistent = Some(true);
        assert_eq!(bill(&get), (Unit::Rru, 1.0));
        let mut query = req("dynamodb", "Query");
        query.read_bytes = Some(9000);
        query.consistent = Some(false);
        assert_eq!(bill(&query), (Unit::Rru, 1.5));
    }

    #[test]
    fn batches_are_billed_per_entry_or_per_request() {
        let mut put = req("events", "PutEvents");
        put.entries = Some(3);
        assert_eq!(bill(&put), (Unit::Event, 3.0));
        let mut delete = req("sqs", "DeleteMessageBatch");
        delete.entries = Some(10);
        assert_eq!(bill(&delete), (Unit::SqsRequest, 1.0));
        let mut send = req("sqs", "SendMessage");
        send.payload_bytes = Some(70_000);
        assert_eq!(bill(&send), (Unit::SqsRequest, 2.0));
        let mut email = req("ses", "SendEmail");
        email.recipients = Some(2);
        assert_eq!(bill(&email), (Unit::Email, 2.0));
        assert_eq!(bill(&req("lambda", "Invoke")), (Unit::NotPriced, 0.0));
    }

    #[test]
    fn lambda_bills_duration_and_init_rounded_up_at_the_configured_memory() {
        let inv = InvocationRecord {
            time: 10.0,
            function: "orderflow-dev-payment".into(),
            duration_ms: 99.2,
            init_ms: Some(0.5),
            memory_mb: 128,
        };
        assert_eq!(billed_ms(&inv), 100);
        assert!((gb_seconds(&inv) - 0.0125).abs() < 1e-12);
    }

    #[test]
    fn the_report_prices_per_order_and_per_million_orders() {
        let mut put = req("dynamodb", "PutItem");
        put.writes = Some(vec![100]);
        let mut events = req("events", "PutEvents");
        events.entries = Some(2);
        let mut receive = req("sqs", "ReceiveMessage");
        receive.caller_kind = "service".into();
        receive.caller = "lambda".into();
        receive.entries = Some(0);
        let mut cli = req("events", "PutEvents");
        cli.caller_kind = "client".into();
        let mut late = req("dynamodb", "PutItem");
        late.time = 99.0;
        let mut housekeeping = req("kinesis", "PutRecords");
        housekeeping.caller_kind = "service".into();
        housekeeping.caller = "localstack".into();
        let usage = Usage {
            requests: vec![put.clone(), put, events, receive, cli, late, housekeeping],
            invocations: vec![InvocationRecord {
                time: 10.0,
                function: "orderflow-dev-orders".into(),
                duration_ms: 1000.0,
                init_ms: None,
                memory_mb: 128,
            }],
            dropped: 0,
        };
        let report = summarize(&usage, 2, "dev", 0.0, 50.0, true);
        let line = |op: &str| report.lines.iter().find(|l| l.operation == op).unwrap();
        // 2 PutItem of 1 WRU for 2 orders: 1 WRU per order, $0.625 per million orders.
        assert_eq!(line("PutItem").requests_per_order, 1.0);
        assert!((line("PutItem").dollars_per_million_orders - 0.625).abs() < 1e-9);
        assert!((line("PutEvents").dollars_per_million_orders - 1.0).abs() < 1e-9);
        assert!((line("ReceiveMessage").dollars_per_million_orders - 0.2).abs() < 1e-9);
        // 1 invocation of 1 s at 128 MB for 2 orders: 0.0625 GB-s and 0.5 requests per order.
        let orders = line("orders");
        assert!((orders.units_per_order - 0.0625).abs() < 1e-12);
        let lambda = 0.5 * 0.20 + 0.0625 * 1e6 * LAMBDA_PER_GB_SECOND_ARM64;
        assert!((orders.dollars_per_million_orders - lambda).abs() < 1e-9);
        assert_eq!(report.excluded_client_requests, 1);
        assert_eq!(report.excluded_localstack_requests, 1);
        assert!(!report.lines.iter().any(|l| l.service == "kinesis"));
        assert_eq!(report.empty_receives_per_order, 0.5);
        let total: f64 = 0.625 + 1.0 + 0.2 + lambda;
        assert!((report.dollars_per_million_orders - total).abs() < 1e-9);
        assert!(report
            .by_caller
            .iter()
            .any(|c| c.caller == "lambda (AWS side)" && c.operation == "sqs:ReceiveMessage"));
        let text = render(&report);
        assert!(text.contains("dynamodb total"), "{text}");
        assert!(text.contains("assumptions"), "{text}");
    }
}
