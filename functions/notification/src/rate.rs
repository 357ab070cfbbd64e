//! How fast this process may send email, and the limiter that holds it to that.
//!
//! # Why
//!
//! SES accepts at most the account's maximum send rate (per account and region; 1 email a
//! second in the sandbox) and answers anything faster with `Throttling`. Without a limit, a
//! burst of events sends as many emails at once as messages run at once: up to
//! `BATCH_CONCURRENCY` (10) in each of the event source mapping's `MaximumConcurrency` (2)
//! execution environments, so 20 at once, and every throttled email is received again and,
//! after the queue's `maxReceiveCount`, dead-lettered.
//!
//! # The share of one process
//!
//! The rate is the account's (`EMAIL_MAX_SEND_RATE`, or `GetSendQuota`'s `MaxSendRate` when
//! that is unset or 0), and a process cannot see what the other execution environments
//! send. So each one keeps to `rate / EMAIL_SENDING_ENVIRONMENTS`, the number of
//! environments that may send at once (the mapping's `MaximumConcurrency`). When more send
//! than that (the setting is wrong, or other senders share the account), SES throttles and
//! the service retries within the invocation (see [`crate::service`]).
//!
//! # Scheduling: one slot every `1 / rate` seconds
//!
//! "Next free slot" scheduling: every send reserves the earliest instant that is at least
//! `1 / rate` after the slot reserved before it, and waits for it. That is a token bucket
//! with a burst of one: sends are evenly spaced, so no window of `w` seconds holds more than
//! `ceil(w * rate)` of them. A larger burst (up to `floor(rate)`) would send a batch sooner,
//! but SES does not document over what period it measures the rate, and the other
//! environments' sends are invisible here, so evenly spaced sends are the shape most likely
//! to stay under it; the cost is at most `(n - 1) / rate` seconds for `n` emails, which
//! nobody waiting for an email notices.
//!
//! The limiter is one per process and shared by all of its concurrent messages (behind a
//! mutex held only to compute a slot, never across an `.await`). It runs on tokio's clock,
//! so tests drive it with `tokio::time::pause()`.
//!
//! # Deadline
//!
//! A slot is reserved only if it comes no later than `latest`, the last instant at which the
//! caller can still use it (the service passes the invocation's deadline less a margin for
//! the send and what follows it). A slot later than that is refused at once, without
//! waiting and without reserving it, so a message that cannot be sent in this invocation
//! does not push the ones after it back.
//!
//! # Why hand-written
//!
//! `governor`, the maintained rate-limiting crate, does not fit: its waiting
//! (`until_ready`) sleeps with `futures-timer` on its own clock (quanta) rather than tokio's,
//! so `tokio::time::pause()` cannot drive it in tests; it has no "reserve a future slot, but
//! only if it comes before X" (its `check` is now-or-never and `until_ready` waits without
//! bound); and it would add several crates to the lock file for what is some forty lines
//! here.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

/// Emails per second for the whole function (all execution environments together); unset
/// or 0: ask SES (`GetSendQuota`).
pub const MAX_SEND_RATE_VAR: &str = "EMAIL_MAX_SEND_RATE";
/// How many execution environments may send at once: the event source mapping's
/// `MaximumConcurrency`.
pub const SENDING_ENVIRONMENTS_VAR: &str = "EMAIL_SENDING_ENVIRONMENTS";
/// The event source mapping's `MaximumConcurrency` in the template.
pub const DEFAULT_SENDING_ENVIRONMENTS: u32 = 2;
/// The rate used when SES cannot be asked: the sandbox's (1/s), slow but safe.
pub const SANDBOX_SEND_RATE: f64 = 1.0;

/// The longest wait between two sends a limiter accepts (a rate of one email a day).
const LONGEST_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateError {
    #[error("a send rate must be a number of emails per second above 0, got {0}")]
    NotPositive(f64),
    #[error(
        "a send rate of {0} emails per second is too low: one email would wait longer than a day"
    )]
    TooLow(f64),
}

/// No slot comes before the caller's deadline; nothing was reserved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no send slot before the deadline: the next one is {next_slot_in:?} away, {latest_in:?} are left (sending at most {per_second} emails a second)")]
pub struct NoSlotInTime {
    /// How long from now the first free slot is.
    pub next_slot_in: Duration,
    /// How long from now the caller's deadline is.
    pub latest_in: Duration,
    pub per_second: f64,
}

/// Hands out send slots at most `per_second` a second, evenly spaced (see the module doc).
#[derive(Debug)]
pub struct SendRateLimiter {
    per_second: f64,
    interval: Duration,
    /// The earliest instant the next slot may have; `None` before the first one.
    next_free: Mutex<Option<Instant>>,
}

impl SendRateLimiter {
    pub fn new(per_second: f64) -> Result<Self, RateError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateError::NotPositive(per_second));
        }
        // Bounded so that instants plus intervals stay far from overflowing.
        let interval = Duration::try_from_secs_f64(1.0 / per_second)
            .ok()
            .filter(|interval| *interval <= LONGEST_INTERVAL)
            .ok_or(RateError::TooLow(per_second))?;
        Ok(SendRateLimiter {
            per_second,
            interval,
            next_free: Mutex::new(None),
        })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Reserves the earliest free slot at or after `not_before` (and now), if it is no later
    /// than `latest`; otherwise reserves nothing.
    pub fn reserve(&self, not_before: Instant, latest: Instant) -> Result<Instant, NoSlotInTime> {
        let now = Instant::now();
        // The state is one instant, consistent at every point: a panic elsewhere while the
        // lock was held cannot have left it half-written.
        let mut next_free = self
            .next_free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let earliest = not_before.max(now);
        let slot = next_free.map_or(earliest, |free| free.max(earliest));
        if slot > latest {
            return Err(NoSlotInTime {
                next_slot_in: slot - now,
                latest_in: latest.saturating_duration_since(now),
                per_second: self.per_second,
            });
        }
        *next_free = Some(slot + self.interval);
        Ok(slot)
    }

    /// Waits for the earliest free slot at or after `not_before`, if it is no later than
    /// `latest`; otherwise returns at once, having reserved nothing.
    pub async fn acquire(&self, not_before: Instant, latest: Instant) -> Result<(), NoSlotInTime> {
        let slot = self.reserve(not_before, latest)?;
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
        Ok(())
    }
}

/// The account's sending limits, as SES reports them (`GetSendQuota`).
#[async_trait]
pub trait SendQuota: Send + Sync {
    /// The account's maximum send rate in this region, emails per second (`MaxSendRate`).
    async fn max_send_rate(&self) -> Result<f64, String>;
}

/// Where the account's rate comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AccountRate {
    /// Set by `EMAIL_MAX_SEND_RATE`.
    Configured(f64),
    /// `EMAIL_MAX_SEND_RATE` unset or 0: SES's `MaxSendRate`.
    AskSes,
}

/// The sending rate settings, read once at cold start.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRateSettings {
    pub account_rate: AccountRate,
    /// Execution environments that may send at once, each keeping to its share.
    pub environments: u32,
}

impl SendRateSettings {
    /// Reads `EMAIL_MAX_SEND_RATE` and `EMAIL_SENDING_ENVIRONMENTS`.
    pub fn from_env() -> Result<Self, String> {
        let var = |name| std::env::var(name).ok();
        SendRateSettings::parse(
            var(MAX_SEND_RATE_VAR).as_deref(),
            var(SENDING_ENVIRONMENTS_VAR).as_deref(),
        )
    }

    /// The settings from the variables' values (`None`: unset). An empty value counts as
    /// unset, as CloudFormation passes an empty parameter.
    pub fn parse(max_send_rate: Option<&str>, environments: Option<&str>) -> Result<Self, String> {
        let account_rate = match given(max_send_rate) {
            None => AccountRate::AskSes,
            Some(v) => match v.parse::<f64>() {
                Ok(0.0) => AccountRate::AskSes,
                Ok(rate) if rate.is_finite() && rate > 0.0 => AccountRate::Configured(rate),
                _ => {
                    return Err(format!(
                        "{MAX_SEND_RATE_VAR} must be a number of emails per second above 0 \
                         (or 0 to ask SES), got `{v}`"
                    ))
                }
            },
        };
        let environments = match given(environments) {
            None => DEFAULT_SENDING_ENVIRONMENTS,
            Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("{SENDING_ENVIRONMENTS_VAR} must be a whole number above 0, got `{v}`")
            })?,
        };
        Ok(SendRateSettings {
            account_rate,
            environments,
        })
    }

    /// This process's limiter: its share of the account's rate, asking `quota` for that
    /// rate when it is not configured. A failed or senseless answer is logged and the sandbox
    /// rate used: sending slowly is better than not starting.
    pub async fn limiter(&self, quota: &dyn SendQuota) -> Result<SendRateLimiter, String> {
        let (account_rate, source) = match self.account_rate {
            AccountRate::Configured(rate) => (rate, MAX_SEND_RATE_VAR),
            AccountRate::AskSes => match quota.max_send_rate().await {
                Ok(rate) if rate.is_finite() && rate > 0.0 => (rate, "GetSendQuota"),
                Ok(rate) => {
                    tracing::warn!(
                        max_send_rate = rate,
                        fallback = SANDBOX_SEND_RATE,
                        "SES reported a maximum send rate that is not above 0; \
                         sending at the sandbox rate"
                    );
                    (SANDBOX_SEND_RATE, "sandbox fallback")
                }
                Err(error) => {
                    tracing::warn!(%error, fallback = SANDBOX_SEND_RATE,
                        "could not read the SES send quota; sending at the sandbox rate");
                    (SANDBOX_SEND_RATE, "sandbox fallback")
                }
            },
        };
        let limiter = SendRateLimiter::new(account_rate / f64::from(self.environments))
            .map_err(|e| format!("{MAX_SEND_RATE_VAR} / {SENDING_ENVIRONMENTS_VAR}: {e}"))?;
        tracing::info!(
            account_rate,
            source,
            environments = self.environments,
            per_process = limiter.per_second(),
            "send rate"
        );
        Ok(limiter)
    }
}

/// A variable's value, trimmed; `None` when unset or empty.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn ten_concurrent_sends_at_one_a_second_over_two_environments_are_two_seconds_apart() {
        let settings = SendRateSettings::parse(Some("1"), Some("2")).unwrap();
        let limiter = Arc::new(settings.limiter(&Quota::unused()).await.unwrap());
        assert_eq!(limiter.per_second(), 0.5);
        let start = Instant::now();
        let latest = start + 60 * SECOND;

        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let limiter = limiter.clone();
            sends.spawn(async move {
                limiter.acquire(Instant::now(), latest).await.unwrap();
                Instant::now()
            });
        }
        let mut times = sends.join_all().await;
        times.sort();

        assert_eq!(times[0], start, "the first send does not wait");
        // 0.5 a second: never two sends in any window of 2 s.
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= 2 * SECOND, "{:?}", pair[1] - pair[0]);
        }
        let span = times[9] - times[0];
        assert!(
            span >= 18 * SECOND && span < 18 * SECOND + Duration::from_millis(10),
            "{span:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_at_once_and_not_reserved() {
        let limiter = SendRateLimiter::new(0.5).unwrap();
        let start = Instant::now();
        limiter.acquire(start, start + SECOND).await.unwrap();

        let refused = limiter.acquire(start, start + SECOND).await.unwrap_err();

        assert_eq!(Instant::now(), start, "refused without waiting");
        assert_eq!(refused.next_slot_in, 2 * SECOND);
        assert_eq!(refused.latest_in, SECOND);
        // The refused slot was not taken: the next caller gets it.
        assert_eq!(
            limiter.reserve(start, start + 10 * SECOND),
            Ok(start + 2 * SECOND)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_waits_for_not_before_and_an_idle_limiter_does_not_save_up_slots() {
        let limiter = SendRateLimiter::new(2.0).unwrap();
        let start = Instant::now();
        let far = start + 60 * SECOND;
        assert_eq!(limiter.reserve(start, far), Ok(start));
        // A retry after a backoff: not before its backoff, even with slots free.
        assert_eq!(
            limiter.reserve(start + 3 * SECOND, far),
            Ok(start + 3 * SECOND)
        );

        tokio::time::advance(10 * SECOND).await;
        let now = Instant::now();

        // Ten idle seconds leave one slot free now, not twenty.
        assert_eq!(limiter.reserve(now, far), Ok(now));
        assert_eq!(limiter.reserve(now, far), Ok(now + SECOND / 2));
    }

    #[test]
    fn a_rate_must_be_above_zero_and_not_absurdly_low() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(SendRateLimiter::new(rate).is_err(), "{rate}");
        }
        for rate in [1e-300, 1e-6] {
            assert_eq!(
                SendRateLimiter::new(rate).unwrap_err(),
                RateError::TooLow(rate)
            );
        }
        assert!(SendRateLimiter::new(1.0 / 3600.0).is_ok(), "one an hour");
    }

    /// A `GetSendQuota` port that answers `answer` and counts its calls.
    struct Quota {
        answer: Result<f64, String>,
        calls: AtomicUsize,
    }

    impl Quota {
        fn answering(answer: Result<f64, String>) -> Self {
            Quota {
                answer,
                calls: AtomicUsize::new(0),
            }
        }

        /// For settings that must not ask.
        fn unused() -> Self {
            Quota::answering(Err("not to be asked".into()))
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl SendQuota for Quota {
        async fn max_send_rate(&self) -> Result<f64, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer.clone()
        }
    }

    #[tokio::test]
    async fn unset_empty_or_zero_asks_ses_once_and_shares_its_rate() {
        for value in [None, Some(""), Some("0"), Some("0.0")] {
            let settings = SendRateSettings::parse(value, None).unwrap();
            assert_eq!(settings.account_rate, AccountRate::AskSes, "{value:?}");
            assert_eq!(settings.environments, DEFAULT_SENDING_ENVIRONMENTS);

            let quota = Quota::answering(Ok(14.0));
            let limiter = settings.limiter(&quota).await.unwrap();

            assert_eq!(quota.calls(), 1);
            assert_eq!(limiter.per_second(), 7.0, "14/s over 2 environments");
        }
    }

    #[tokio::test]
    async fn when_ses_cannot_be_asked_the_sandbox_rate_is_used() {
        let settings = SendRateSettings::parse(None, Some("1")).unwrap();
        for answer in [
            Err("AccessDenied: not allowed".to_string()),
            Ok(0.0),
            Ok(-1.0),
        ] {
            let limiter = settings
                .limiter(&Quota::answering(answer.clone()))
                .await
                .unwrap();
            assert_eq!(limiter.per_second(), SANDBOX_SEND_RATE, "{answer:?}");
        }
    }

    #[tokio::test]
    async fn a_configured_rate_is_used_without_asking_ses() {
        let settings = SendRateSettings::parse(Some("2.5"), Some("1")).unwrap();
        assert_eq!(settings.account_rate, AccountRate::Configured(2.5));

        let quota = Quota::answering(Ok(14.0));
        let limiter = settings.limiter(&quota).await.unwrap();

        assert_eq!(limiter.per_second(), 2.5);
        assert_eq!(quota.calls(), 0);
        let shared = SendRateSettings::parse(Some(" 2.5 "), Some("5")).unwrap();
        assert_eq!(shared.limiter(&quota).await.unwrap().per_second(), 0.5);
    }

    #[test]
    fn a_rate_that_is_negative_or_not_a_number_is_a_startup_error() {
        for value in ["-1", "abc", "NaN", "inf", "1/s"] {
            let err = SendRateSettings::parse(Some(value), None).unwrap_err();
            assert!(err.contains(MAX_SEND_RATE_VAR), "{err}");
            assert!(err.contains(&format!("`{value}`")), "{err}");
        }
    }

    #[test]
    fn the_number_of_environments_is_a_whole_number_above_zero() {
        assert_eq!(
            SendRateSettings::parse(None, Some("3"))
                .unwrap()
                .environments,
            3
        );
        for value in ["0", "-2", "1.5", "two"] {
            let err = SendRateSettings::parse(None, Some(value)).unwrap_err();
            assert!(err.contains(SENDING_ENVIRONMENTS_VAR), "{err}");
        }
    }
}
