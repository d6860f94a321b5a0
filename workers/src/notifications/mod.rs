//! Notifications of backup outcomes (issue 14 §5): webhooks and e-mail.
//!
//! - [`dispatcher::NotificationDispatcher`] follows the event log from its checkpoint (`notifications`),
//!   maps the events customers are told about to notifications ([`payload`]), and queues one delivery per
//!   subscribed webhook in `webhook_deliveries`, in the same transaction as its checkpoint: a restart
//!   loses none and queues none twice.
//! - [`sender::DeliverySender`] works the queue off: at least once, in order per resource (a delivery waits
//!   until the one before it for the same webhook and resource is delivered or given up), signed
//!   ([`signature`]), retried with exponential backoff until a day after the notification, then given up.
//!   Every attempt is recorded (`webhook_delivery_attempts`).
//! - `mailto:` targets are sent through the configured SMTP server instead ([`email`]).

pub mod dispatcher;
pub mod email;
pub mod payload;
pub mod sender;
pub mod signature;

use std::time::Duration;

pub use dispatcher::NotificationDispatcher;
pub use sender::DeliverySender;

/// How deliveries are made and retried.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// Webhooks may target `http://` and loopback or private addresses (`LISTBACKUP_WEBHOOK_ALLOW_HTTP`;
    /// refused in production). Also checked against what a host name resolves to at delivery time.
    pub allow_private: bool,
    /// The first retry's delay; each next one doubles, up to [`NotificationSettings::retry_max_delay`],
    /// with up to as much again of random jitter (`LISTBACKUP_WEBHOOK_RETRY_BASE_MS`, default 30 s).
    pub retry_base: Duration,
    /// The longest delay between two attempts (`LISTBACKUP_WEBHOOK_RETRY_MAX_MS`, default 2 h).
    pub retry_max_delay: Duration,
    /// How long after the notification the last attempt may be made; the delivery is then given up
    /// (`LISTBACKUP_WEBHOOK_RETRY_FOR_SECS`, default 86,400: a day).
    pub retry_for: Duration,
    /// How long one attempt may take, connection to last byte (`LISTBACKUP_WEBHOOK_TIMEOUT_SECS`, default 10).
    pub timeout: Duration,
    /// The SMTP server and sender of e-mail notifications (`LISTBACKUP_SMTP_URL`, `LISTBACKUP_SMTP_FROM`).
    pub smtp: Option<email::SmtpSettings>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_base: Duration::from_secs(30),
            retry_max_delay: Duration::from_secs(2 * 3600),
            retry_for: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            smtp: None,
        }
    }
}

impl NotificationSettings {
    /// The delay before attempt `attempts + 1`, after `attempts` failed ones (1 or more): `retry_base`
    /// doubled `attempts - 1` times, at most `retry_max_delay`, plus up to as much again of jitter
    /// (backon's exponential backoff).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        use backon::BackoffBuilder as _;
        backon::ExponentialBuilder::new()
            .with_min_delay(self.retry_base)
            .with_factor(2.0)
            .with_max_delay(self.retry_max_delay)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempts.saturating_sub(1) as usize)
            .unwrap_or(self.retry_max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_with_jitter_up_to_the_cap() {
        let settings = NotificationSettings::default();
        for (attempts, base) in [(1, 30), (2, 60), (3, 120), (9, 7200), (20, 7200)] {
            let delay = settings.retry_delay(attempts);
            assert!(
                delay >= Duration::from_secs(base) && delay <= Duration::from_secs(2 * base),
                "after {attempts} attempts: {delay:?}"
            );
        }
    }
}
