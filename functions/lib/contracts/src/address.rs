//! Where an order ships, and the location fraud detection compares.

use eventcore::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An ISO 3166-1 alpha-2 country code (`DE`, `FR`), checked against the assigned codes when
/// decoded.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "CountrySchema")]
pub struct Country(String);

/// Only for the schema: the pattern a country code must match.
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
struct CountrySchema(#[schemars(regex(pattern = r"^[A-Z]{2}$"))] String);

impl Country {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("`{0}` is not an ISO 3166-1 alpha-2 country code (two upper-case letters, assigned)")]
pub struct BadCountry(String);

impl TryFrom<String> for Country {
    type Error = BadCountry;
    fn try_from(code: String) -> Result<Self, BadCountry> {
        // The crate knows which codes are assigned; it also accepts lower case, which the
        // contract does not.
        let upper = code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase());
        if upper && isocountry::CountryCode::for_alpha2(&code).is_ok() {
            Ok(Country(code))
        } else {
            Err(BadCountry(code))
        }
    }
}

impl From<Country> for String {
    fn from(c: Country) -> String {
        c.0
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShippingAddress {
    #[schemars(length(min = 1, max = 200))]
    pub line1: String,
    #[schemars(length(min = 1, max = 100))]
    pub city: String,
    #[schemars(length(min = 1, max = 20))]
    pub postal_code: String,
    pub country: Country,
}

impl ShippingAddress {
    /// Lengths and blanks; the country was checked when decoded.
    pub fn check(&self, path: &str) -> Result<(), FieldError> {
        for (field, value, max) in [
            ("line1", &self.line1, 200),
            ("city", &self.city, 100),
            ("postalCode", &self.postal_code, 20),
        ] {
            if value.trim().is_empty() {
                return Err(FieldError::new(
                    format!("{path}.{field}"),
                    "must not be empty",
                ));
            }
            if value.chars().count() > max {
                return Err(FieldError::new(
                    format!("{path}.{field}"),
                    format!("is longer than {max} characters"),
                ));
            }
        }
        Ok(())
    }

    /// The location fraud detection compares: country and city.
    pub fn location(&self) -> Location {
        Location::new(self.country.clone(), &self.city)
    }
}

/// A country and a city, the city folded so that `Paris`, `PARIS` and ` paris ` are one.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub country: Country,
    pub city: String,
}

impl Location {
    pub fn new(country: Country, city: &str) -> Location {
        Location {
            country,
            city: city
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.country, self.city)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn address(country: &str, city: &str) -> ShippingAddress {
        ShippingAddress {
            line1: "1 Main Street".into(),
            city: city.into(),
            postal_code: "10001".into(),
            country: Country::try_from(country.to_string()).unwrap(),
        }
    }

    #[test]
    fn only_assigned_upper_case_codes_are_countries() {
        assert!(Country::try_from("DE".to_string()).is_ok());
        for bad in ["de", "XX", "DEU", "", "D"] {
            assert!(Country::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cities_are_folded_into_one_location() {
        let fr = Country::try_from("FR".to_string()).unwrap();
        assert_eq!(
            Location::new(fr.clone(), " Paris "),
            Location::new(fr, "PARIS")
        );
    }

    #[test]
    fn blank_address_lines_name_their_field() {
        let address = ShippingAddress {
            line1: " ".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: Country::try_from("FR".to_string()).unwrap(),
        };
        assert_eq!(
            address.check("data.shippingAddress").unwrap_err().path,
            "data.shippingAddress.line1"
        );
    }
}
