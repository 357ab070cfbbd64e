use contracts::money::display_amount;
use contracts::{
    FraudSuspected, InventoryOutOfStock, InventoryReleased, InventoryReserved, OrderCancelled,
    OrderConfirmed, OrderLine, OrderPlaced, OrderShipped, PaymentFailed, PaymentProcessed,
    PaymentRefunded, RefundPaymentRequested, ReleaseInventoryRequested,
};
use eventkit::{EventData, StoredEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    /// PENDING (results before the order itself), PLACED, CONFIRMED, CANCELLED, SHIPPED.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(default)]
    pub customer_id: String,
    #[serde(default)]
    pub customer_email: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<ShipmentView>,
    /// Compensations the saga asked for: `refund`, `release-inventory`.
    #[serde(default)]
    pub compensations: Vec<String>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// The stream version this view reflects: events at or below it are already in.
    pub last_version: u64,
    #[serde(default)]
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: String,
    /// PAID, DECLINED or REFUNDED.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationView {
    /// RESERVED, OUT_OF_STOCK or RELEASED.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentView {
    pub shipment_id: String,
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub version: u64,
    pub at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub summary: String,
}

/// Folds one stored event into the view of its order. Events at or below the view's
/// version are already in it and change nothing, so replays and redeliveries are harmless.
pub fn project(view: Option<OrderView>, event: &StoredEvent) -> OrderView {
    let mut view = view.unwrap_or_else(|| OrderView {
        order_id: event.stream_id.trim_start_matches("order#").to_string(),
        status: "PENDING".into(),
        ..OrderView::default()
    });
    if event.version <= view.last_version {
        return view;
    }
    let summary = apply(&mut view, event);
    view.timeline.push(TimelineEntry {
        version: event.version,
        at: event.recorded_at.clone(),
        event_type: event.event_type.clone(),
        source: event.source.clone(),
        summary,
    });
    view.last_version = event.version;
    view.updated_at = event.recorded_at.clone();
    view
}

/// Updates the view and says in words what happened. Events that do not decode are kept in
/// the timeline, flagged, rather than stopping the projection.
fn apply(view: &mut OrderView, event: &StoredEvent) -> String {
    fn data<T: EventData>(event: &StoredEvent) -> Option<T> {
        event.decode::<T>().ok().map(|e| e.data)
    }
    let unreadable = || {
        format!(
            "(unreadable {} v{})",
            event.event_type, event.schema_version
        )
    };
    match event.event_type.as_str() {
        OrderPlaced::DETAIL_TYPE => {
            let Some(o) = data::<OrderPlaced>(event) else {
                return unreadable();
            };
            if view.status == "PENDING" {
                view.status = "PLACED".into();
            }
            view.customer_id = o.customer_id;
            view.customer_email = o.customer_email;
            view.currency = o.currency.to_string();
            view.total = o.total;
            let summary = format!(
                "{} line(s), {}",
                o.lines.len(),
                display_amount(o.total, &o.currency)
            );
            view.lines = o.lines;
            summary
        }
        PaymentProcessed::DETAIL_TYPE => {
            let Some(p) = data::<PaymentProcessed>(event) else {
                return unreadable();
            };
            view.payment = Some(PaymentView {
                payment_id: p.payment_id.clone(),
                status: "PAID".into(),
                reason: None,
            });
            format!(
                "charged {} ({})",
                display_amount(p.amount, &p.currency),
                p.payment_id
            )
        }
        PaymentFailed::DETAIL_TYPE => {
            let Some(p) = data::<PaymentFailed>(event) else {
                return unreadable();
            };
            view.payment = Some(PaymentView {
                payment_id: p.payment_id,
                status: "DECLINED".into(),
                reason: Some(p.reason.clone()),
            });
            format!("declined: {}", p.reason)
        }
        InventoryReserved::DETAIL_TYPE => {
            let Some(r) = data::<InventoryReserved>(event) else {
                return unreadable();
            };
            view.reservation = Some(ReservationView {
                status: "RESERVED".into(),
                reservation_id: Some(r.reservation_id.clone()),
                shortages: vec![],
            });
            format!("reserved {} line(s) ({})", r.lines.len(), r.reservation_id)
        }
        InventoryOutOfStock::DETAIL_TYPE => {
            let Some(r) = data::<InventoryOutOfStock>(event) else {
                return unreadable();
            };
            let shortages: Vec<String> = r
                .shortages
                .iter()
                .map(|s| {
                    format!(
                        "{}: {} wanted, {} available",
                        s.sku, s.requested, s.available
                    )
                })
                .collect();
            let summary = format!("out of stock: {}", shortages.join("; "));
            view.reservation = Some(ReservationView {
                status: "OUT_OF_STOCK".into(),
                reservation_id: None,
                shortages,
            });
            summary
        }
        InventoryReleased::DETAIL_TYPE => {
            let Some(r) = data::<InventoryReleased>(event) else {
                return unreadable();
            };
            if let Some(reservation) = view.reservation.as_mut() {
                reservation.status = "RELEASED".into();
            }
            format!("stock released ({})", r.reservation_id)
        }
        PaymentRefunded::DETAIL_TYPE => {
            let Some(p) = data::<PaymentRefunded>(event) else {
                return unreadable();
            };
            if let Some(payment) = view.payment.as_mut() {
                payment.status = "REFUNDED".into();
            }
            format!("refunded {}", display_amount(p.amount, &p.currency))
        }
        FraudSuspected::DETAIL_TYPE => {
            let Some(f) = data::<FraudSuspected>(event) else {
                return unreadable();
            };
            format!("fraud suspected (score {}): {}", f.score, f.reason)
        }
        OrderConfirmed::DETAIL_TYPE => {
            view.status = "CONFIRMED".into();
            "confirmed".into()
        }
        OrderCancelled::DETAIL_TYPE => {
            let Some(c) = data::<OrderCancelled>(event) else {
                return unreadable();
            };
            view.status = "CANCELLED".into();
            view.cancel_reason = Some(c.reason.clone());
            format!("cancelled: {}", c.reason)
        }
        RefundPaymentRequested::DETAIL_TYPE => {
            view.compensations.push("refund".into());
            "refund requested".into()
        }
        ReleaseInventoryRequested::DETAIL_TYPE => {
            view.compensations.push("release-inventory".into());
            "stock release requested".into()
        }
        OrderShipped::DETAIL_TYPE => {
            let Some(s) = data::<OrderShipped>(event) else {
                return unreadable();
            };
            if view.status == "CONFIRMED" {
                view.status = "SHIPPED".into();
            }
            let summary = format!("shipped with {} ({})", s.carrier, s.tracking_number);
            view.shipment = Some(ShipmentView {
                shipment_id: s.shipment_id,
                carrier: s.carrier,
                tracking_number: s.tracking_number,
            });
            summary
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{sources, Currency, StockLine};
    use eventkit::Envelope;

    fn stored<T: EventData>(version: u64, source: &str, data: T) -> StoredEvent {
        let raw = Envelope::new(source, data).to_raw();
        StoredEvent {
            stream_id: "order#o1".into(),
            version,
            event_id: raw.metadata.event_id.clone(),
            event_type: raw.detail_type.clone(),
            source: raw.source.clone(),
            schema_version: 1,
            metadata: raw.metadata.clone(),
            data: raw.data,
            recorded_at: format!("2026-11-21T10:00:0{version}.000Z"),
            time_bucket: "2026-11-21".into(),
            time_key: String::new(),
        }
    }

    fn eur() -> Currency {
        Currency::try_from("EUR".to_string()).unwrap()
    }

    fn happy_path() -> Vec<StoredEvent> {
        vec![
            stored(
                1,
                sources::ORDERS,
                OrderPlaced {
                    order_id: "o1".into(),
                    customer_id: "c1".into(),
                    customer_email: "a@example.com".into(),
                    currency: eur(),
                    lines: vec![OrderLine {
                        sku: "MUG".into(),
                        quantity: 2,
                        unit_price: 1250,
                    }],
                    total: 2500,
                    payment_token: "tok".into(),
                },
            ),
            stored(
                2,
                sources::PAYMENT,
                PaymentProcessed {
                    order_id: "o1".into(),
                    payment_id: "pay_1".into(),
                    amount: 2500,
                    currency: eur(),
                },
            ),
            stored(
                3,
                sources::INVENTORY,
                InventoryReserved {
                    order_id: "o1".into(),
                    reservation_id: "res_1".into(),
                    lines: vec![StockLine {
                        sku: "MUG".into(),
                        quantity: 2,
                    }],
                },
            ),
            stored(
                4,
                sources::SAGA,
                OrderConfirmed {
                    order_id: "o1".into(),
                    customer_id: "c1".into(),
                    customer_email: "a@example.com".into(),
                    total: 2500,
                    currency: eur(),
                    payment_id: "pay_1".into(),
                    reservation_id: "res_1".into(),
                    lines: vec![],
                },
            ),
            stored(
                5,
                sources::SHIPPING,
                OrderShipped {
                    order_id: "o1".into(),
                    shipment_id: "shp".into(),
                    carrier: "DHL".into(),
                    tracking_number: "T9".into(),
                    customer_email: "a@example.com".into(),
                },
            ),
        ]
    }

    #[test]
    fn the_happy_path_ends_shipped_with_a_full_timeline() {
        let view = happy_path()
            .iter()
            .fold(None, |v, e| Some(project(v, e)))
            .unwrap();
        assert_eq!(view.status, "SHIPPED");
        assert_eq!(view.total, 2500);
        assert_eq!(view.payment.as_ref().unwrap().status, "PAID");
        assert_eq!(
            view.reservation.as_ref().unwrap().reservation_id.as_deref(),
            Some("res_1")
        );
        assert_eq!(view.shipment.as_ref().unwrap().tracking_number, "T9");
        assert_eq!(view.timeline.len(), 5);
        assert_eq!(view.timeline[1].summary, "charged 25.00 EUR (pay_1)");
        assert_eq!(view.last_version, 5);
    }

    #[test]
    fn replaying_events_already_in_the_view_changes_nothing() {
        let events = happy_path();
        let once = events
            .iter()
            .fold(None, |v, e| Some(project(v, e)))
            .unwrap();
        let twice = events
            .iter()
            .chain(events.iter())
            .fold(None, |v, e| Some(project(v, e)))
            .unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn a_cancellation_records_reason_and_compensations() {
        let mut events = happy_path()[..2].to_vec();
        events.push(stored(
            3,
            sources::INVENTORY,
            InventoryOutOfStock {
                order_id: "o1".into(),
                shortages: vec![contracts::Shortage {
                    sku: "MUG".into(),
                    requested: 2,
                    available: 0,
                }],
            },
        ));
        events.push(stored(
            4,
            sources::SAGA,
            OrderCancelled {
                order_id: "o1".into(),
                customer_id: "c1".into(),
                customer_email: "a@example.com".into(),
                reason: "out-of-stock".into(),
            },
        ));
        events.push(stored(
            5,
            sources::SAGA,
            RefundPaymentRequested {
                order_id: "o1".into(),
                reason: "out-of-stock".into(),
            },
        ));
        let view = events
            .iter()
            .fold(None, |v, e| Some(project(v, e)))
            .unwrap();
        assert_eq!(view.status, "CANCELLED");
        assert_eq!(view.cancel_reason.as_deref(), Some("out-of-stock"));
        assert_eq!(view.compensations, vec!["refund"]);
        assert_eq!(
            view.reservation.unwrap().shortages,
            vec!["MUG: 2 wanted, 0 available"]
        );
    }
}
