//! What can go wrong in a client command, and the exit status each kind of failure gives (README "Command
//! line"), so scripts can tell a missing resource from a conflict without parsing messages.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Exit statuses of the client commands. Stable: scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done; for a watched job, it succeeded.
    Success = 0,
    /// 1: anything not listed below: the API unreachable or answering 5xx, 429 or something undocumented; a
    /// local file that cannot be written.
    Failure = 1,
    /// 2: the command line or the request is not valid (a missing URL or token, a 400 or 422 from the API).
    Usage = 2,
    /// 3: the resource does not exist, or belongs to another account (404).
    NotFound = 3,
    /// 4: conflict with the current state: a 409 or 412 from the API, or a download target that exists
    /// without `--force`.
    Conflict = 4,
    /// 5: the token is refused (401: expired, or not signed for this service) or its role may not do that (403).
    NotAllowed = 5,
    /// 6: a downloaded file does not match the sha256 its job's manifest lists (the file is not kept).
    ChecksumMismatch = 6,
    /// 10: the watched job ended `partial` (some data types backed up, the others failed).
    JobPartial = 10,
    /// 11: the watched job ended `failed`.
    JobFailed = 11,
    /// 12: the watched job ended `cancelled`.
    JobCancelled = 12,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status for a problem of this HTTP status.
    pub fn for_http_status(status: u16) -> Self {
        match status {
            400 | 422 => Self::Usage,
            401 | 403 => Self::NotAllowed,
            404 | 410 => Self::NotFound,
            409 | 412 => Self::Conflict,
            _ => Self::Failure,
        }
    }
}

/// An RFC 9457 problem as the API sends it (`application/problem+json`, README "API conventions").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
}

/// One invalid field of a 400.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// A failed client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line cannot be carried out as given.
    #[error("{0}")]
    Usage(String),
    /// The API answered with a problem (boxed: it is by far the largest variant).
    #[error("{}", problem_line(.0))]
    Api(Box<Problem>),
    /// The API could not be reached, or the connection broke.
    #[error("{what}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API answered something it does not document (a missing field).
    #[error("{0}")]
    Unexpected(String),
    /// The API answered something that is not JSON: `what` names the answer, `source` is the parser's error.
    #[error("{what} is not JSON")]
    NotJson {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Something the command needs does not exist (a file name the job does not list).
    #[error("{0}")]
    Missing(String),
    /// The resource is not in a state the command can work with (files of a job that kept none).
    #[error("{0}")]
    State(String),
    /// A download target that exists, without `--force`.
    #[error("{} exists (use --force to overwrite it)", .0.display())]
    Exists(PathBuf),
    /// A local file or directory could not be written.
    #[error("{}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A downloaded file's sha256 differs from its manifest's.
    #[error(
        "{name}: sha256 {actual} does not match the manifest's {expected}; the file was not kept"
    )]
    ChecksumMismatch {
        name: String,
        expected: String,
        actual: String,
    },
}

fn problem_line(problem: &Problem) -> String {
    match problem.detail.as_deref() {
        Some(detail) if !detail.is_empty() => format!("{}: {detail}", problem.title),
        _ => problem.title.clone(),
    }
}

impl CliError {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::Usage(_) => ExitStatus::Usage,
            Self::Api(problem) => ExitStatus::for_http_status(problem.status),
            Self::Transport { .. }
            | Self::Unexpected(_)
            | Self::NotJson { .. }
            | Self::Io { .. } => ExitStatus::Failure,
            Self::Missing(_) => ExitStatus::NotFound,
            Self::Exists(_) | Self::State(_) => ExitStatus::Conflict,
            Self::ChecksumMismatch { .. } => ExitStatus::ChecksumMismatch,
        }
    }

    pub fn transport(what: impl Into<String>, source: reqwest::Error) -> Self {
        Self::Transport {
            what: what.into(),
            source,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The error and its causes on one line: `GET /jobs failed: error sending request…: Connection refused`.
pub fn chain(error: &CliError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Prints the error as `error: <title>: <detail>` (or the error and its causes), then each invalid field and
/// the request id on lines of their own.
pub struct Report<'a>(pub &'a CliError);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", chain(self.0))?;
        if let CliError::Api(problem) = self.0 {
            for field in &problem.errors {
                write!(f, "\n  {}: {}", field.field, field.message)?;
            }
            if let Some(id) = &problem.request_id {
                write!(f, "\n  (request id {id})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_prints_title_detail_and_fields() {
        let problem: Problem = serde_json::from_value(serde_json::json!({
            "type": "about:blank", "title": "The request is not valid", "status": 400,
            "detail": "status: must be one of [...]", "code": "VALIDATION_ERROR", "requestId": "r1",
            "errors": [{"field": "status", "message": "must be one of [...]"}]
        }))
        .unwrap();
        let error = CliError::Api(Box::new(problem));
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert_eq!(
            Report(&error).to_string(),
            "error: The request is not valid: status: must be one of [...]\n  status: must be one of [...]\n  \
             (request id r1)"
        );
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let code = |status| ExitStatus::for_http_status(status).code();
        assert_eq!(
            [400, 401, 403, 404, 409, 412, 422, 429, 500, 503].map(code),
            [2, 5, 5, 3, 4, 4, 2, 1, 1, 1]
        );
    }
}
