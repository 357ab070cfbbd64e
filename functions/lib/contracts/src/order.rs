use eventcore::envelope::unsupported_version;
use eventcore::ids::check_data_id;
use eventcore::versions::{add_null_field, required_since};
use eventcore::{DecodeError, EventData, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeSet;

use crate::address::ShippingAddress;
use crate::limits::{
    is_sendable_email, MAX_DISTINCT_SKUS, MAX_LINE_QUANTITY, MAX_ORDER_LINES,
    MAX_PAYMENT_TOKEN_CHARS,
};
use crate::money::{Currency, MoneyError};

/// A customer placed an order. Sent by the storefront (or `aws events put-events`).
///
/// Version 2 added `shippingAddress`. Version 1 events (older samples, stored streams) are
/// upcast with the address `null`: their location is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderPlaced {
    #[schemars(length(min = 1, max = 64))]
    pub order_id: String,
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    #[schemars(length(min = 3, max = 254))]
    pub customer_email: String,
    pub currency: Currency,
    #[schemars(length(min = 1, max = 100))]
    pub lines: Vec<OrderLine>,
    /// Sum of `quantity * unitPrice` over the lines, in minor units.
    pub total: u64,
    /// The card token to charge. `tok_decline` is always declined (for tests and demos).
    #[schemars(length(min = 1, max = 128))]
    pub payment_token: String,
    /// Where the order ships. Required from schema version 2 on; `null` only in orders
    /// upcast from version 1, whose location is unknown.
    #[schemars(with = "crate::nullable::PresentOrNull<ShippingAddress>")]
    pub shipping_address: Option<ShippingAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderLine {
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
    #[schemars(range(min = 1, max = 1000))]
    pub quantity: u32,
    /// Price of one unit in minor units.
    pub unit_price: u64,
}

impl EventData for OrderPlaced {
    const DETAIL_TYPE: &'static str = "OrderPlaced";
    const SOURCE: &'static str = crate::sources::ORDERS;
    const SCHEMA_VERSION: u32 = 2;

    fn validate(&self) -> Result<(), FieldError> {
        self.check()
            .map_err(|e| FieldError::new(e.path(), e.to_string()))?;
        match &self.shipping_address {
            Some(address) => address.check("data.shippingAddress"),
            None => Ok(()),
        }
    }

    fn validate_sent(&self, version: u32) -> Result<(), FieldError> {
        required_since(
            version,
            2,
            "shippingAddress",
            self.shipping_address.is_some(),
        )
    }

    fn upcast(version: u32, data: Value) -> Result<Value, DecodeError> {
        match version {
            1 => add_null_field(Self::DETAIL_TYPE, "shippingAddress", data),
            2 => Ok(data),
            _ => Err(unsupported_version::<Self>(version)),
        }
    }
}

/// Why an order is not acceptable as sent.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InvalidOrder {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error(transparent)]
    Id(#[from] FieldError),
    #[error("`{field}` is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("an order has 1 to {MAX_ORDER_LINES} lines, this one has {0}")]
    LineCount(usize),
    #[error("an order holds at most {MAX_DISTINCT_SKUS} distinct SKUs, this one has {0}")]
    DistinctSkus(usize),
    #[error("line {line}: quantity must be 1 to {MAX_LINE_QUANTITY}, got {quantity}")]
    Quantity { line: usize, quantity: u32 },
    #[error("`customerEmail` is not an address mail can be sent to")]
    Email,
    #[error("total is {stated} but the lines add up to {computed}")]
    TotalMismatch { stated: u64, computed: u64 },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl InvalidOrder {
    /// The JSON path of the offending field.
    pub fn path(&self) -> String {
        match self {
            InvalidOrder::Empty { field } | InvalidOrder::TooLong { field, .. } => {
                format!("data.{field}")
            }
            InvalidOrder::Id(e) => e.path.clone(),
            InvalidOrder::LineCount(_) | InvalidOrder::DistinctSkus(_) => "data.lines".into(),
            InvalidOrder::Email => "data.customerEmail".into(),
            InvalidOrder::Quantity { line, .. } => format!("data.lines[{line}].quantity"),
            InvalidOrder::TotalMismatch { .. } | InvalidOrder::Money(MoneyError::Overflow) => {
                "data.total".into()
            }
            InvalidOrder::Money(MoneyError::BadCurrency(_)) => "data.currency".into(),
        }
    }
}

impl OrderPlaced {
    /// Checks what the types cannot: id limits, sizes, quantities and that the total adds
    /// up.
    pub fn check(&self) -> Result<(), InvalidOrder> {
        check_data_id("orderId", &self.order_id)?;
        check_data_id("customerId", &self.customer_id)?;
        if self.payment_token.trim().is_empty() {
            return Err(InvalidOrder::Empty {
                field: "paymentToken",
            });
        }
        if self.payment_token.chars().count() > MAX_PAYMENT_TOKEN_CHARS {
            return Err(InvalidOrder::TooLong {
                field: "paymentToken",
                max: MAX_PAYMENT_TOKEN_CHARS,
            });
        }
        if !is_sendable_email(&self.customer_email) {
            return Err(InvalidOrder::Email);
        }
        if self.lines.is_empty() || self.lines.len() > MAX_ORDER_LINES {
            return Err(InvalidOrder::LineCount(self.lines.len()));
        }
        for (i, line) in self.lines.iter().enumerate() {
            check_data_id(&format!("lines[{i}].sku"), &line.sku)?;
            if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
                return Err(InvalidOrder::Quantity {
                    line: i,
                    quantity: line.quantity,
                });
            }
        }
        let distinct = self
            .lines
            .iter()
            .map(|l| l.sku.as_str())
            .collect::<BTreeSet<_>>();
        if distinct.len() > MAX_DISTINCT_SKUS {
            return Err(InvalidOrder::DistinctSkus(distinct.len()));
        }
        let computed = self.computed_total()?;
        if computed != self.total {
            return Err(InvalidOrder::TotalMismatch {
                stated: self.total,
                computed,
            });
        }
        Ok(())
    }

    /// Sum of the lines, without overflow.
    pub fn computed_total(&self) -> Result<u64, MoneyError> {
        self.lines.iter().try_fold(0u64, |sum, line| {
            line.unit_price
                .checked_mul(u64::from(line.quantity))
                .and_then(|amount| sum.checked_add(amount))
                .ok_or(MoneyError::Overflow)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn order() -> OrderPlaced {
        OrderPlaced {
            order_id: "ord-1".into(),
            customer_id: "cus-1".into(),
            customer_email: "ada@example.com".into(),
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            lines: vec![
                OrderLine {
                    sku: "MUG".into(),
                    quantity: 2,
                    unit_price: 1250,
                },
                OrderLine {
                    sku: "TEA".into(),
                    quantity: 1,
                    unit_price: 500,
                },
            ],
            total: 3000,
            payment_token: "tok_visa".into(),
            shipping_address: Some(crate::address::tests::address("FR", "Paris")),
        }
    }

    #[test]
    fn a_consistent_order_is_valid() {
        assert_eq!(order().check(), Ok(()));
    }

    #[test]
    fn inconsistent_orders_say_what_is_wrong() {
        let mut o = order();
        o.total = 1;
        assert_eq!(
            o.check(),
            Err(InvalidOrder::TotalMismatch {
                stated: 1,
                computed: 3000
            })
        );
        let mut o = order();
        o.lines[1].quantity = 0;
        assert_eq!(
            o.check(),
            Err(InvalidOrder::Quantity {
                line: 1,
                quantity: 0
            })
        );
        let mut o = order();
        o.lines.clear();
        assert_eq!(o.check(), Err(InvalidOrder::LineCount(0)));
        let mut o = order();
        o.lines[0].unit_price = u64::MAX;
        assert_eq!(o.check(), Err(InvalidOrder::Money(MoneyError::Overflow)));
        let mut o = order();
        o.order_id = "ord#1".into();
        assert_eq!(o.check().unwrap_err().path(), "data.orderId");
        let mut o = order();
        o.payment_token = " ".into();
        assert_eq!(
            o.check(),
            Err(InvalidOrder::Empty {
                field: "paymentToken"
            })
        );
    }

    #[test]
    fn an_order_holds_what_every_consumer_can_handle() {
        let line = |sku: String| OrderLine {
            sku,
            quantity: 1,
            unit_price: 1,
        };
        let with_lines = |lines: Vec<OrderLine>| {
            let mut o = order();
            o.total = lines.len() as u64;
            o.lines = lines;
            o
        };
        let distinct = |n: usize| (0..n).map(|i| line(format!("SKU-{i}"))).collect::<Vec<_>>();
        assert_eq!(with_lines(distinct(MAX_DISTINCT_SKUS)).check(), Ok(()));
        assert_eq!(
            with_lines(distinct(MAX_DISTINCT_SKUS + 1)).check(),
            Err(InvalidOrder::DistinctSkus(MAX_DISTINCT_SKUS + 1))
        );
        let mut repeated = distinct(MAX_DISTINCT_SKUS);
        repeated.push(line("SKU-0".into()));
        assert_eq!(
            with_lines(repeated).check(),
            Ok(()),
            "a repeated SKU is one SKU"
        );
        let mut o = order();
        o.customer_email = "ada@localhost".into();
        assert_eq!(o.check(), Err(InvalidOrder::Email));
        assert_eq!(o.check().unwrap_err().path(), "data.customerEmail");
    }

    #[test]
    fn currency_codes_are_checked_when_decoded() {
        let mut json = serde_json::to_value(order()).unwrap();
        json["currency"] = "eur".into();
        let err = serde_json::from_value::<OrderPlaced>(json).unwrap_err();
        assert!(err.to_string().contains("ISO 4217"), "{err}");
    }
}
