//! The facts of one order and the decisions they lead to, for the aggregate's and the
//! service's tests.

use contracts::{
    CancelShipmentRequested, Currency, Event, FraudCleared, FraudRule, FraudSuspected,
    InventoryOutOfStock, InventoryReleased, InventoryReserved, OrderCancelRequested,
    OrderCancelled, OrderConfirmed, OrderDeadlineReached, OrderLine, OrderPlaced, OrderShipped,
    PaymentFailed, PaymentProcessed, PaymentRefunded, RefundPaymentRequested,
    ReleaseInventoryRequested, ShipmentCancelled, Shortage, StockLine,
};
use eventkit::Envelope;

pub const ORDER: &str = "ord-7";

pub fn placed() -> OrderPlaced {
    OrderPlaced {
        order_id: ORDER.into(),
        customer_id: "cus-1".into(),
        customer_email: "ada@example.com".into(),
        currency: Currency::try_from("EUR".to_string()).unwrap(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 2,
            unit_price: 1250,
        }],
        total: 2500,
        payment_token: "tok_visa".into(),
        shipping_address: None,
    }
}

/// Another order under the same order id: another customer, other lines, another total.
pub fn placed_again_otherwise() -> OrderPlaced {
    OrderPlaced {
        customer_id: "cus-2".into(),
        customer_email: "eve@example.com".into(),
        lines: vec![OrderLine {
            sku: "TEAPOT".into(),
            quantity: 1,
            unit_price: 4000,
        }],
        total: 4000,
        ..placed()
    }
}

pub fn eur() -> Currency {
    Currency::try_from("EUR".to_string()).unwrap()
}

pub fn paid() -> PaymentProcessed {
    PaymentProcessed {
        order_id: ORDER.into(),
        payment_id: "pay_1".into(),
        amount: 2500,
        currency: eur(),
    }
}

pub fn payment_failed() -> PaymentFailed {
    PaymentFailed {
        order_id: ORDER.into(),
        payment_id: "pay_1".into(),
        amount: 2500,
        currency: eur(),
        reason: "card-declined".into(),
    }
}

/// Payment's decline when the order's unit prices are not the catalogue's.
pub fn price_mismatch() -> PaymentFailed {
    PaymentFailed {
        reason: "price-mismatch".into(),
        ..payment_failed()
    }
}

pub fn reserved() -> InventoryReserved {
    InventoryReserved {
        order_id: ORDER.into(),
        reservation_id: "res_1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    }
}

pub fn out_of_stock() -> InventoryOutOfStock {
    InventoryOutOfStock {
        order_id: ORDER.into(),
        shortages: vec![Shortage {
            sku: "MUG".into(),
            requested: 2,
            available: 1,
        }],
    }
}

pub fn fraud() -> FraudSuspected {
    FraudSuspected {
        order_id: ORDER.into(),
        reason: "velocity".into(),
        score: 97,
        pattern: None,
    }
}

pub fn cleared() -> FraudCleared {
    FraudCleared {
        order_id: ORDER.into(),
        customer_id: "cus-1".into(),
        rule: FraudRule {
            min_orders: 5,
            window_seconds: 60,
            min_locations: 2,
        },
        orders_in_window: 1,
        locations_in_window: 1,
    }
}

pub fn shipped() -> OrderShipped {
    OrderShipped {
        order_id: ORDER.into(),
        shipment_id: "shp_1".into(),
        carrier: "DHL".into(),
        tracking_number: "T1".into(),
        customer_email: "ada@example.com".into(),
    }
}

/// A fact as it arrives: its own event id, so a redelivery can be told from a new copy.
pub fn event(data: impl Into<Event>) -> Envelope<Event> {
    Envelope::new(data.into())
}

pub fn confirmed() -> Event {
    Event::OrderConfirmed(OrderConfirmed {
        order_id: ORDER.into(),
        customer_id: "cus-1".into(),
        customer_email: "ada@example.com".into(),
        total: 2500,
        currency: eur(),
        payment_id: "pay_1".into(),
        reservation_id: "res_1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    })
}

pub fn cancelled(reason: &str) -> Event {
    Event::OrderCancelled(OrderCancelled {
        order_id: ORDER.into(),
        customer_id: "cus-1".into(),
        customer_email: "ada@example.com".into(),
        reason: reason.into(),
    })
}

pub fn refund_requested(reason: &str) -> Event {
    Event::RefundPaymentRequested(RefundPaymentRequested {
        order_id: ORDER.into(),
        reason: reason.into(),
    })
}

pub fn release_requested(reason: &str) -> Event {
    Event::ReleaseInventoryRequested(ReleaseInventoryRequested {
        order_id: ORDER.into(),
        reason: reason.into(),
    })
}

pub fn released() -> InventoryReleased {
    InventoryReleased {
        order_id: ORDER.into(),
        reservation_id: "res_1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    }
}

pub fn refunded() -> PaymentRefunded {
    PaymentRefunded {
        order_id: ORDER.into(),
        payment_id: "pay_1".into(),
        amount: 2500,
        currency: eur(),
    }
}

pub fn deadline() -> OrderDeadlineReached {
    OrderDeadlineReached {
        order_id: ORDER.into(),
    }
}

pub fn operator_cancel(reason: &str) -> OrderCancelRequested {
    OrderCancelRequested {
        order_id: ORDER.into(),
        reason: reason.into(),
    }
}

pub fn shipment_cancelled(reason: &str) -> ShipmentCancelled {
    ShipmentCancelled {
        order_id: ORDER.into(),
        reason: reason.into(),
    }
}

pub fn stop_requested(reason: &str) -> Event {
    Event::CancelShipmentRequested(CancelShipmentRequested {
        order_id: ORDER.into(),
        reason: reason.into(),
    })
}
