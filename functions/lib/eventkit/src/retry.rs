//! One retry schedule for every in-process retry: exponential backoff with full jitter.
//!
//! Full jitter spreads retries of writers that lost the same race (concurrent appends to
//! one stream, a throttled PutEvents) so they do not collide again in lock step; see
//! "Exponential Backoff And Jitter" in the AWS Architecture Blog, which the AWS SDKs'
//! standard retry mode follows.

use std::time::Duration;

/// Attempt `n` (from 1) waits a random time in `[0, min(max_delay, base_delay * 2^n))`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1 after the first failure).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_delay);
        let millis = exp.as_millis() as u64;
        Duration::from_millis(if millis == 0 {
            0
        } else {
            fastrand::u64(0..millis)
        })
    }

    /// Whether another attempt is allowed after `attempt` attempts failed.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_below_the_exponential_bound_and_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(300),
        };
        for _ in 0..200 {
            assert!(policy.delay(1) < Duration::from_millis(20));
            assert!(policy.delay(3) < Duration::from_millis(80));
            assert!(policy.delay(9) < Duration::from_millis(300));
        }
        assert!(policy.allows_another(9));
        assert!(!policy.allows_another(10));
    }

    #[test]
    fn a_zero_base_never_waits() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        };
        assert_eq!(policy.delay(2), Duration::ZERO);
    }
}
