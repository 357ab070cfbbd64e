//! The start-up check on how long a confirmed order is held before it ships.
//!
//! The hold itself is the shipping queue's `DelaySeconds` (the template sets it from
//! `ShipmentHoldSeconds`); the function only refuses to run when the hold cannot do its job.
//! Fraud flags every order of a customer's window once a later order completes the pattern,
//! so the suspicion about an order can come up to `FRAUD_WINDOW_SECONDS` after the order was
//! confirmed. A hold shorter than the window would dispatch such an order before the saga
//! can ask shipping to cancel it.

use std::time::Duration;

use thiserror::Error;

/// Why the configured hold is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HoldError {
    #[error("{name} must be a whole number of seconds, not `{value}`")]
    NotSeconds { name: &'static str, value: String },
    #[error(
        "SHIPMENT_HOLD_SECONDS ({hold} s) is shorter than FRAUD_WINDOW_SECONDS ({window} s): \
         an order could be dispatched before a later order in its fraud window is seen; \
         deploy with ShipmentHoldSeconds >= FraudWindowSeconds"
    )]
    ShorterThanWindow { hold: u64, window: u64 },
}

/// Checks `SHIPMENT_HOLD_SECONDS` (`hold`) against `FRAUD_WINDOW_SECONDS` (`window`), both
/// as the environment holds them, and returns the hold.
pub fn check_hold(hold: &str, window: &str) -> Result<Duration, HoldError> {
    let seconds = |name: &'static str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| HoldError::NotSeconds {
                name,
                value: value.to_string(),
            })
    };
    let hold = seconds("SHIPMENT_HOLD_SECONDS", hold)?;
    let window = seconds("FRAUD_WINDOW_SECONDS", window)?;
    if hold < window {
        return Err(HoldError::ShorterThanWindow { hold, window });
    }
    Ok(Duration::from_secs(hold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_at_least_the_fraud_window_is_accepted() {
        assert_eq!(check_hold("300", "60"), Ok(Duration::from_secs(300)));
        assert_eq!(check_hold("60", "60"), Ok(Duration::from_secs(60)));
        // The test stage's values.
        assert_eq!(check_hold("30", "20"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn a_hold_shorter_than_the_fraud_window_is_refused() {
        let err = check_hold("59", "60").unwrap_err();
        assert_eq!(
            err,
            HoldError::ShorterThanWindow {
                hold: 59,
                window: 60
            }
        );
        assert!(err.to_string().contains("ShipmentHoldSeconds"), "{err}");
        assert!(check_hold("0", "1").is_err());
    }

    #[test]
    fn values_that_are_not_seconds_are_refused_by_name() {
        assert_eq!(
            check_hold("five minutes", "60"),
            Err(HoldError::NotSeconds {
                name: "SHIPMENT_HOLD_SECONDS",
                value: "five minutes".into()
            })
        );
        assert_eq!(
            check_hold("300", "-1"),
            Err(HoldError::NotSeconds {
                name: "FRAUD_WINDOW_SECONDS",
                value: "-1".into()
            })
        );
        assert!(check_hold("", "60").is_err());
    }
}
