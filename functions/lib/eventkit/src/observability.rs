//! Structured JSON logs that CloudWatch and Lambda's JSON log format read. Per-message spans
//! (opened by the batch processor) carry `event_id`, `event_type` and `correlation_id`, so
//! every line a handler writes is tied to its message.
//!
//! Every line also carries the invocation's X-Ray trace id: `lambda_runtime::run` wraps each
//! invocation in its span `Lambda runtime invoke` with `requestId` and `xrayTraceId` (from
//! the runtime API's `Lambda-Runtime-Trace-Id` header, the value it also puts in
//! `_X_AMZN_TRACE_ID`), and lines list their enclosing spans under `spans`. So a line written
//! while handling a message has `spans: [{"xrayTraceId": …, "requestId": …}, {"correlation_id": …}]`
//! next to the current span (`span`) it always had. This holds for every function, SQS
//! consumers and the stream and direct-invoke ones alike, without a span of our own
//! repeating the same fields.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
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
    let result = json_subscriber(&filter, std::io::stdout).try_init();
    if result.is_ok() {
        tracing::info!(function, "tracing initialised");
    }
}

/// The subscriber every function logs through, writing JSON lines to `writer`.
pub fn json_subscriber<W>(
    filter: &str,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::new(filter))
        .with_current_span(true)
        // The enclosing spans too: the invocation's (trace id) above the message's.
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .with_writer(writer)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_line_written_for_a_message_carries_the_trace_id_beside_the_correlation_id() {
        let lines = Lines::default();
        let trace_id = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let mut context = lambda_runtime::Context::default();
        context.request_id = "req-1".into();
        context.xray_trace_id = Some(trace_id.into());

        tracing::subscriber::with_default(json_subscriber("info", lines.clone()), || {
            // The span lambda_runtime::run opens around every invocation.
            let invocation = lambda_runtime::layers::trace::request_span(&context);
            let _invocation = invocation.enter();
            let message = tracing::info_span!("message", correlation_id = "corr-7");
            let _message = message.enter();
            tracing::info!(outcome = "Processed", "message handled");
        });

        let written = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
        assert_eq!(line["message"], "message handled");
        assert_eq!(line["span"]["correlation_id"], "corr-7");
        let spans = line["spans"].as_array().expect("spans listed");
        assert_eq!(spans.len(), 2, "{line}");
        assert_eq!(spans[0]["xrayTraceId"], trace_id);
        assert_eq!(spans[0]["requestId"], "req-1");
        assert_eq!(spans[1]["correlation_id"], "corr-7");
    }
}
