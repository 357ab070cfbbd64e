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
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use contracts::Currency;
use eventkit::dynamo::attr::{get_n, get_s, s};
use eventkit::{DynamoError, RetryPolicy};

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

/// BatchGetItem takes at most 100 keys per request; an order has at most 100 lines, so this
/// is one request unless that limit grows.
const MAX_KEYS_PER_REQUEST: usize = 100;

/// How often to ask again for the keys BatchGetItem left unprocessed. "If DynamoDB returns
/// any unprocessed items, you should retry the batch operation on those items. However, we
/// strongly recommend that you use an exponential backoff algorithm" (BatchGetItem, Amazon
/// DynamoDB API Reference,
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
/// Keys still unprocessed after the last attempt fail the message transiently: SQS brings it
/// back, rather than an order being refused because DynamoDB was busy.
const UNPROCESSED_KEYS: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base_delay: Duration::from_millis(50),
    max_delay: Duration::from_millis(800),
};

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

    /// One BatchGetItem on this table: the items it returned and the keys it left.
    async fn batch_get(&self, request: KeysAndAttributes) -> Result<Page, DynamoError> {
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(|e| DynamoError::from_sdk(&e))?;
        let items = out
            .responses()
            .and_then(|r| r.get(&self.table))
            .cloned()
            .unwrap_or_default();
        let unprocessed = out
            .unprocessed_keys()
            .and_then(|u| u.get(&self.table))
            .cloned();
        Ok(Page { items, unprocessed })
    }
}

#[async_trait]
impl Catalogue for DynamoCatalogue {
    async fn prices(&self, skus: &[&str]) -> Result<HashMap<String, CataloguePrice>, DynamoError> {
        // BatchGetItem rejects a request that names a key twice.
        let unique: Vec<&str> = skus
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut prices = HashMap::new();
        for chunk in unique.chunks(MAX_KEYS_PER_REQUEST) {
            let keys = chunk
                .iter()
                .map(|sku| HashMap::from([("sku".to_string(), s(*sku))]))
                .collect();
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                // Only what a price check needs, not the stock or the name. Names for all
                // three, so no reserved word can break the expression.
                .projection_expression("#sku, #price, #currency")
                .expression_attribute_names("#sku", "sku")
                .expression_attribute_names("#price", "price")
                .expression_attribute_names("#currency", "currency")
                .build()
                .map_err(|e| DynamoError::Rejected(e.to_string()))?;
            let items = get_all(&UNPROCESSED_KEYS, request, |r| self.batch_get(r)).await?;
            prices.extend(items.iter().filter_map(listed_price));
        }
        Ok(prices)
    }
}

/// What one BatchGetItem returned for the table.
#[derive(Debug, Default)]
struct Page {
    items: Vec<Item>,
    unprocessed: Option<KeysAndAttributes>,
}

/// Sends `request` with `get`, then asks again, with backoff, for whatever keys each answer
/// left unprocessed, until none are left or `policy`'s attempts are used up.
async fn get_all<F, Fut>(
    policy: &RetryPolicy,
    request: KeysAndAttributes,
    mut get: F,
) -> Result<Vec<Item>, DynamoError>
where
    F: FnMut(KeysAndAttributes) -> Fut,
    Fut: Future<Output = Result<Page, DynamoError>>,
{
    let mut items = Vec::new();
    let mut pending = request;
    for attempt in 1..=policy.max_attempts {
        let page = get(pending).await?;
        items.extend(page.items);
        match page.unprocessed.filter(|k| !k.keys().is_empty()) {
            None => return Ok(items),
            Some(left) => pending = left,
        }
        if policy.allows_another(attempt) {
            tokio::time::sleep(policy.delay(attempt)).await;
        }
    }
    Err(DynamoError::Unavailable(format!(
        "BatchGetItem left catalogue keys unprocessed after {} attempts",
        policy.max_attempts
    )))
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
    use std::sync::Mutex;

    fn item(attributes: &[(&str, AttributeValue)]) -> Item {
        attributes
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    fn key(sku: &str) -> Item {
        item(&[("sku", s(sku))])
    }

    fn request(skus: &[&str]) -> KeysAndAttributes {
        KeysAndAttributes::builder()
            .set_keys(Some(skus.iter().map(|sku| key(sku)).collect()))
            .build()
            .unwrap()
    }

    const NO_WAIT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

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

    #[tokio::test]
    async fn unprocessed_keys_are_asked_for_again_until_none_are_left() {
        let asked: Mutex<Vec<Vec<Item>>> = Mutex::default();
        let answers = Mutex::new(vec![
            // First answer: one item, the other key left unprocessed.
            Page {
                items: vec![key("A")],
                unprocessed: Some(request(&["B"])),
            },
            Page {
                items: vec![key("B")],
                unprocessed: None,
            },
        ]);

        let items = get_all(&NO_WAIT, request(&["A", "B"]), |r| {
            eventkit::testing::lock(&asked).push(r.keys().to_vec());
            let page = eventkit::testing::lock(&answers).remove(0);
            async move { Ok(page) }
        })
        .await
        .unwrap();

        assert_eq!(items, vec![key("A"), key("B")]);
        assert_eq!(
            *eventkit::testing::lock(&asked),
            vec![vec![key("A"), key("B")], vec![key("B")]]
        );
    }

    #[tokio::test]
    async fn keys_left_unprocessed_after_every_attempt_fail_transiently() {
        let mut calls = 0;

        let err = get_all(&NO_WAIT, request(&["A"]), |r| {
            calls += 1;
            async move {
                Ok(Page {
                    items: Vec::new(),
                    unprocessed: Some(r),
                })
            }
        })
        .await
        .unwrap_err();

        assert_eq!(calls, NO_WAIT.max_attempts);
        assert!(!err.is_permanent(), "{err}");
    }

    #[tokio::test]
    async fn an_empty_unprocessed_map_means_done() {
        let items = get_all(&NO_WAIT, request(&["A"]), |_| async {
            Ok(Page {
                items: vec![key("A")],
                unprocessed: Some(
                    KeysAndAttributes::builder()
                        .set_keys(Some(Vec::new()))
                        .build()
                        .unwrap(),
                ),
            })
        })
        .await
        .unwrap();
        assert_eq!(items, vec![key("A")]);
    }
}
