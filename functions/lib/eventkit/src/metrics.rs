//! CloudWatch Embedded Metric Format: one JSON line on stdout per batch, which CloudWatch
//! Logs turns into metrics without any API call from the function.

use serde_json::json;

/// Counts for one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetrics {
    pub processed: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

impl BatchMetrics {
    /// The EMF document for these counts, in `namespace` with a `service` dimension.
    pub fn to_emf(&self, namespace: &str, service: &str, timestamp_ms: i64) -> serde_json::Value {
        let names = [
            "processed",
            "duplicates",
            "ignored",
            "failed",
            "deadLettered",
        ];
        json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["service"]],
                    "Metrics": names.iter().map(|n| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
                }]
            },
            "service": service,
            "processed": self.processed,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "failed": self.failed,
            "deadLettered": self.dead_lettered,
        })
    }

    /// Writes the EMF line to stdout (not through `tracing`: EMF must be a top-level
    /// JSON object of its own).
    pub fn emit(&self, namespace: &str, service: &str) {
        println!(
            "{}",
            self.to_emf(namespace, service, chrono::Utc::now().timestamp_millis())
        );
    }
}

/// How many events of each type a function took in, as EMF: one document per type, because
/// an EMF document carries one value per dimension (`service`, `eventType`). The dashboard's
/// orders placed, confirmed, shipped and cancelled are these counts, from the one consumer
/// that sees every event exactly once (analytics).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventTypeCounts {
    counts: std::collections::BTreeMap<String, u64>,
}

impl EventTypeCounts {
    /// Counts one more event of `detail_type`.
    pub fn add(&mut self, detail_type: &str) {
        *self.counts.entry(detail_type.to_string()).or_default() += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The EMF documents for these counts (metric `events`), in `namespace`.
    pub fn to_emf(
        &self,
        namespace: &str,
        service: &str,
        timestamp_ms: i64,
    ) -> Vec<serde_json::Value> {
        self.counts
            .iter()
            .map(|(detail_type, count)| {
                json!({
                    "_aws": {
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": namespace,
                            "Dimensions": [["service", "eventType"]],
                            "Metrics": [{"Name": "events", "Unit": "Count"}],
                        }]
                    },
                    "service": service,
                    "eventType": detail_type,
                    "events": count,
                })
            })
            .collect()
    }

    /// Writes the EMF lines to stdout (see [`BatchMetrics::emit`]).
    pub fn emit(&self, namespace: &str, service: &str) {
        let now = chrono::Utc::now().timestamp_millis();
        for doc in self.to_emf(namespace, service, now) {
            println!("{doc}");
        }
    }
}

/// One count of a business outcome (an order its deadline ended, say), as an EMF document
/// with a `service` dimension: for the outcomes an alarm watches, which a batch's counts do
/// not tell apart.
pub fn count_emf(
    namespace: &str,
    service: &str,
    metric: &str,
    value: u64,
    timestamp_ms: i64,
) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["service"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }]
        },
        "service": service,
        metric: value,
    })
}

/// Writes [`count_emf`] to stdout (see [`BatchMetrics::emit`]).
pub fn emit_count(namespace: &str, service: &str, metric: &str, value: u64) {
    let now = chrono::Utc::now().timestamp_millis();
    println!("{}", count_emf(namespace, service, metric, value, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_declared_and_set_under_its_name() {
        let doc = count_emf("Orderflow", "orders", "ordersTimedOut", 1, 7);
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Metrics"][0]["Name"], "ordersTimedOut");
        assert_eq!(declared["Dimensions"], json!([["service"]]));
        assert_eq!(doc["ordersTimedOut"], 1);
        assert_eq!(doc["service"], "orders");
        assert_eq!(doc["_aws"]["Timestamp"], 7);
    }

    #[test]
    fn event_type_counts_are_one_emf_document_per_type() {
        let mut counts = EventTypeCounts::default();
        for t in ["OrderShipped", "OrderPlaced", "OrderShipped"] {
            counts.add(t);
        }
        let docs = counts.to_emf("Orderflow", "analytics", 1);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["eventType"], "OrderPlaced");
        assert_eq!(docs[0]["events"], 1);
        assert_eq!(docs[1]["eventType"], "OrderShipped");
        assert_eq!(docs[1]["events"], 2);
        let declared = &docs[1]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Dimensions"], json!([["service", "eventType"]]));
        assert_eq!(declared["Metrics"][0]["Name"], "events");
        assert_eq!(docs[1]["service"], "analytics");
    }

    #[test]
    fn emf_declares_every_metric_it_carries() {
        let m = BatchMetrics {
            processed: 3,
            duplicates: 1,
            ignored: 0,
            failed: 2,
            dead_lettered: 1,
        };
        let doc = m.to_emf("Orderflow", "payment", 1);
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        for metric in declared {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_u64(), "{name} declared but not set");
        }
        assert_eq!(doc["processed"], 3);
        assert_eq!(doc["deadLettered"], 1);
        assert_eq!(doc["service"], "payment");
    }
}
