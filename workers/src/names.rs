//! NATS names of one deployment. Every name carries a configurable prefix (`LISTBACKUP_NATS_PREFIX`) so several
//! deployments, or test runs, share one NATS server without seeing each other's messages (DESIGN §5).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsNames {
    prefix: String,
}

/// 1 to 64 letters, digits, `-` and `_`: safe in a subject token and in stream and consumer names alike.
pub fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl NatsNames {
    /// A prefix is letters, digits, `-` and `_`: it becomes part of subjects, stream and consumer names.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if is_plain_token(prefix) {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err("the NATS prefix must be 1 to 64 letters, digits, '-' or '_'".into())
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<PREFIX>_EVENTS`: the JetStream stream of every committed event.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix.to_uppercase().replace('-', "_"))
    }

    /// `<prefix>.events.>`: what the events stream captures.
    pub fn events_wildcard(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// `<prefix>.events.<aggregateType>.<eventType>`
    pub fn event_subject(&self, aggregate_type: &str, event_type: &str) -> String {
        format!("{}.events.{aggregate_type}.{event_type}", self.prefix)
    }

    /// `<prefix>.progress.<jobId>`: fine-grained job progress on core NATS.
    pub fn progress_subject(&self, job_id: listbackup_domain::JobId) -> String {
        format!("{}.progress.{job_id}", self.prefix)
    }

    /// `<prefix>-<purpose>`: a durable consumer name.
    pub fn consumer(&self, purpose: &str) -> String {
        format!("{}-{purpose}", self.prefix)
    }

    /// `<PREFIX>_BACKUPS`: the work queue of backups waiting for a worker, one subject per account and
    /// connection (see `backup::queue`).
    pub fn backups_stream(&self) -> String {
        format!("{}_BACKUPS", self.prefix.to_uppercase().replace('-', "_"))
    }

    /// `<prefix>.backups.>`: every subject of the backups work queue.
    pub fn backups_wildcard(&self) -> String {
        format!("{}.backups.>", self.prefix)
    }

    /// `<prefix>.backups.<accountKey>.<connectionKey>`: the backups of one connection of one account.
    pub fn backup_subject(&self, account_key: &str, connection_key: &str) -> String {
        format!("{}.backups.{account_key}.{connection_key}", self.prefix)
    }

    /// The account and connection keys of a subject made by [`NatsNames::backup_subject`].
    pub fn backup_subject_keys<'a>(&self, subject: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".backups.")?;
        let (account, connection) = rest.split_once('.')?;
        (!account.is_empty() && !connection.is_empty() && !connection.contains('.'))
            .then_some((account, connection))
    }

    /// `<PREFIX>_DELIVERY_ADVISORIES`: the stream keeping JetStream's max-deliveries advisories about this
    /// deployment's consumers, which core NATS alone would lose while no worker listens.
    pub fn delivery_advisories_stream(&self) -> String {
        format!(
            "{}_DELIVERY_ADVISORIES",
            self.prefix.to_uppercase().replace('-', "_")
        )
    }

    /// The subjects of JetStream's advisories that a message of the backups work queue exhausted its deliveries
    /// to one of its consumers (`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`).
    pub fn backup_max_deliveries_advisories(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            self.backups_stream()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let names = NatsNames::new("lb-test_1").unwrap();
        assert_eq!(names.events_stream(), "LB_TEST_1_EVENTS");
        assert_eq!(names.events_wildcard(), "lb-test_1.events.>");
        assert_eq!(
            names.event_subject("source", "SyncRequested"),
            "lb-test_1.events.source.SyncRequested"
        );
        assert_eq!(names.consumer("workers"), "lb-test_1-workers");
        assert_eq!(
            names.delivery_advisories_stream(),
            "LB_TEST_1_DELIVERY_ADVISORIES"
        );
        assert_eq!(
            names.backup_max_deliveries_advisories(),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.LB_TEST_1_BACKUPS.*"
        );
        assert_eq!(names.backups_stream(), "LB_TEST_1_BACKUPS");
        let subject = names.backup_subject("acct", "conn");
        assert_eq!(subject, "lb-test_1.backups.acct.conn");
        assert_eq!(names.backup_subject_keys(&subject), Some(("acct", "conn")));
        assert_eq!(names.backup_subject_keys("lb-test_1.backups.acct"), None);
        assert_eq!(names.backup_subject_keys("other.backups.a.c"), None);
    }

    #[test]
    fn prefixes_that_would_break_subjects_are_refused() {
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(NatsNames::new(bad).is_err(), "{bad:?}");
        }
    }
}
