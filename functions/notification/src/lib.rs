//! The notification service: emails customers about their orders (confirmed, cancelled,
//! shipped) and welcomes new ones, through SES, at most once per event; publishes
//! `EmailSent`.
//!
//! - [`templates`]: pure rendering of each email (subject, text and HTML body).
//! - [`mailer`]: the mail port and its SES adapter.
//! - [`rate`]: how fast this process may send (its share of the account's SES rate), and
//!   the limiter that holds every send to it.
//! - [`repository`]: the emails table, the record that keeps an event from being mailed
//!   twice (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together.

pub mod mailer;
pub mod rate;
pub mod repository;
pub mod service;
pub mod templates;

pub use mailer::{Mailer, SendError, SesMailer};
pub use rate::{SendQuota, SendRateLimiter, SendRateSettings};
pub use repository::{
    DynamoEmailRepository, EmailRecord, EmailRepository, EmailStatus, RepositoryError,
};
pub use service::{NotificationService, ROUTES};
pub use templates::{Email, Template};

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("NotificationRule", super::ROUTES);
    }
}
