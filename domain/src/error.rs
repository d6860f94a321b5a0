/// How a domain error should be understood at the edges, independent of which aggregate raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The aggregate does not exist, was deleted, or belongs to another account (indistinguishable on purpose).
    NotFound,
    /// The command contradicts the aggregate's current state.
    Conflict,
    /// The command's own data is invalid.
    Invalid,
}

/// Implemented by each aggregate's error type so the edges can map it without knowing the aggregate.
pub trait DomainError: std::error::Error {
    fn kind(&self) -> ErrorKind;
    /// The input field at fault, for `Invalid` errors.
    fn field(&self) -> Option<&'static str> {
        None
    }
}
