//! Structured JSON logs that CloudWatch and Lambda's JSON log format read. Per-message spans
//! (opened by the batch processor) carry `event_id`, `event_type` and `correlation_id`, so
//! every line a handler writes is tied to its message.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once per process. Level from `RUST_LOG`, else Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn init_tracing(function: &'static str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .unwrap_or_else(|| "info".into());
    let result = tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::new(filter))
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .try_init();
    if result.is_ok() {
        tracing::info!(function, "tracing initialised");
    }
}
