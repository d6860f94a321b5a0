//! NATS names of one deployment. Every name carries a configurable prefix (`LISTBACKUP_NATS_PREFIX`) so several
//! deployments, or test runs, share one NATS server without seeing each other's messages (DESIGN §5).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsNames {
    prefix: String,
}

impl NatsNames {
    /// A prefix is letters, digits, `-` and `_`: it becomes part of subjects, stream and consumer names.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let valid = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
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
    pub fn progress_subject(&self, job_id: &str) -> String {
        format!("{}.progress.{job_id}", self.prefix)
    }

    /// `<prefix>-<purpose>`: a durable consumer name.
    pub fn consumer(&self, purpose: &str) -> String {
        format!("{}-{purpose}", self.prefix)
    }

    /// `<PREFIX>_DELIVERY_ADVISORIES`: the stream keeping JetStream's max-deliveries advisories about this
    /// deployment's consumers, which core NATS alone would lose while no worker listens.
    pub fn delivery_advisories_stream(&self) -> String {
        format!(
            "{}_DELIVERY_ADVISORIES",
            self.prefix.to_uppercase().replace('-', "_")
        )
    }

    /// The subject of JetStream's advisory that a message of the events stream exhausted its deliveries to
    /// `consumer`.
    pub fn max_deliveries_advisory(&self, consumer: &str) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{consumer}",
            self.events_stream()
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
            names.max_deliveries_advisory("lb-test_1-workers"),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.LB_TEST_1_EVENTS.lb-test_1-workers"
        );
    }

    #[test]
    fn prefixes_that_would_break_subjects_are_refused() {
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(NatsNames::new(bad).is_err(), "{bad:?}");
        }
    }
}
