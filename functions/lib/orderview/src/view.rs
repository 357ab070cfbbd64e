//! The view of one order and [`project`], the one fold from its events into it.
//!
//! Events are read as members of the closed `contracts::Event` set, upcast and not validated
//! again ([`StoredEvent::event`]): the store holds what was accepted when it was taken in, so
//! a rule tightened later never stops a stored order from being shown.

use contracts::money::display_amount;
use contracts::{order_stream, Event, OrderLine, ShippingAddress};
use eventkit::{DecodeError, Payload, StoredEvent};
use serde::{Deserialize, Serialize};

/// The version of [`project`] that wrote a view. Bump it whenever `project` writes something
/// else for the same events (a new field, a changed summary): views written by an older
/// projection are then re-projected from their streams (by a rebuild, or by the projector
/// when their order next changes), while views of this projection only ever move forward
/// (see [`crate::repository::supersedes`]).
///
/// 2: the shipping address (OrderPlaced v2) and the fraud verdict.
/// 3: the first OrderPlaced is the order; a later one is only noted in the timeline.
pub const PROJECTION_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub status: OrderStatus,
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
    /// Where it ships; `None` for orders placed with OrderPlaced version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
    /// Fraud detection's latest verdict. A suspicion after shipping stays here as a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraud: Option<FraudView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<ShipmentView>,
    /// Compensations the saga asked for, in order.
    #[serde(default)]
    pub compensations: Vec<Compensation>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// The stream version this view reflects: events at or below it are already in.
    pub last_version: u64,
    #[serde(default)]
    pub updated_at: String,
    /// The [`PROJECTION_VERSION`] that wrote the view (0: written before views carried it).
    #[serde(default)]
    pub projection: u32,
}

/// Where the order stands. Stored as the upper-case strings the read model has always held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Results arrived before the order itself.
    #[default]
    Pending,
    Placed,
    Confirmed,
    /// Confirmed, and the saga asked shipping to stop the shipment: it ends CANCELLED if
    /// shipping stopped it, SHIPPED if dispatch came first.
    Cancelling,
    Cancelled,
    Shipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Paid,
    Declined,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Reserved,
    OutOfStock,
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FraudVerdict {
    Cleared,
    Suspected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FraudView {
    pub verdict: FraudVerdict,
    /// Why, in words: the window and its locations, or what the check found.
    pub detail: String,
}

/// A compensation the saga asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compensation {
    Refund,
    ReleaseInventory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: String,
    pub status: PaymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationView {
    pub status: ReservationStatus,
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

/// The order whose stream `stream_id` is (the inverse of [`contracts::order_stream`]), or
/// `None` for any other stream.
pub fn order_of_stream(stream_id: &str) -> Option<&str> {
    stream_id.strip_prefix(order_stream("").as_str())
}

/// Folds one stored event into the view of its order. Events at or below the view's
/// version are already in it and change nothing, so replays and redeliveries are harmless.
pub fn project(view: Option<OrderView>, event: &StoredEvent) -> OrderView {
    let mut view = view.unwrap_or_else(|| OrderView {
        order_id: order_of_stream(&event.stream_id)
            .unwrap_or(&event.stream_id)
            .to_string(),
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
    view.projection = PROJECTION_VERSION;
    view
}

/// The view of a whole stream (or of the part of it given), `None` for no events.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Option<OrderView> {
    events
        .into_iter()
        .fold(None, |view, event| Some(project(view, event)))
}

/// Updates the view and says in words what happened. Events that do not decode are kept in
/// the timeline, flagged, rather than stopping the projection.
fn apply(view: &mut OrderView, event: &StoredEvent) -> String {
    let data = match event.event::<Event>() {
        Ok(envelope) => envelope.data,
        // A type this code does not know (written by newer code) is shown by its name.
        Err(DecodeError::UnknownType(event_type)) => return event_type,
        Err(_) => {
            return format!(
                "(unreadable {} v{})",
                event.event_type, event.schema_version
            )
        }
    };
    match data {
        // The first OrderPlaced is the order (every order has a line, so lines tell whether
        // one was folded): a later one, which the saga now refuses but older streams may
        // hold, must not show an order nobody paid for, to another address.
        Event::OrderPlaced(_) if !view.lines.is_empty() => {
            "(a second OrderPlaced, ignored: the first one stands)".to_string()
        }
        Event::OrderPlaced(o) => {
            if view.status == OrderStatus::Pending {
                view.status = OrderStatus::Placed;
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
            view.shipping_address = o.shipping_address;
            summary
        }
        Event::PaymentProcessed(p) => {
            view.payment = Some(PaymentView {
                payment_id: p.payment_id.clone(),
                status: PaymentStatus::Paid,
                reason: None,
            });
            format!(
                "charged {} ({})",
                display_amount(p.amount, &p.currency),
                p.payment_id
            )
        }
        Event::PaymentFailed(p) => {
            let summary = format!("declined: {}", p.reason);
            view.payment = Some(PaymentView {
                payment_id: p.payment_id,
                status: PaymentStatus::Declined,
                reason: Some(p.reason),
            });
            summary
        }
        Event::InventoryReserved(r) => {
            let summary = format!("reserved {} line(s) ({})", r.lines.len(), r.reservation_id);
            view.reservation = Some(ReservationView {
                status: ReservationStatus::Reserved,
                reservation_id: Some(r.reservation_id),
                shortages: vec![],
            });
            summary
        }
        Event::InventoryOutOfStock(r) => {
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
                status: ReservationStatus::OutOfStock,
                reservation_id: None,
                shortages,
            });
            summary
        }
        Event::InventoryReleased(r) => {
            if let Some(reservation) = view.reservation.as_mut() {
                reservation.status = ReservationStatus::Released;
            }
            format!("stock released ({})", r.reservation_id)
        }
        Event::PaymentRefunded(p) => {
            if let Some(payment) = view.payment.as_mut() {
                payment.status = PaymentStatus::Refunded;
            }
            format!("refunded {}", display_amount(p.amount, &p.currency))
        }
        Event::FraudSuspected(f) => {
            let detail = match &f.pattern {
                Some(p) => format!(
                    "{} orders between {} and {} from {}",
                    p.order_ids.len(),
                    p.window_start.format("%H:%M:%S%.3f"),
                    p.window_end.format("%H:%M:%S%.3f"),
                    p.locations
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("score {}", f.score),
            };
            let summary = format!("fraud suspected ({}): {detail}", f.reason);
            view.fraud = Some(FraudView {
                verdict: FraudVerdict::Suspected,
                detail,
            });
            summary
        }
        Event::FraudCleared(f) => {
            let detail = format!(
                "{} order(s) from {} location(s) in the busiest window",
                f.orders_in_window, f.locations_in_window
            );
            let summary = format!("fraud check cleared: {detail}");
            // A suspicion is never overturned by a clearance (they may arrive in any order).
            if view.fraud.is_none() {
                view.fraud = Some(FraudView {
                    verdict: FraudVerdict::Cleared,
                    detail,
                });
            }
            summary
        }
        Event::OrderConfirmed(_) => {
            view.status = OrderStatus::Confirmed;
            "confirmed".into()
        }
        Event::OrderCancelled(c) => {
            view.status = OrderStatus::Cancelled;
            let summary = format!("cancelled: {}", c.reason);
            view.cancel_reason = Some(c.reason);
            summary
        }
        Event::RefundPaymentRequested(_) => {
            view.compensations.push(Compensation::Refund);
            "refund requested".into()
        }
        Event::ReleaseInventoryRequested(_) => {
            view.compensations.push(Compensation::ReleaseInventory);
            "stock release requested".into()
        }
        Event::OrderShipped(s) => {
            let mut summary = format!("shipped with {} ({})", s.carrier, s.tracking_number);
            if view.status == OrderStatus::Cancelling {
                summary.push_str(", dispatched before the cancel reached shipping");
            }
            if matches!(
                view.status,
                OrderStatus::Confirmed | OrderStatus::Cancelling
            ) {
                view.status = OrderStatus::Shipped;
            }
            view.shipment = Some(ShipmentView {
                shipment_id: s.shipment_id,
                carrier: s.carrier,
                tracking_number: s.tracking_number,
            });
            summary
        }
        Event::OrderDeadlineReached(_) => {
            if matches!(view.status, OrderStatus::Pending | OrderStatus::Placed) {
                "deadline reached before confirmation".into()
            } else {
                "deadline reached (nothing to do)".into()
            }
        }
        Event::OrderCancelRequested(r) => format!("an operator asked to cancel: {}", r.reason),
        Event::CancelShipmentRequested(r) => {
            if view.status == OrderStatus::Confirmed {
                view.status = OrderStatus::Cancelling;
            }
            format!("shipment stop requested: {}", r.reason)
        }
        Event::ShipmentCancelled(_) => "shipment stopped before dispatch".into(),
        // Not part of an order's stream; shown by name if one ever is.
        other @ (Event::CustomerRegistered(_) | Event::EmailSent(_)) => {
            other.detail_type().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{
        Currency, InventoryOutOfStock, InventoryReserved, OrderCancelled, OrderConfirmed,
        OrderPlaced, OrderShipped, PaymentProcessed, RefundPaymentRequested, StockLine,
    };
    use eventkit::Envelope;

    /// `data` as the store holds it at `version` of order o1's stream.
    pub(crate) fn stored(version: u64, data: impl Into<Event>) -> StoredEvent {
        let raw = Envelope::new(data.into()).to_raw();
        let recorded = format!("2026-11-21T10:00:0{version}Z").parse().unwrap();
        StoredEvent::new(&order_stream("o1"), version, &raw, &recorded)
    }

    fn eur() -> Currency {
        Currency::try_from("EUR".to_string()).unwrap()
    }

    fn placed() -> OrderPlaced {
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
            shipping_address: None,
        }
    }

    fn happy_path() -> Vec<StoredEvent> {
        vec![
            stored(1, placed()),
            stored(
                2,
                PaymentProcessed {
                    order_id: "o1".into(),
                    payment_id: "pay_1".into(),
                    amount: 2500,
                    currency: eur(),
                },
            ),
            stored(
                3,
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
        let view = replay(&happy_path()).unwrap();
        assert_eq!(view.status, OrderStatus::Shipped);
        assert_eq!(view.total, 2500);
        assert_eq!(view.payment.as_ref().unwrap().status, PaymentStatus::Paid);
        assert_eq!(
            view.reservation.as_ref().unwrap().reservation_id.as_deref(),
            Some("res_1")
        );
        assert_eq!(view.shipment.as_ref().unwrap().tracking_number, "T9");
        assert_eq!(view.timeline.len(), 5);
        assert_eq!(view.timeline[1].summary, "charged 25.00 EUR (pay_1)");
        assert_eq!(view.last_version, 5);
        assert_eq!(view.projection, PROJECTION_VERSION);
    }

    #[test]
    fn a_second_order_placed_does_not_rewrite_the_order() {
        let mut events = happy_path();
        let mut other = placed();
        other.customer_email = "mallory@example.com".into();
        other.lines[0].quantity = 9;
        other.total = 9 * 1250;
        events.push(stored(6, other));

        let view = replay(&events).unwrap();

        assert_eq!(view.customer_email, "a@example.com");
        assert_eq!((view.total, view.lines[0].quantity), (2500, 2));
        assert_eq!(view.status, OrderStatus::Shipped);
        assert_eq!(
            view.timeline[5].summary,
            "(a second OrderPlaced, ignored: the first one stands)"
        );
    }

    #[test]
    fn replaying_events_already_in_the_view_changes_nothing() {
        let events = happy_path();
        let once = replay(&events).unwrap();
        let twice = replay(events.iter().chain(events.iter())).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn a_cancellation_records_reason_and_compensations() {
        let mut events = happy_path()[..2].to_vec();
        events.push(stored(
            3,
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
            OrderCancelled {
                order_id: "o1".into(),
                customer_id: "c1".into(),
                customer_email: "a@example.com".into(),
                reason: "out-of-stock".into(),
            },
        ));
        events.push(stored(
            5,
            RefundPaymentRequested {
                order_id: "o1".into(),
                reason: "out-of-stock".into(),
            },
        ));
        let view = replay(&events).unwrap();
        assert_eq!(view.status, OrderStatus::Cancelled);
        assert_eq!(view.cancel_reason.as_deref(), Some("out-of-stock"));
        assert_eq!(view.compensations, vec![Compensation::Refund]);
        assert_eq!(
            view.reservation.unwrap().shortages,
            vec!["MUG: 2 wanted, 0 available"]
        );
    }

    /// The strings the table and the e2e tests hold; the enums must serialize to exactly these.
    #[test]
    fn statuses_are_stored_as_the_strings_they_always_were() {
        let mut events = happy_path();
        let view = replay(&events).unwrap();
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "SHIPPED");
        assert_eq!(json["payment"]["status"], "PAID");
        assert_eq!(json["reservation"]["status"], "RESERVED");
        assert_eq!(json["projection"], PROJECTION_VERSION);
        events.truncate(1);
        let strings = |v: &OrderView| serde_json::to_value(v).unwrap()["status"].clone();
        assert_eq!(strings(&replay(&events).unwrap()), "PLACED");
        for (status, text) in [
            (OrderStatus::Pending, "PENDING"),
            (OrderStatus::Confirmed, "CONFIRMED"),
            (OrderStatus::Cancelled, "CANCELLED"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
        }
        for (status, text) in [
            (PaymentStatus::Declined, "DECLINED"),
            (PaymentStatus::Refunded, "REFUNDED"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
        }
        for (status, text) in [
            (ReservationStatus::OutOfStock, "OUT_OF_STOCK"),
            (ReservationStatus::Released, "RELEASED"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
        }
        assert_eq!(
            serde_json::to_value([Compensation::Refund, Compensation::ReleaseInventory]).unwrap(),
            serde_json::json!(["refund", "release-inventory"])
        );
    }

    fn suspicion() -> contracts::FraudSuspected {
        contracts::FraudSuspected {
            order_id: "o1".into(),
            reason: "velocity-locations".into(),
            score: 90,
            pattern: None,
        }
    }

    fn clearance() -> contracts::FraudCleared {
        contracts::FraudCleared {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            rule: contracts::FraudRule {
                min_orders: 5,
                window_seconds: 60,
                min_locations: 2,
            },
            orders_in_window: 2,
            locations_in_window: 1,
        }
    }

    #[test]
    fn a_version_2_order_shows_where_it_ships_and_a_version_1_order_does_not() {
        let mut v2 = placed();
        v2.shipping_address = Some(contracts::ShippingAddress {
            line1: "1 Rue de Rivoli".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: contracts::Country::try_from("FR".to_string()).unwrap(),
        });
        let view = replay(&[stored(1, v2.clone())]).unwrap();
        assert_eq!(view.shipping_address, v2.shipping_address);
        let view = replay(&[stored(1, placed())]).unwrap();
        assert_eq!(view.shipping_address, None);
    }

    #[test]
    fn a_suspicion_wins_over_a_clearance_in_either_order() {
        for events in [
            vec![
                stored(1, placed()),
                stored(2, clearance()),
                stored(3, suspicion()),
            ],
            vec![
                stored(1, placed()),
                stored(2, suspicion()),
                stored(3, clearance()),
            ],
        ] {
            let view = replay(&events).unwrap();
            assert_eq!(view.fraud.map(|f| f.verdict), Some(FraudVerdict::Suspected));
        }
        let view = replay(&[stored(1, placed()), stored(2, clearance())]).unwrap();
        assert_eq!(
            view.fraud,
            Some(FraudView {
                verdict: FraudVerdict::Cleared,
                detail: "2 order(s) from 1 location(s) in the busiest window".into()
            })
        );
    }

    #[test]
    fn a_view_stored_before_views_carried_their_projection_reads_as_projection_zero() {
        let view = replay(&happy_path()).unwrap();
        let mut json = serde_json::to_value(&view).unwrap();
        json.as_object_mut().unwrap().remove("projection");
        let read: OrderView = serde_json::from_value(json).unwrap();
        assert_eq!(read.projection, 0);
    }

    /// Validation runs once, at intake: an OrderPlaced stored before a rule was tightened
    /// (here: a total that does not add up) is still shown.
    #[test]
    fn a_stored_event_that_fails_todays_validation_is_still_projected() {
        let mut order = placed();
        order.total = 1;
        assert!(order.check().is_err(), "the rule rejects it today");
        let view = replay(&[stored(1, order)]).unwrap();
        assert_eq!(view.status, OrderStatus::Placed);
        assert_eq!(view.total, 1);
    }

    #[test]
    fn an_unreadable_event_is_flagged_in_the_timeline_and_the_fold_goes_on() {
        let mut broken = stored(2, placed());
        broken.data = serde_json::json!({"orderId": 7});
        let mut unknown = stored(3, placed());
        unknown.event_type = "OrderTeleported".into();
        let events = [stored(1, placed()), broken, unknown];
        let view = replay(&events).unwrap();
        assert_eq!(view.timeline[1].summary, "(unreadable OrderPlaced v2)");
        assert_eq!(view.timeline[2].summary, "OrderTeleported");
        assert_eq!(view.last_version, 3);
        assert_eq!(view.status, OrderStatus::Placed);
    }

    #[test]
    fn order_streams_name_their_order() {
        assert_eq!(order_of_stream(&order_stream("ord-1")), Some("ord-1"));
        assert_eq!(order_of_stream("customer#c1"), None);
    }
}
