//! `orderflow order <id> [--as-of T]`: an order's read model and timeline, through the
//! order-query function (as any user of the system would ask), or rebuilt as of a time.
//! `orderflow order cancel <id> --reason R`: an operator ends an order with an event of
//! their own (source `orderflow.operations`), never by editing a table: the saga decides,
//! and compensates, as for any other cancel.

use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use chrono::{DateTime, Utc};
use contracts::money::display_amount;
use contracts::{Currency, Event, EventData, OrderCancelRequested};
use eventkit::{Envelope, Publish, Publisher};
use indicatif::ProgressBar;
use order_query::QueryResponse;
use orderview::{OrderStatus, OrderView};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::Context;
use crate::error::{CliError, Result};

/// Invokes function `orderflow-<stage>-<function>` with `payload` and returns its JSON answer.
pub async fn invoke(ctx: &Context, function: &str, payload: &Value) -> Result<Value> {
    let name = ctx.name(function);
    let out = ctx
        .lambda
        .invoke()
        .function_name(&name)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .map_err(|e| CliError::aws("lambda", &e))?;
    let body = out
        .payload()
        .map(|p| p.as_ref().to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    if out.function_error().is_some() {
        return Err(CliError::Function {
            function: name,
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| CliError::Function {
        function: name,
        body: format!("answer is not JSON ({e}): {text}"),
    })
}

pub async fn query(
    ctx: &Context,
    order_id: &str,
    as_of: Option<&DateTime<Utc>>,
) -> Result<QueryResponse> {
    let mut payload = json!({ "orderId": order_id });
    if let Some(t) = as_of {
        payload["asOf"] = json!(eventkit::envelope::format_time(t));
    }
    let answer = invoke(ctx, "order-query", &payload).await?;
    serde_json::from_value(answer).map_err(|e| CliError::Function {
        function: ctx.name("order-query"),
        body: format!("unexpected answer: {e}"),
    })
}

/// The operator's request to end `order_id`, checked as the saga will check it: a bad id or
/// reason is a usage error here, not a dead letter there.
pub fn cancel_request(order_id: &str, reason: &str) -> Result<Envelope<Event>> {
    let request = OrderCancelRequested {
        order_id: order_id.to_string(),
        reason: reason.to_string(),
    };
    request
        .validate()
        .map_err(|e| CliError::Usage(format!("order cancel: {e}")))?;
    Ok(Envelope::new(Event::OrderCancelRequested(request)))
}

/// Puts `request` on the stage's bus.
pub async fn send_cancel(ctx: &Context, request: &Envelope<Event>) -> Result<()> {
    Publisher::new(ctx.events.clone(), ctx.bus())
        .publish(std::slice::from_ref(request))
        .await?;
    Ok(())
}

/// Whether an order has reached the end of its life.
pub fn is_terminal(view: &OrderView) -> bool {
    matches!(view.status, OrderStatus::Shipped | OrderStatus::Cancelled)
}

/// Waits (spinner, unless `quiet`) until the order's read model is terminal; `Ok(false)` on
/// timeout.
pub async fn wait_terminal(
    ctx: &Context,
    order_id: &str,
    timeout: Duration,
    quiet: bool,
) -> Result<bool> {
    let spinner = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let views = ctx.read_model();
    let done = loop {
        let view = views.get(order_id).await?;
        let status = view
            .as_ref()
            .map_or("-".to_string(), |v| status_text(v.status));
        spinner.set_message(format!("{order_id}: {status}"));
        if view.as_ref().is_some_and(is_terminal) {
            break true;
        }
        if started.elapsed() > timeout {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    };
    spinner.finish_and_clear();
    Ok(done)
}

pub fn status_text(status: OrderStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}

fn amount(minor: u64, currency: &str) -> String {
    match Currency::try_from(currency.to_string()) {
        Ok(c) => display_amount(minor, &c),
        Err(_) => format!("{minor} (minor units)"),
    }
}

/// The view as text: what `make order` has always shown.
pub fn render_view(title: &str, view: Option<&OrderView>) -> String {
    let mut out = format!("{title}\n");
    let Some(v) = view else {
        out.push_str("  (no such order)\n");
        return out;
    };
    let reason = v
        .cancel_reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    out.push_str(&format!("  status     {}{reason}\n", status_text(v.status)));
    out.push_str(&format!(
        "  customer   {} <{}>\n",
        v.customer_id, v.customer_email
    ));
    out.push_str(&format!("  total      {}\n", amount(v.total, &v.currency)));
    for line in &v.lines {
        out.push_str(&format!(
            "    {} x {} at {}\n",
            line.quantity,
            line.sku,
            amount(line.unit_price, &v.currency)
        ));
    }
    if let Some(p) = &v.payment {
        let status = serde_json::to_value(p.status).unwrap_or_default();
        out.push_str(&format!(
            "  payment    {} {}{}\n",
            status.as_str().unwrap_or_default(),
            p.payment_id,
            p.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    if let Some(r) = &v.reservation {
        let status = serde_json::to_value(r.status).unwrap_or_default();
        out.push_str(&format!(
            "  stock      {} {} {}\n",
            status.as_str().unwrap_or_default(),
            r.reservation_id.as_deref().unwrap_or_default(),
            r.shortages.join("; ")
        ));
    }
    if let Some(s) = &v.shipment {
        out.push_str(&format!(
            "  shipment   {} {}\n",
            s.carrier, s.tracking_number
        ));
    }
    if !v.compensations.is_empty() {
        let names: Vec<String> = v
            .compensations
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        out.push_str(&format!("  compensate {}\n", names.join(", ")));
    }
    out.push_str("  timeline\n");
    for t in &v.timeline {
        out.push_str(&format!(
            "    v{:<3} {}  {:<26} {}\n",
            t.version, t.at, t.event_type, t.summary
        ));
    }
    out
}

/// `order --json`: every key always present (null when there is nothing), unlike the
/// function's answer, which leaves out what was not asked for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAnswer<'a> {
    pub order_id: &'a str,
    pub read_model: Option<&'a OrderView>,
    /// The `--as-of` time as the function read it.
    pub as_of: Option<&'a str>,
    /// The order rebuilt from its events as of `asOf`.
    pub from_events: Option<&'a OrderView>,
}

impl<'a> OrderAnswer<'a> {
    pub fn of(answer: &'a QueryResponse) -> Self {
        OrderAnswer {
            order_id: &answer.order_id,
            read_model: answer.read_model.as_ref(),
            as_of: answer.as_of.as_deref(),
            from_events: answer.from_events.as_ref(),
        }
    }
}

/// Whether the answer knows the order at all (now, or as of the time asked for: the read
/// model can lag behind the stream).
pub fn is_known(answer: &QueryResponse) -> bool {
    answer.read_model.is_some() || answer.from_events.is_some()
}

/// The whole answer of `order`: the rebuilt view first when asked for a time.
pub fn render_answer(order_id: &str, answer: &QueryResponse) -> String {
    let mut out = String::new();
    if let Some(as_of) = &answer.as_of {
        out.push_str(&render_view(
            &format!("Order {order_id} as of {as_of} (rebuilt from its event stream)"),
            answer.from_events.as_ref(),
        ));
        out.push('\n');
    }
    out.push_str(&render_view(
        &format!("Order {order_id} (read model)"),
        answer.read_model.as_ref(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> OrderView {
        serde_json::from_value(json!({
            "orderId": "ord-1", "status": "CANCELLED", "cancelReason": "out-of-stock",
            "customerId": "cus-ada", "customerEmail": "ada@example.com", "currency": "EUR",
            "total": 3300, "lines": [{"sku": "MUG-RED", "quantity": 2, "unitPrice": 1250}],
            "payment": {"paymentId": "pay_1", "status": "REFUNDED"},
            "compensations": ["refund"],
            "timeline": [{"version": 1, "at": "2026-11-21T10:00:00.000Z", "type": "OrderPlaced",
                          "source": "orderflow.orders", "summary": "1 line(s), 33.00 EUR"}],
            "lastVersion": 1
        }))
        .unwrap()
    }

    #[test]
    fn a_view_renders_status_money_compensations_and_timeline() {
        let text = render_view("Order ord-1", Some(&view()));
        assert!(
            text.contains("status     CANCELLED (out-of-stock)"),
            "{text}"
        );
        assert!(text.contains("total      33.00 EUR"), "{text}");
        assert!(text.contains("2 x MUG-RED at 12.50 EUR"), "{text}");
        assert!(text.contains("payment    REFUNDED pay_1"), "{text}");
        assert!(text.contains("compensate refund"), "{text}");
        assert!(
            text.contains("v1   2026-11-21T10:00:00.000Z  OrderPlaced"),
            "{text}"
        );
        assert!(is_terminal(&view()));
    }

    #[test]
    fn a_missing_order_says_so_and_as_of_shows_the_rebuilt_view_first() {
        assert!(render_view("Order x", None).contains("(no such order)"));
        let answer = QueryResponse {
            order_id: "ord-1".into(),
            read_model: Some(view()),
            from_events: None,
            as_of: Some("2026-11-21T10:00:00.000Z".into()),
        };
        let text = render_answer("ord-1", &answer);
        let rebuilt = text.find("as of 2026-11-21T10:00:00.000Z").unwrap();
        let read_model = text.find("(read model)").unwrap();
        assert!(rebuilt < read_model);
        assert!(is_known(&answer));
        let json = serde_json::to_value(OrderAnswer::of(&answer)).unwrap();
        assert_eq!(json["orderId"], "ord-1");
        assert_eq!(json["readModel"]["status"], "CANCELLED");
        assert_eq!(json["asOf"], "2026-11-21T10:00:00.000Z");
        assert!(json["fromEvents"].is_null());
    }

    #[test]
    fn an_order_neither_in_the_read_model_nor_in_its_events_is_unknown() {
        let answer = QueryResponse {
            order_id: "ord-x".into(),
            read_model: None,
            from_events: None,
            as_of: None,
        };
        assert!(!is_known(&answer));
        let json = serde_json::to_value(OrderAnswer::of(&answer)).unwrap();
        assert_eq!(
            json,
            json!({"orderId": "ord-x", "readModel": null, "asOf": null, "fromEvents": null})
        );
    }
}

#[cfg(test)]
mod cancel_tests {
    use super::*;

    #[test]
    fn a_cancel_request_is_the_operators_event_for_the_order() {
        let request = cancel_request("ord-1", "customer-request").unwrap();
        assert_eq!(request.source, contracts::sources::OPERATIONS);
        assert_eq!(
            request.data,
            Event::OrderCancelRequested(OrderCancelRequested {
                order_id: "ord-1".into(),
                reason: "customer-request".into()
            })
        );
    }

    #[test]
    fn a_reason_or_id_the_saga_would_refuse_is_a_usage_error() {
        for (id, reason) in [
            ("ord-1", ""),
            ("ord-1", "two words"),
            ("ord 1", "x"),
            ("ord-1", &"r".repeat(65)),
        ] {
            assert!(
                matches!(cancel_request(id, reason), Err(CliError::Usage(_))),
                "{id:?} {reason:?}"
            );
        }
    }
}
