/// How a domain error should be understood at the edges, independent of which aggregate raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The aggregate does not exist, was deleted, or belongs to another account (indistinguishable on purpose).
    NotFound,
    /// The command contradicts the aggregate's current state.
    Conflict,
    /// The command's own data is invalid.
    Invalid,
    /// What the command is about existed and is gone for good (a backup that retention expired).
    Gone,
}

/// Implemented by each aggregate's error type so the edges can map it without knowing the aggregate.
pub trait DomainError: std::error::Error {
    fn kind(&self) -> ErrorKind;
    /// The input field at fault, for `Invalid` errors.
    fn field(&self) -> Option<&'static str> {
        None
    }
}

/// The kinds of resource a client can be told were not found. One not-found per kind, whichever layer
/// notices it (a read model that has no row, the write side that finds no stream or another account's),
/// so a missing resource and another account's are told apart by nothing (DESIGN §4, issue 11 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Connection,
    Source,
    SourceGroup,
    Job,
    /// A stored file of a job (`GET /jobs/{id}/files/{name}`).
    JobFile,
    /// A platform of the catalog.
    Platform,
    /// The caller's account (its erasure, issue 13 §2).
    Account,
    /// A webhook or e-mail notification target (issue 14 §5).
    Webhook,
    /// A source's backup as a point in time (`GET /sources/{id}/snapshots/{jobId}/…`, issue 13 §4).
    Snapshot,
    /// A record of a source's backups (`GET /sources/{id}/records/{dataType}/{recordId}/versions`).
    Record,
}

impl ResourceKind {
    /// How the API names the kind in prose: `source group`.
    pub const fn noun(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Source => "source",
            Self::SourceGroup => "source group",
            Self::Job => "job",
            Self::JobFile => "file",
            Self::Platform => "platform",
            Self::Account => "account",
            Self::Webhook => "webhook",
            Self::Snapshot => "snapshot",
            Self::Record => "record",
        }
    }

    /// The one `detail` of a not-found problem about this kind: `source group not found`.
    pub const fn not_found(self) -> &'static str {
        match self {
            Self::Connection => "connection not found",
            Self::Source => "source not found",
            Self::SourceGroup => "source group not found",
            Self::Job => "job not found",
            Self::JobFile => "file not found",
            Self::Platform => "platform not found",
            Self::Account => "account not found",
            Self::Webhook => "webhook not found",
            Self::Snapshot => "snapshot not found",
            Self::Record => "record not found",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ResourceKind;

    #[test]
    fn a_kind_is_not_found_by_its_noun() {
        for kind in [
            ResourceKind::Connection,
            ResourceKind::Source,
            ResourceKind::SourceGroup,
            ResourceKind::Job,
            ResourceKind::JobFile,
            ResourceKind::Snapshot,
            ResourceKind::Record,
            ResourceKind::Platform,
            ResourceKind::Account,
            ResourceKind::Webhook,
        ] {
            assert_eq!(kind.not_found(), format!("{} not found", kind.noun()));
        }
    }
}

/// An error and each of its sources on one line, joined by ": " (as `anyhow` prints `{:#}`): what a job's
/// failure message keeps of an error, and what a log line shows of one (`error = %ErrorChain(&err)`; the JSON
/// log format prints only the top error of a `&dyn Error` field, not its sources).
///
/// A source whose text the line already ends with is not repeated: an error that shows its source in its own
/// message (`#[error("database: {0}")]` over a `#[source]`) reads once.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !text.is_empty() && !shown.ends_with(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&shown)
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod chain_tests {
    use super::ErrorChain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the file")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("database: {0}")]
    struct Echoing(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("job failed")]
    struct Top(#[source] Echoing);

    #[test]
    fn every_source_is_shown_once() {
        let io = || std::io::Error::other("connection refused");
        assert_eq!(
            ErrorChain(&Outer(io())).to_string(),
            "reading the file: connection refused"
        );
        // The echoing middle error already says its source: it is not said twice.
        assert_eq!(
            ErrorChain(&Top(Echoing(io()))).to_string(),
            "job failed: database: connection refused"
        );
        assert_eq!(ErrorChain(&io()).to_string(), "connection refused");
    }
}
