//! The charging rule, deterministic so that tests and demos can steer it:
//!
//! 1. An order that does not add up (see [`OrderPlaced::validate`]) is refused as invalid.
//! 2. The test token `tok_decline` is declined (`card-declined`).
//! 3. A total above the policy's limit (in minor units, any currency) is declined
//!    (`limit-exceeded`).
//! 4. Anything else is approved for exactly the order's total.
//!
//! The payment id is derived from the order id, so a retried charge has the same id.
//!
//! Refunds: only a `CHARGED` payment is refunded, in full, once; [`plan_refund`] says what a
//! refund request does to the order's payment as it stands.

use contracts::order::InvalidOrder;
use contracts::{Currency, OrderPlaced};

/// A payment's `status` as stored. It only ever moves `CHARGED -> REFUNDED`.
pub const CHARGED: &str = "CHARGED";
pub const DECLINED: &str = "DECLINED";
pub const REFUNDED: &str = "REFUNDED";

/// The token that always declines.
pub const DECLINE_TOKEN: &str = "tok_decline";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentPolicy {
    /// Largest total charged without review, in minor units.
    pub max_charge_minor: u64,
}

impl Default for PaymentPolicy {
    fn default() -> Self {
        PaymentPolicy {
            max_charge_minor: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentDecision {
    Approved {
        payment_id: String,
        amount: u64,
        currency: Currency,
    },
    Declined {
        payment_id: String,
        amount: u64,
        currency: Currency,
        reason: DeclineReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    CardDeclined,
    LimitExceeded,
}

impl DeclineReason {
    pub fn code(self) -> &'static str {
        match self {
            DeclineReason::CardDeclined => "card-declined",
            DeclineReason::LimitExceeded => "limit-exceeded",
        }
    }
}

impl PaymentDecision {
    pub fn payment_id(&self) -> &str {
        match self {
            PaymentDecision::Approved { payment_id, .. }
            | PaymentDecision::Declined { payment_id, .. } => payment_id,
        }
    }
}

/// Decides whether to charge `order`.
pub fn decide(
    order: &OrderPlaced,
    policy: &PaymentPolicy,
) -> Result<PaymentDecision, InvalidOrder> {
    order.validate()?;
    let payment_id = payment_id_for(&order.order_id);
    let (amount, currency) = (order.total, order.currency.clone());
    let decline = |reason| PaymentDecision::Declined {
        payment_id: payment_id.clone(),
        amount,
        currency: currency.clone(),
        reason,
    };
    Ok(if order.payment_token == DECLINE_TOKEN {
        decline(DeclineReason::CardDeclined)
    } else if amount > policy.max_charge_minor {
        decline(DeclineReason::LimitExceeded)
    } else {
        PaymentDecision::Approved {
            payment_id: payment_id.clone(),
            amount,
            currency,
        }
    })
}

/// `pay_` and 16 hex digits derived from the order id.
pub fn payment_id_for(order_id: &str) -> String {
    let id = eventkit::envelope::derived_event_id(order_id, "Payment", "");
    format!("pay_{}", id.replace('-', "").get(..16).unwrap_or_default())
}

/// What a refund request does to the order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundPlan {
    /// The money was taken and not given back: refund it.
    Refund,
    /// This very request refunded it and may have died before publishing: publish
    /// `PaymentRefunded` again (same derived id, so downstream sees one event).
    Republish,
    /// There is nothing for this request to give back.
    Nothing(NoRefund),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRefund {
    /// No payment was recorded for the order.
    NoPayment,
    /// The charge was declined: nothing was taken.
    Declined,
    /// Another request already refunded it; refunding twice would pay out twice.
    RefundedByAnother,
    /// A status this code does not know: refunding blind could pay out twice.
    UnknownStatus,
}

/// `status` and `refunded_by` (the request that refunded it, if any) are the order's stored
/// payment's; `request_event_id` is the refund request handled now. (No payment at all is
/// [`NoRefund::NoPayment`].)
pub fn plan_refund(status: &str, refunded_by: Option<&str>, request_event_id: &str) -> RefundPlan {
    match status {
        CHARGED => RefundPlan::Refund,
        DECLINED => RefundPlan::Nothing(NoRefund::Declined),
        REFUNDED if refunded_by == Some(request_event_id) => RefundPlan::Republish,
        REFUNDED => RefundPlan::Nothing(NoRefund::RefundedByAnother),
        _ => RefundPlan::Nothing(NoRefund::UnknownStatus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::OrderLine;

    fn order(token: &str, unit_price: u64) -> OrderPlaced {
        OrderPlaced {
            order_id: "ord-1".into(),
            customer_id: "cus-1".into(),
            customer_email: "ada@example.com".into(),
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 2,
                unit_price,
            }],
            total: unit_price * 2,
            payment_token: token.into(),
        }
    }

    #[test]
    fn approves_a_valid_order_for_its_total() {
        let d = decide(&order("tok_visa", 1250), &PaymentPolicy::default()).unwrap();
        assert!(matches!(d, PaymentDecision::Approved { amount: 2500, .. }));
        assert_eq!(d.payment_id(), payment_id_for("ord-1"));
    }

    #[test]
    fn declines_the_test_token() {
        let d = decide(&order(DECLINE_TOKEN, 1250), &PaymentPolicy::default()).unwrap();
        assert!(matches!(
            d,
            PaymentDecision::Declined {
                reason: DeclineReason::CardDeclined,
                ..
            }
        ));
    }

    #[test]
    fn declines_above_the_limit_and_approves_at_it() {
        let policy = PaymentPolicy {
            max_charge_minor: 2500,
        };
        assert!(matches!(
            decide(&order("tok_visa", 1250), &policy).unwrap(),
            PaymentDecision::Approved { .. }
        ));
        let d = decide(&order("tok_visa", 1251), &policy).unwrap();
        assert!(matches!(
            d,
            PaymentDecision::Declined {
                reason: DeclineReason::LimitExceeded,
                amount: 2502,
                ..
            }
        ));
    }

    #[test]
    fn refuses_an_order_that_does_not_add_up() {
        let mut o = order("tok_visa", 1250);
        o.total = 1;
        assert!(decide(&o, &PaymentPolicy::default()).is_err());
    }

    #[test]
    fn payment_ids_are_stable_per_order() {
        assert_eq!(payment_id_for("ord-1"), payment_id_for("ord-1"));
        assert_ne!(payment_id_for("ord-1"), payment_id_for("ord-2"));
        assert_eq!(payment_id_for("ord-1").len(), 20);
    }

    #[test]
    fn only_a_charged_payment_is_refunded() {
        assert_eq!(plan_refund(CHARGED, None, "r1"), RefundPlan::Refund);
        assert_eq!(
            plan_refund(DECLINED, None, "r1"),
            RefundPlan::Nothing(NoRefund::Declined)
        );
        assert_eq!(
            plan_refund("PENDING", None, "r1"),
            RefundPlan::Nothing(NoRefund::UnknownStatus)
        );
    }

    #[test]
    fn a_refund_is_answered_again_only_to_the_request_that_made_it() {
        assert_eq!(
            plan_refund(REFUNDED, Some("r1"), "r1"),
            RefundPlan::Republish
        );
        assert_eq!(
            plan_refund(REFUNDED, Some("r1"), "r2"),
            RefundPlan::Nothing(NoRefund::RefundedByAnother)
        );
        assert_eq!(
            plan_refund(REFUNDED, None, "r1"),
            RefundPlan::Nothing(NoRefund::RefundedByAnother)
        );
    }
}
