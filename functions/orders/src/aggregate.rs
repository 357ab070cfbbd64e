//! The order as a state machine over its events, in the style of cqrs-es: [`Order::apply`]
//! folds any event of the order (a fact that reached it or a decision it took) into the
//! state and cannot fail; [`Order::handle`] takes a new fact and returns the decisions it
//! leads to, as plain payloads. Neither sees envelopes, ids or the store: the service gives
//! decisions their ids and appends them together with the fact.
//!
//! An order is confirmed only when it is paid, reserved and cleared by fraud detection. A
//! pending order that a failure, a suspicion, an operator ([`OrderCancelRequested`]) or its
//! deadline ([`OrderDeadlineReached`]) stops is cancelled at once, with its compensations.
//!
//! # A confirmed order is stopped through shipping
//!
//! Once confirmed, the order is on its way to shipping, which dispatches it after a hold.
//! Refunding and releasing it then would be wrong if the goods left anyway (paid back and
//! counted on the shelf, while in a parcel). So a suspicion or an operator's cancel of a
//! confirmed order only asks shipping to stop it ([`CancelShipmentRequested`], status
//! [`OrderStatus::Cancelling`]); shipping decides between dispatch and cancel with one
//! conditional write, and answers with exactly one of `ShipmentCancelled` (then the order is
//! cancelled, refunded and released) or `OrderShipped` (then it stays shipped, the suspicion
//! recorded). Whatever the interleaving, no order is both shipped and compensated.
//!
//! A deadline stops only pending orders: a confirmed order ends by shipping's hold.
//!
//! Decisions are only taken once `OrderPlaced` is known, so results that arrive before it
//! (out of order) wait for it, and each compensation is asked for at most once: applying a
//! fact again, even one with a new event id, decides nothing new.

use contracts::{
    CancelShipmentRequested, Event, OrderCancelled, OrderConfirmed, OrderPlaced,
    RefundPaymentRequested, ReleaseInventoryRequested, StockLine, DEADLINE_EXCEEDED,
};
#[cfg(doc)]
use contracts::{OrderCancelRequested, OrderDeadlineReached};

/// Payment's reason for an order whose unit prices are not the catalogue's; the order is
/// cancelled with the same reason.
pub const PRICE_MISMATCH: &str = "price-mismatch";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OrderStatus {
    /// Waiting for OrderPlaced, payment or stock.
    #[default]
    Pending,
    Confirmed,
    /// Confirmed, and shipping was asked to stop the shipment: it ends `Cancelled` with this
    /// reason when shipping stopped it, `Shipped` when dispatch came first.
    Cancelling {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
    Shipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Payment {
    Paid {
        payment_id: String,
    },
    /// Declined; `price_mismatch` when the order's prices were not the catalogue's.
    Failed {
        price_mismatch: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stock {
    Reserved {
        reservation_id: String,
        lines: Vec<StockLine>,
    },
    OutOfStock,
}

/// Fraud detection's verdict. A suspicion wins over a clearance whatever their order: a
/// cleared order can be suspected later, when a later order completes a pattern with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fraud {
    Cleared,
    Suspected,
}

/// The order's state, folded from its stream.
#[derive(Debug, Clone, Default)]
pub struct Order {
    pub status: OrderStatus,
    placed: Option<OrderPlaced>,
    payment: Option<Payment>,
    stock: Option<Stock>,
    fraud: Option<Fraud>,
    refund_requested: bool,
    release_requested: bool,
    deadline_reached: bool,
    /// An operator's reason, the first one asked for.
    cancel_requested: Option<String>,
    /// Shipping stopped the shipment (with the reason it was asked with).
    shipment_cancelled: Option<String>,
    /// The order shipped after a stop was asked for: dispatch won the race.
    shipped_despite_cancel: bool,
}

impl Order {
    /// Folds a stored stream.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Order {
        let mut order = Order::default();
        for event in events {
            order.apply(event);
        }
        order
    }

    /// Folds one event into the state. Events that are not about an order's course
    /// (a customer's sign-up, an email) change nothing.
    pub fn apply(&mut self, event: &Event) {
        match event {
            // The first OrderPlaced is the order: payment and inventory acted on it, so a
            // later one with other content must not rewrite what the saga confirms (the
            // service refuses it before it is stored; streams from before keep their first).
            Event::OrderPlaced(placed) => {
                self.placed.get_or_insert_with(|| placed.clone());
            }
            Event::PaymentProcessed(paid) => {
                self.payment = Some(Payment::Paid {
                    payment_id: paid.payment_id.clone(),
                })
            }
            Event::PaymentFailed(failed) => {
                self.payment = Some(Payment::Failed {
                    price_mismatch: failed.reason == PRICE_MISMATCH,
                })
            }
            Event::InventoryReserved(r) => {
                self.stock = Some(Stock::Reserved {
                    reservation_id: r.reservation_id.clone(),
                    lines: r.lines.clone(),
                })
            }
            Event::InventoryOutOfStock(_) => self.stock = Some(Stock::OutOfStock),
            Event::FraudSuspected(_) => self.fraud = Some(Fraud::Suspected),
            Event::FraudCleared(_) => {
                self.fraud.get_or_insert(Fraud::Cleared);
            }
            Event::OrderShipped(_) => match self.status {
                OrderStatus::Confirmed => self.status = OrderStatus::Shipped,
                OrderStatus::Cancelling { .. } => {
                    self.status = OrderStatus::Shipped;
                    self.shipped_despite_cancel = true;
                }
                _ => {}
            },
            Event::OrderDeadlineReached(_) => self.deadline_reached = true,
            Event::OrderCancelRequested(r) => {
                self.cancel_requested
                    .get_or_insert_with(|| r.reason.clone());
            }
            Event::CancelShipmentRequested(r) => {
                if self.status == OrderStatus::Confirmed {
                    self.status = OrderStatus::Cancelling {
                        reason: r.reason.clone(),
                    }
                }
            }
            Event::ShipmentCancelled(c) => {
                self.shipment_cancelled
                    .get_or_insert_with(|| c.reason.clone());
            }
            Event::OrderConfirmed(_) => self.status = OrderStatus::Confirmed,
            Event::OrderCancelled(cancelled) => {
                self.status = OrderStatus::Cancelled {
                    reason: cancelled.reason.clone(),
                }
            }
            // A compensation asked for, or already done (the order was cancelled before):
            // either way it is not asked for again.
            Event::RefundPaymentRequested(_) | Event::PaymentRefunded(_) => {
                self.refund_requested = true
            }
            Event::ReleaseInventoryRequested(_) | Event::InventoryReleased(_) => {
                self.release_requested = true
            }
            Event::CustomerRegistered(_) | Event::EmailSent(_) => {}
        }
    }

    /// Why a pending order is cancelled now, if it is: what the saga knows stops it. When
    /// several things do, the first in this list names it.
    fn pending_cancel_reason(&self) -> Option<&str> {
        if self.fraud == Some(Fraud::Suspected) {
            Some("fraud-suspected")
        } else if let Some(Payment::Failed { price_mismatch }) = &self.payment {
            Some(if *price_mismatch {
                PRICE_MISMATCH
            } else {
                "payment-failed"
            })
        } else if self.stock == Some(Stock::OutOfStock) {
            Some("out-of-stock")
        } else if let Some(reason) = &self.cancel_requested {
            Some(reason)
        } else if self.deadline_reached {
            Some(DEADLINE_EXCEEDED)
        } else {
            None
        }
    }

    /// Whether `fact` is moot for the order as it stands, so that it is not even recorded: a
    /// deadline that comes after the order ended (the usual case: every order gets one) can
    /// decide nothing, now or later, since an ended order never starts again.
    pub fn is_moot(&self, fact: &Event) -> bool {
        matches!(fact, Event::OrderDeadlineReached(_))
            && matches!(
                self.status,
                OrderStatus::Shipped | OrderStatus::Cancelled { .. }
            )
    }

    /// Whether the order shipped although a stop had been asked for (an alarm's case: the
    /// suspicion stays recorded, nothing is compensated).
    pub fn shipped_despite_cancel(&self) -> bool {
        self.shipped_despite_cancel
    }

    /// The OrderPlaced that made the order, once it has arrived: the first one.
    pub fn placed(&self) -> Option<&OrderPlaced> {
        self.placed.as_ref()
    }

    /// The decisions the order takes when `fact` arrives.
    pub fn handle(&self, fact: &Event) -> Vec<Event> {
        let mut next = self.clone();
        next.apply(fact);
        next.decide()
    }

    /// What the order, as it stands, still has to decide.
    fn decide(&self) -> Vec<Event> {
        let Some(placed) = &self.placed else {
            return Vec::new();
        };
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
        let compensate = |decisions: &mut Vec<Event>, reason: &str| {
            if paid_with.is_some() && !self.refund_requested {
                decisions.push(refund(placed, reason));
            }
            if reserved.is_some() && !self.release_requested {
                decisions.push(release(placed, reason));
            }
        };
        match &self.status {
            OrderStatus::Pending => {
                if let Some(reason) = self.pending_cancel_reason() {
                    decisions.push(cancel(placed, reason));
                    compensate(&mut decisions, reason);
                } else if self.fraud == Some(Fraud::Cleared) {
                    if let (Some(payment_id), Some((reservation_id, lines))) = (paid_with, reserved)
                    {
                        decisions.push(confirm(placed, payment_id, reservation_id, lines));
                    }
                }
            }
            OrderStatus::Confirmed => {
                if let Some(reason) = &self.shipment_cancelled {
                    // Shipping stopped it without being asked by this stream: the goods
                    // stay either way, so the order ends here.
                    decisions.push(cancel(placed, reason));
                    compensate(&mut decisions, reason);
                } else if self.fraud == Some(Fraud::Suspected) {
                    decisions.push(stop_shipment(placed, "fraud-suspected"));
                } else if let Some(reason) = &self.cancel_requested {
                    decisions.push(stop_shipment(placed, reason));
                }
            }
            // Compensated only once shipping has said the goods stay.
            OrderStatus::Cancelling { reason } => {
                if self.shipment_cancelled.is_some() {
                    decisions.push(cancel(placed, reason));
                    compensate(&mut decisions, reason);
                }
            }
            // A result that arrives after the order was cancelled is compensated at once.
            OrderStatus::Cancelled { reason } => compensate(&mut decisions, reason),
            // Shipped orders are past cancelling; late facts are only recorded.
            OrderStatus::Shipped => {}
        }
        decisions
    }
}

fn confirm(
    placed: &OrderPlaced,
    payment_id: String,
    reservation_id: String,
    lines: Vec<StockLine>,
) -> Event {
    Event::OrderConfirmed(OrderConfirmed {
        order_id: placed.order_id.clone(),
        customer_id: placed.customer_id.clone(),
        customer_email: placed.customer_email.clone(),
        total: placed.total,
        currency: placed.currency.clone(),
        payment_id,
        reservation_id,
        lines,
    })
}

fn cancel(placed: &OrderPlaced, reason: &str) -> Event {
    Event::OrderCancelled(OrderCancelled {
        order_id: placed.order_id.clone(),
        customer_id: placed.customer_id.clone(),
        customer_email: placed.customer_email.clone(),
        reason: reason.to_string(),
    })
}

fn stop_shipment(placed: &OrderPlaced, reason: &str) -> Event {
    Event::CancelShipmentRequested(CancelShipmentRequested {
        order_id: placed.order_id.clone(),
        reason: reason.to_string(),
    })
}

fn refund(placed: &OrderPlaced, reason: &str) -> Event {
    Event::RefundPaymentRequested(RefundPaymentRequested {
        order_id: placed.order_id.clone(),
        reason: reason.to_string(),
    })
}

fn release(placed: &OrderPlaced, reason: &str) -> Event {
    Event::ReleaseInventoryRequested(ReleaseInventoryRequested {
        order_id: placed.order_id.clone(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests;
