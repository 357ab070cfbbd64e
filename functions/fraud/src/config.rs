//! The rule's thresholds from the environment. A value that does not parse stops the
//! function at start-up: falling back to a default would run a rule nobody configured.

use contracts::FraudRule;
use thiserror::Error;

/// The thresholds used when their variables are not set.
pub const DEFAULT_RULE: FraudRule = FraudRule {
    min_orders: 5,
    window_seconds: 60,
    min_locations: 2,
};

/// The longest window allowed: stored orders expire a day after they were placed
/// ([`crate::repository::RETENTION`]), and a window must not outlive the orders in it. An
/// order may arrive up to a day minus the window late and still find the others of its
/// window. (The template's `FraudWindowSeconds` has the same bounds.)
pub const MAX_WINDOW_SECONDS: u32 = 86_400;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}")]
    Missing(String),
    #[error("{name} must be {expected}, got `{value}`")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Reads `FRAUD_MIN_ORDERS`, `FRAUD_WINDOW_SECONDS` and `FRAUD_MIN_LOCATIONS`.
pub fn rule_from_env() -> Result<FraudRule, ConfigError> {
    rule_from(|name| std::env::var(name).ok())
}

/// The rule from variables looked up by `var`, each defaulting to [`DEFAULT_RULE`]'s.
/// The bounds are the template parameters': one order is no pattern, and one location
/// is the least a pattern can have.
pub fn rule_from(var: impl Fn(&str) -> Option<String>) -> Result<FraudRule, ConfigError> {
    let threshold = |name: &'static str, default: u32, min: u32, max: u32, expected| match var(name)
    {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or(ConfigError::Invalid {
                name,
                value,
                expected,
            }),
    };
    Ok(FraudRule {
        min_orders: threshold(
            "FRAUD_MIN_ORDERS",
            DEFAULT_RULE.min_orders,
            2,
            u32::MAX,
            "a whole number of at least 2",
        )?,
        window_seconds: threshold(
            "FRAUD_WINDOW_SECONDS",
            DEFAULT_RULE.window_seconds,
            1,
            MAX_WINDOW_SECONDS,
            "a whole number of seconds from 1 to 86400",
        )?,
        min_locations: threshold(
            "FRAUD_MIN_LOCATIONS",
            DEFAULT_RULE.min_locations,
            1,
            u32::MAX,
            "a whole number of at least 1",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rule(vars: &[(&str, &str)]) -> Result<FraudRule, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rule_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn unset_thresholds_take_the_defaults() {
        assert_eq!(
            rule(&[]),
            Ok(FraudRule {
                min_orders: 5,
                window_seconds: 60,
                min_locations: 2
            })
        );
    }

    #[test]
    fn set_thresholds_are_used() {
        assert_eq!(
            rule(&[
                ("FRAUD_MIN_ORDERS", "3"),
                ("FRAUD_WINDOW_SECONDS", "120"),
                ("FRAUD_MIN_LOCATIONS", "3"),
            ]),
            Ok(FraudRule {
                min_orders: 3,
                window_seconds: 120,
                min_locations: 3
            })
        );
    }

    #[test]
    fn a_bad_threshold_is_a_startup_error_naming_the_variable() {
        for (name, value, expected) in [
            ("FRAUD_MIN_ORDERS", "five", "a whole number of at least 2"),
            ("FRAUD_MIN_ORDERS", "1", "a whole number of at least 2"),
            (
                "FRAUD_WINDOW_SECONDS",
                "-1",
                "a whole number of seconds from 1 to 86400",
            ),
            (
                "FRAUD_WINDOW_SECONDS",
                "86401",
                "a whole number of seconds from 1 to 86400",
            ),
            ("FRAUD_MIN_LOCATIONS", "0", "a whole number of at least 1"),
            ("FRAUD_MIN_LOCATIONS", "", "a whole number of at least 1"),
        ] {
            let err = rule(&[(name, value)]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{name} must be {expected}, got `{value}`")
            );
        }
    }

    #[test]
    fn the_longest_window_is_a_day() {
        assert_eq!(
            rule(&[("FRAUD_WINDOW_SECONDS", "86400")]).map(|r| r.window_seconds),
            Ok(86_400)
        );
    }
}
