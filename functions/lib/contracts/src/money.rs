//! Amounts are integer minor units (cents) with an ISO 4217 currency code: never floats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An ISO 4217 code: three upper-case letters, checked when decoded.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "CurrencySchema")]
pub struct Currency(String);

/// Only for the schema: the pattern a currency code must match.
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
struct CurrencySchema(#[schemars(regex(pattern = r"^[A-Z]{3}$"))] String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, MoneyError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code))
        } else {
            Err(MoneyError::BadCurrency(code))
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MoneyError {
    #[error("`{0}` is not an ISO 4217 currency code (three upper-case letters)")]
    BadCurrency(String),
    #[error("amount overflows")]
    Overflow,
}

/// Formats minor units for people: `2500` EUR -> `25.00 EUR` (two decimals for every
/// currency is good enough for display; amounts themselves stay integral).
pub fn display_amount(minor: u64, currency: &Currency) -> String {
    format!("{}.{:02} {}", minor / 100, minor % 100, currency)
}
