//! The charging rule, deterministic so that tests and demos can steer it:
//!
//! 1. An order whose prices are not the catalogue's is declined (`price-mismatch`): every
//!    line's `unitPrice` must be its SKU's catalogue price and the order's currency the
//!    catalogue's, and a SKU the catalogue does not sell never matches ([`check_prices`]).
//!    The shop front computes the total, so without this check a client could set its own
//!    prices and be charged exactly what it asked for.
//! 2. The test token `tok_decline` is declined (`card-declined`).
//! 3. A total above the policy's limit (in minor units, any currency) is declined
//!    (`limit-exceeded`).
//! 4. Anything else is approved for exactly the order's total.
//!
//! An order that does not add up never gets here: it is refused when the event is taken in
//! (`OrderPlaced::check`), and dead-lettered as `invalid-data`.
//!
//! The payment id is derived from the order id, so a retried charge has the same id.
//!
//! Refunds: only a `CHARGED` payment is refunded, in full, once; [`plan_refund`] says what a
//! refund request does to the order's payment as it stands.

use std::collections::HashMap;

use contracts::{Currency, OrderPlaced};
use serde::{Deserialize, Serialize};

use crate::catalogue::CataloguePrice;

/// A payment's `status` as stored. It only ever moves `CHARGED -> REFUNDED`; `CANCELLED` is
/// the tombstone of an order cancelled before it was charged, and never moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PaymentStatus {
    Charged,
    Declined,
    Refunded,
    Cancelled,
}

impl PaymentStatus {
    /// The stored string, for the conditions of DynamoDB expressions (the same as serde's).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Charged => "CHARGED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// A line's price or the order's currency is not the catalogue's ([`check_prices`]).
    PriceMismatch,
}

impl DeclineReason {
    pub fn code(self) -> &'static str {
        match self {
            DeclineReason::CardDeclined => "card-declined",
            DeclineReason::LimitExceeded => "limit-exceeded",
            DeclineReason::PriceMismatch => "price-mismatch",
        }
    }
}

/// What comparing an order with the catalogue found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceCheck {
    /// Every line is priced as the catalogue prices its SKU, in the order's currency.
    Matches,
    /// These lines are not (in line order; one entry per offending line).
    Mismatch(Vec<PriceMismatch>),
}

/// One line whose price the catalogue does not confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceMismatch {
    pub sku: String,
    /// The line's `unitPrice`, in the order's currency.
    pub ordered: u64,
    /// The catalogue's price and currency; `None` when the SKU is not for sale.
    pub catalogue: Option<CataloguePrice>,
}

/// Compares every line of `order` with `catalogue` (SKU -> price; a SKU missing from it is
/// not for sale). A line matches only when its SKU is for sale at exactly its `unitPrice`
/// and in the order's currency: the same number in another currency is another price.
pub fn check_prices(
    order: &OrderPlaced,
    catalogue: &HashMap<String, CataloguePrice>,
) -> PriceCheck {
    let mismatches: Vec<PriceMismatch> = order
        .lines
        .iter()
        .filter_map(|line| {
            let listed = catalogue.get(&line.sku);
            let matches =
                listed.is_some_and(|p| p.price == line.unit_price && p.currency == order.currency);
            (!matches).then(|| PriceMismatch {
                sku: line.sku.clone(),
                ordered: line.unit_price,
                catalogue: listed.cloned(),
            })
        })
        .collect();
    if mismatches.is_empty() {
        PriceCheck::Matches
    } else {
        PriceCheck::Mismatch(mismatches)
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

/// Decides whether to charge `order` (validated when it was taken in), given what
/// [`check_prices`] found for it.
pub fn decide(order: &OrderPlaced, prices: &PriceCheck, policy: &PaymentPolicy) -> PaymentDecision {
    let payment_id = payment_id_for(&order.order_id);
    let (amount, currency) = (order.total, order.currency.clone());
    let decline = |reason| PaymentDecision::Declined {
        payment_id: payment_id.clone(),
        amount,
        currency: currency.clone(),
        reason,
    };
    if matches!(prices, PriceCheck::Mismatch(_)) {
        decline(DeclineReason::PriceMismatch)
    } else if order.payment_token == DECLINE_TOKEN {
        decline(DeclineReason::CardDeclined)
    } else if amount > policy.max_charge_minor {
        decline(DeclineReason::LimitExceeded)
    } else {
        PaymentDecision::Approved {
            payment_id: payment_id.clone(),
            amount,
            currency,
        }
    }
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
    /// The order was cancelled before it was charged (a tombstone): nothing was taken.
    Cancelled,
}

/// `status` and `refunded_by` (the request that refunded it, if any) are the order's stored
/// payment's; `request_event_id` is the refund request handled now. (No payment at all is
/// [`NoRefund::NoPayment`].)
pub fn plan_refund(
    status: PaymentStatus,
    refunded_by: Option<&str>,
    request_event_id: &str,
) -> RefundPlan {
    match status {
        PaymentStatus::Charged => RefundPlan::Refund,
        PaymentStatus::Declined => RefundPlan::Nothing(NoRefund::Declined),
        PaymentStatus::Refunded if refunded_by == Some(request_event_id) => RefundPlan::Republish,
        PaymentStatus::Refunded => RefundPlan::Nothing(NoRefund::RefundedByAnother),
        PaymentStatus::Cancelled => RefundPlan::Nothing(NoRefund::Cancelled),
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
            shipping_address: None,
        }
    }

    #[test]
    fn approves_a_valid_order_for_its_total() {
        let d = decide(
            &order("tok_visa", 1250),
            &PriceCheck::Matches,
            &PaymentPolicy::default(),
        );
        assert!(matches!(d, PaymentDecision::Approved { amount: 2500, .. }));
        assert_eq!(d.payment_id(), payment_id_for("ord-1"));
    }

    #[test]
    fn declines_the_test_token() {
        let d = decide(
            &order(DECLINE_TOKEN, 1250),
            &PriceCheck::Matches,
            &PaymentPolicy::default(),
        );
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
            decide(&order("tok_visa", 1250), &PriceCheck::Matches, &policy),
            PaymentDecision::Approved { .. }
        ));
        let d = decide(&order("tok_visa", 1251), &PriceCheck::Matches, &policy);
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
    fn payment_ids_are_stable_per_order() {
        assert_eq!(payment_id_for("ord-1"), payment_id_for("ord-1"));
        assert_ne!(payment_id_for("ord-1"), payment_id_for("ord-2"));
        assert_eq!(payment_id_for("ord-1").len(), 20);
    }

    #[test]
    fn only_a_charged_payment_is_refunded() {
        assert_eq!(
            plan_refund(PaymentStatus::Charged, None, "r1"),
            RefundPlan::Refund
        );
        assert_eq!(
            plan_refund(PaymentStatus::Declined, None, "r1"),
            RefundPlan::Nothing(NoRefund::Declined)
        );
    }

    #[test]
    fn a_refund_is_answered_again_only_to_the_request_that_made_it() {
        assert_eq!(
            plan_refund(PaymentStatus::Refunded, Some("r1"), "r1"),
            RefundPlan::Republish
        );
        assert_eq!(
            plan_refund(PaymentStatus::Refunded, Some("r1"), "r2"),
            RefundPlan::Nothing(NoRefund::RefundedByAnother)
        );
        assert_eq!(
            plan_refund(PaymentStatus::Refunded, None, "r1"),
            RefundPlan::Nothing(NoRefund::RefundedByAnother)
        );
    }

    #[test]
    fn statuses_are_stored_as_the_upper_case_strings() {
        for status in [
            PaymentStatus::Charged,
            PaymentStatus::Declined,
            PaymentStatus::Refunded,
            PaymentStatus::Cancelled,
        ] {
            let stored = serde_json::to_value(status).unwrap();
            assert_eq!(stored, status.as_str());
            assert_eq!(
                serde_json::from_value::<PaymentStatus>(stored).unwrap(),
                status
            );
        }
        assert_eq!(PaymentStatus::Charged.as_str(), "CHARGED");
        assert_eq!(PaymentStatus::Declined.as_str(), "DECLINED");
        assert_eq!(PaymentStatus::Refunded.as_str(), "REFUNDED");
        assert_eq!(PaymentStatus::Cancelled.as_str(), "CANCELLED");
    }

    #[test]
    fn nothing_is_refunded_for_an_order_cancelled_before_its_charge() {
        assert_eq!(
            plan_refund(PaymentStatus::Cancelled, None, "r1"),
            RefundPlan::Nothing(NoRefund::Cancelled)
        );
    }

    fn listed(entries: &[(&str, u64, &str)]) -> HashMap<String, CataloguePrice> {
        entries
            .iter()
            .map(|(sku, price, currency)| {
                let currency = Currency::try_from(currency.to_string()).unwrap();
                (
                    sku.to_string(),
                    CataloguePrice {
                        price: *price,
                        currency,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn an_order_at_the_catalogue_prices_matches() {
        let check = check_prices(&order("tok_visa", 1250), &listed(&[("MUG", 1250, "EUR")]));
        assert_eq!(check, PriceCheck::Matches);
    }

    #[test]
    fn a_price_another_currency_or_an_unknown_sku_is_a_mismatch() {
        let order = order("tok_visa", 1250);
        let cases = [
            ("cheaper in the order", listed(&[("MUG", 1500, "EUR")])),
            ("dearer in the order", listed(&[("MUG", 1000, "EUR")])),
            (
                "same number, other currency",
                listed(&[("MUG", 1250, "USD")]),
            ),
            ("not for sale", listed(&[("TEA", 1250, "EUR")])),
        ];
        for (case, catalogue) in cases {
            let PriceCheck::Mismatch(found) = check_prices(&order, &catalogue) else {
                panic!("{case}: should not match");
            };
            assert_eq!(
                found,
                vec![PriceMismatch {
                    sku: "MUG".into(),
                    ordered: 1250,
                    catalogue: catalogue.get("MUG").cloned(),
                }],
                "{case}"
            );
        }
    }

    #[test]
    fn every_line_is_checked_not_only_the_first() {
        let mut order = order("tok_visa", 1250);
        order.lines.push(OrderLine {
            sku: "TEA".into(),
            quantity: 1,
            unit_price: 1,
        });
        order.total += 1;
        let catalogue = listed(&[("MUG", 1250, "EUR"), ("TEA", 890, "EUR")]);

        let PriceCheck::Mismatch(found) = check_prices(&order, &catalogue) else {
            panic!("the tea is mispriced");
        };

        assert_eq!(found.len(), 1);
        assert_eq!(found[0].sku, "TEA");
    }

    #[test]
    fn a_price_mismatch_declines_before_any_other_rule() {
        let mismatch = PriceCheck::Mismatch(vec![PriceMismatch {
            sku: "MUG".into(),
            ordered: 1,
            catalogue: None,
        }]);
        // Even an order the card rule and the limit would let through.
        let d = decide(
            &order("tok_visa", 1250),
            &mismatch,
            &PaymentPolicy::default(),
        );
        assert_eq!(
            d,
            PaymentDecision::Declined {
                payment_id: payment_id_for("ord-1"),
                amount: 2500,
                currency: Currency::try_from("EUR".to_string()).unwrap(),
                reason: DeclineReason::PriceMismatch,
            }
        );
        assert_eq!(DeclineReason::PriceMismatch.code(), "price-mismatch");
    }
}
