//! The order as a state machine over its events, in the style of cqrs-es: [`Order::apply`]
//! folds any event of the order (a fact that reached it or a decision it took) into the
//! state and cannot fail; [`Order::handle`] takes a new fact and returns the decisions it
//! leads to, as plain payloads. Neither sees envelopes, ids or the store: the service gives
//! decisions their ids and appends them together with the fact.
//!
//! An order is confirmed only when it is paid, reserved and cleared by fraud detection. A
//! suspicion cancels it with its compensations, even after confirmation, as long as it has
//! not shipped; after shipping the suspicion is only recorded (it stays in the stream and the
//! read model shows it).
//!
//! Decisions are only taken once `OrderPlaced` is known, so results that arrive before it
//! (out of order) wait for it, and each compensation is asked for at most once: applying a
//! fact again, even one with a new event id, decides nothing new.

use contracts::{
    Event, OrderCancelled, OrderConfirmed, OrderPlaced, RefundPaymentRequested,
    ReleaseInventoryRequested, StockLine,
};

/// Payment's reason for an order whose unit prices are not the catalogue's; the order is
/// cancelled with the same reason.
pub const PRICE_MISMATCH: &str = "price-mismatch";

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
            Event::OrderShipped(_) => {
                if self.status == OrderStatus::Confirmed {
                    self.status = OrderStatus::Shipped;
                }
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
            Event::CustomerRegistered(_)
            | Event::EmailSent(_)
            | Event::OrderDeadlineReached(_)
            | Event::OrderCancelRequested(_)
            | Event::CancelShipmentRequested(_)
            | Event::ShipmentCancelled(_) => {}
        }
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
        match &self.status {
            OrderStatus::Pending | OrderStatus::Confirmed => {
                let cancel_reason = if self.fraud == Some(Fraud::Suspected) {
                    Some("fraud-suspected")
                } else if self.status == OrderStatus::Pending
                    && self.payment
                        == Some(Payment::Failed {
                            price_mismatch: true,
                        })
                {
                    Some(PRICE_MISMATCH)
                } else if self.status == OrderStatus::Pending
                    && self.payment
                        == Some(Payment::Failed {
                            price_mismatch: false,
                        })
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
                    decisions.push(cancel(placed, reason));
                    if paid_with.is_some() && !self.refund_requested {
                        decisions.push(refund(placed, reason));
                    }
                    if reserved.is_some() && !self.release_requested {
                        decisions.push(release(placed, reason));
                    }
                } else if self.status == OrderStatus::Pending && self.fraud == Some(Fraud::Cleared)
                {
                    if let (Some(payment_id), Some((reservation_id, lines))) = (paid_with, reserved)
                    {
                        decisions.push(confirm(placed, payment_id, reservation_id, lines));
                    }
                }
            }
            // A result that arrives after the order was cancelled is compensated at once.
            OrderStatus::Cancelled { reason } => {
                if paid_with.is_some() && !self.refund_requested {
                    decisions.push(refund(placed, reason));
                }
                if reserved.is_some() && !self.release_requested {
                    decisions.push(release(placed, reason));
                }
            }
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
