//! The order as a state machine over events.
//!
//! `handle` looks at the order (with the new fact applied) and returns what to decide;
//! `apply` folds any event (fact or decision) into the state. Decisions are only taken once
//! `OrderPlaced` is known, so results that arrive before it (out of order) wait for it, and
//! each compensation is asked for at most once.

use std::collections::HashSet;

use contracts::{
    sources, FraudSuspected, InventoryOutOfStock, InventoryReleased, InventoryReserved,
    OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped, PaymentFailed, PaymentProcessed,
    PaymentRefunded, RefundPaymentRequested, ReleaseInventoryRequested, StockLine,
};
use eventkit::{DecodeError, Envelope, EventData, EventMetadata, RawEvent};

/// A fact the saga reacts to, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Placed(OrderPlaced),
    Paid(PaymentProcessed),
    PaymentFailed(PaymentFailed),
    Reserved(InventoryReserved),
    OutOfStock(InventoryOutOfStock),
    Fraud(FraudSuspected),
    Shipped(OrderShipped),
    /// Compensations done: recorded so the order's history is complete; they decide nothing.
    Released(InventoryReleased),
    Refunded(PaymentRefunded),
}

impl Fact {
    /// The fact in `event`, or `None` for the saga's own decisions (and other events it only
    /// stores). Unknown types are an error: the rule routes only these here.
    pub fn from_event(event: &RawEvent) -> Result<Option<Fact>, DecodeError> {
        Ok(Some(match event.detail_type.as_str() {
            OrderPlaced::DETAIL_TYPE => {
                let placed = event.decode::<OrderPlaced>()?.data;
                placed.validate().map_err(|e| DecodeError::InvalidData {
                    detail_type: OrderPlaced::DETAIL_TYPE.into(),
                    path: "data".into(),
                    message: e.to_string(),
                })?;
                Fact::Placed(placed)
            }
            PaymentProcessed::DETAIL_TYPE => Fact::Paid(event.decode()?.data),
            PaymentFailed::DETAIL_TYPE => Fact::PaymentFailed(event.decode()?.data),
            InventoryReserved::DETAIL_TYPE => Fact::Reserved(event.decode()?.data),
            InventoryOutOfStock::DETAIL_TYPE => Fact::OutOfStock(event.decode()?.data),
            FraudSuspected::DETAIL_TYPE => Fact::Fraud(event.decode()?.data),
            OrderShipped::DETAIL_TYPE => Fact::Shipped(event.decode()?.data),
            InventoryReleased::DETAIL_TYPE => Fact::Released(event.decode()?.data),
            PaymentRefunded::DETAIL_TYPE => Fact::Refunded(event.decode()?.data),
            OrderConfirmed::DETAIL_TYPE
            | OrderCancelled::DETAIL_TYPE
            | ReleaseInventoryRequested::DETAIL_TYPE
            | RefundPaymentRequested::DETAIL_TYPE => return Ok(None),
            other => return Err(DecodeError::UnknownType(other.to_string())),
        }))
    }

    pub fn order_id(&self) -> &str {
        match self {
            Fact::Placed(e) => &e.order_id,
            Fact::Paid(e) => &e.order_id,
            Fact::PaymentFailed(e) => &e.order_id,
            Fact::Reserved(e) => &e.order_id,
            Fact::OutOfStock(e) => &e.order_id,
            Fact::Fraud(e) => &e.order_id,
            Fact::Shipped(e) => &e.order_id,
            Fact::Released(e) => &e.order_id,
            Fact::Refunded(e) => &e.order_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OrderStatus {
    /// Waiting for OrderPlaced, payment or stock.
    #[default]
    Pending,
    Confirmed,
    Cancelled {
        reason: String,
    },
    Shipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Payment {
    Paid { payment_id: String },
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stock {
    Reserved {
        reservation_id: String,
        lines: Vec<StockLine>,
    },
    OutOfStock,
}

/// The order's state, folded from its stream.
#[derive(Debug, Clone, Default)]
pub struct Order {
    pub version: u64,
    pub status: OrderStatus,
    placed: Option<OrderPlaced>,
    payment: Option<Payment>,
    stock: Option<Stock>,
    fraud: bool,
    refund_requested: bool,
    release_requested: bool,
    seen: HashSet<String>,
}

impl Order {
    /// Folds a stored stream.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = (u64, &'a RawEvent)>,
    ) -> Result<Order, DecodeError> {
        let mut order = Order::default();
        for (version, event) in events {
            order.apply(event)?;
            order.version = version;
        }
        Ok(order)
    }

    /// Whether this event id is already part of the order.
    pub fn has_seen(&self, event_id: &str) -> bool {
        self.seen.contains(event_id)
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &RawEvent) -> Result<(), DecodeError> {
        self.seen.insert(event.metadata.event_id.clone());
        match Fact::from_event(event)? {
            Some(Fact::Placed(placed)) => self.placed = Some(placed),
            Some(Fact::Paid(paid)) => {
                self.payment = Some(Payment::Paid {
                    payment_id: paid.payment_id,
                })
            }
            Some(Fact::PaymentFailed(_)) => self.payment = Some(Payment::Failed),
            Some(Fact::Reserved(r)) => {
                self.stock = Some(Stock::Reserved {
                    reservation_id: r.reservation_id,
                    lines: r.lines,
                })
            }
            Some(Fact::OutOfStock(_)) => self.stock = Some(Stock::OutOfStock),
            Some(Fact::Fraud(_)) => self.fraud = true,
            Some(Fact::Shipped(_)) => {
                if self.status == OrderStatus::Confirmed {
                    self.status = OrderStatus::Shipped;
                }
            }
            // The compensation was asked for (or the order was cancelled) before; nothing to
            // decide, and the flags keep it from being asked again.
            Some(Fact::Released(_)) => self.release_requested = true,
            Some(Fact::Refunded(_)) => self.refund_requested = true,
            None => match event.detail_type.as_str() {
                OrderConfirmed::DETAIL_TYPE => self.status = OrderStatus::Confirmed,
                OrderCancelled::DETAIL_TYPE => {
                    let reason = event.decode::<OrderCancelled>()?.data.reason;
                    self.status = OrderStatus::Cancelled { reason };
                }
                RefundPaymentRequested::DETAIL_TYPE => self.refund_requested = true,
                ReleaseInventoryRequested::DETAIL_TYPE => self.release_requested = true,
                _ => {}
            },
        }
        Ok(())
    }

    /// The decisions the order takes now that `cause` (already applied) arrived.
    pub fn handle(&self, cause: &EventMetadata) -> Vec<RawEvent> {
        let Some(placed) = &self.placed else {
            return Vec::new();
        };
        let decide = Decider { cause, placed };
        let paid_with = match &self.payment {
            Some(Payment::Paid { payment_id }) => Some(payment_id.clone()),
            _ => None,
        };
        let reserved = match &self.stock {
            Some(Stock::Reserved {
                reservation_id,
                lines,
            }) => Some((reservation_id.clone(), lines.clone())),
            _ => None,
        };
        let mut decisions = Vec::new();
        match &self.status {
            OrderStatus::Pending | OrderStatus::Confirmed => {
                let cancel_reason = if self.fraud {
                    Some("fraud-suspected")
                } else if self.status == OrderStatus::Pending
                    && self.payment == Some(Payment::Failed)
                {
                    Some("payment-failed")
                } else if self.status == OrderStatus::Pending
                    && self.stock == Some(Stock::OutOfStock)
                {
                    Some("out-of-stock")
                } else {
                    None
                };
                if let Some(reason) = cancel_reason {
                    decisions.push(decide.cancel(reason));
                    if paid_with.is_some() && !self.refund_requested {
                        decisions.push(decide.refund(reason));
                    }
                    if reserved.is_some() && !self.release_requested {
                        decisions.push(decide.release(reason));
                    }
                } else if self.status == OrderStatus::Pending {
                    if let (Some(payment_id), Some((reservation_id, lines))) = (paid_with, reserved)
                    {
                        decisions.push(decide.confirm(payment_id, reservation_id, lines));
                    }
                }
            }
            // A result that arrives after the order was cancelled is compensated at once.
            OrderStatus::Cancelled { reason } => {
                if paid_with.is_some() && !self.refund_requested {
                    decisions.push(decide.refund(reason));
                }
                if reserved.is_some() && !self.release_requested {
                    decisions.push(decide.release(reason));
                }
            }
            // Shipped orders are past cancelling; late facts are only recorded.
            OrderStatus::Shipped => {}
        }
        decisions
    }
}

/// Builds decision events caused by one fact.
struct Decider<'a> {
    cause: &'a EventMetadata,
    placed: &'a OrderPlaced,
}

impl Decider<'_> {
    fn event<T: EventData>(&self, data: T) -> RawEvent {
        Envelope::caused_by(self.cause, sources::SAGA, &self.placed.order_id, data).to_raw()
    }

    fn confirm(
        &self,
        payment_id: String,
        reservation_id: String,
        lines: Vec<StockLine>,
    ) -> RawEvent {
        let p = self.placed;
        self.event(OrderConfirmed {
            order_id: p.order_id.clone(),
            customer_id: p.customer_id.clone(),
            customer_email: p.customer_email.clone(),
            total: p.total,
            currency: p.currency.clone(),
            payment_id,
            reservation_id,
            lines,
        })
    }

    fn cancel(&self, reason: &str) -> RawEvent {
        let p = self.placed;
        self.event(OrderCancelled {
            order_id: p.order_id.clone(),
            customer_id: p.customer_id.clone(),
            customer_email: p.customer_email.clone(),
            reason: reason.to_string(),
        })
    }

    fn refund(&self, reason: &str) -> RawEvent {
        self.event(RefundPaymentRequested {
            order_id: self.placed.order_id.clone(),
            reason: reason.to_string(),
        })
    }

    fn release(&self, reason: &str) -> RawEvent {
        self.event(ReleaseInventoryRequested {
            order_id: self.placed.order_id.clone(),
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
