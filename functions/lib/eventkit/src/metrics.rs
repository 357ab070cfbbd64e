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

#[cfg(test)]
mod tests {
    use super::*;

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
