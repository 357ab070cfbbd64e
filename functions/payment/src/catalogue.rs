//! The catalogue: what each SKU sells for, so that payment charges the catalogue's prices
//! and not whatever prices an `OrderPlaced` states.
//!
//! The prices live on the inventory table's stock items (`sku`, `stock`, `price` in minor
//! units, `currency`), seeded from `infra/seed/inventory.json`: one item per SKU, so a price
//! and its stock cannot name different SKUs. Payment only reads them. A SKU with no item, or
//! an item without a readable price and currency, is not for sale.
//!
//! The read is eventually consistent: a price changed a moment ago may still be read as the
//! old one, and the order is then judged by the old price, as if it had arrived a moment
//! earlier. Either way the outcome is stored, so a redelivery does not judge it again.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use contracts::Currency;
use eventkit::dynamo::attr::{get_n, get_s, s};
use eventkit::dynamo::{batch_get_all, BatchGet};
use eventkit::DynamoError;

/// A SKU's price in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CataloguePrice {
    /// In minor units of `currency`; at least 1.
    pub price: u64,
    pub currency: Currency,
}

#[async_trait]
pub trait Catalogue: Send + Sync {
    /// The price of each of `skus` that is for sale. A SKU missing from the answer is not
    /// for sale; a SKU asked for twice is answered once.
    async fn prices(&self, skus: &[&str]) -> Result<HashMap<String, CataloguePrice>, DynamoError>;
}

type Item = HashMap<String, AttributeValue>;

/// The catalogue on the inventory table (owned by the inventory function; read only here).
pub struct DynamoCatalogue {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCatalogue {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoCatalogue {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Catalogue for DynamoCatalogue {
    async fn prices(&self, skus: &[&str]) -> Result<HashMap<String, CataloguePrice>, DynamoError> {
        // BatchGetItem rejects a request that names a key twice.
        let keys = skus
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|sku| HashMap::from([("sku".to_string(), s(sku))]))
            .collect();
        let read = BatchGet {
            // Only what a price check needs, not the stock or the name. Names for all three,
            // so no reserved word can break the expression.
            projection: Some("#sku, #price, #currency"),
            names: &[
                ("#sku", "sku"),
                ("#price", "price"),
                ("#currency", "currency"),
            ],
            // Eventually consistent: see the module's docs.
            consistent_read: false,
        };
        // Keys DynamoDB still leaves unprocessed after the helper's last attempt fail the
        // message transiently: SQS brings it back, rather than an order being refused
        // because DynamoDB was busy.
        let items = batch_get_all(&self.client, &self.table, keys, &read).await?;
        Ok(items.iter().filter_map(listed_price).collect())
    }
}

/// A stock item's price, if it has one that can be charged: a whole number of at least one
/// minor unit and a currency code. Anything else is not for sale, so such an order is
/// refused as mispriced instead of being charged a price nobody set.
fn listed_price(item: &Item) -> Option<(String, CataloguePrice)> {
    let sku = get_s(item, "sku")?;
    let price = get_n::<u64>(item, "price").filter(|p| *p >= 1);
    let currency = get_s(item, "currency").and_then(|c| Currency::try_from(c.to_string()).ok());
    match (price, currency) {
        (Some(price), Some(currency)) => {
            Some((sku.to_string(), CataloguePrice { price, currency }))
        }
        _ => {
            tracing::warn!(
                sku,
                "catalogue item has no usable price or currency; not for sale"
            );
            None
        }
    }
}

/// The catalogue in memory, for the service's tests (and, with the `testing` feature,
/// other crates').
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct MemoryCatalogue {
    prices: std::sync::Mutex<HashMap<String, CataloguePrice>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryCatalogue {
    /// Puts `sku` on sale at `price` minor units of `currency`.
    pub fn list(&self, sku: &str, price: u64, currency: &str) {
        let currency = Currency::try_from(currency.to_string()).expect("a currency code");
        eventkit::testing::lock(&self.prices)
            .insert(sku.to_string(), CataloguePrice { price, currency });
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl Catalogue for MemoryCatalogue {
    async fn prices(&self, skus: &[&str]) -> Result<HashMap<String, CataloguePrice>, DynamoError> {
        let listed = eventkit::testing::lock(&self.prices);
        Ok(skus
            .iter()
            .filter_map(|sku| listed.get(*sku).map(|p| (sku.to_string(), p.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(attributes: &[(&str, AttributeValue)]) -> Item {
        attributes
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    #[test]
    fn a_stock_item_with_a_price_and_currency_is_for_sale() {
        let eur = Currency::try_from("EUR".to_string()).unwrap();
        let listed = listed_price(&item(&[
            ("sku", s("MUG-RED")),
            ("price", AttributeValue::N("1250".into())),
            ("currency", s("EUR")),
        ]));
        assert_eq!(
            listed,
            Some((
                "MUG-RED".to_string(),
                CataloguePrice {
                    price: 1250,
                    currency: eur
                }
            ))
        );
    }

    #[test]
    fn a_stock_item_without_a_usable_price_is_not_for_sale() {
        let n = |v: &str| AttributeValue::N(v.into());
        let cases = [
            (
                "no price (stock only)",
                item(&[("sku", s("A")), ("currency", s("EUR"))]),
            ),
            (
                "no currency",
                item(&[("sku", s("A")), ("price", n("1250"))]),
            ),
            (
                "zero",
                item(&[("sku", s("A")), ("price", n("0")), ("currency", s("EUR"))]),
            ),
            (
                "negative",
                item(&[("sku", s("A")), ("price", n("-5")), ("currency", s("EUR"))]),
            ),
            (
                "fraction",
                item(&[
                    ("sku", s("A")),
                    ("price", n("12.5")),
                    ("currency", s("EUR")),
                ]),
            ),
            (
                "price as a string",
                item(&[
                    ("sku", s("A")),
                    ("price", s("1250")),
                    ("currency", s("EUR")),
                ]),
            ),
            (
                "lower-case currency",
                item(&[
                    ("sku", s("A")),
                    ("price", n("1250")),
                    ("currency", s("eur")),
                ]),
            ),
        ];
        for (case, stored) in cases {
            assert_eq!(listed_price(&stored), None, "{case}");
        }
    }
}
