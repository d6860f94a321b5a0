//! The event log as evidence (issue 12): the log read by auditors, its hash chain, signed exports, the
//! state of a resource at a point of the log.

pub mod as_of;
pub mod event;
pub mod export;
pub mod log;
pub mod verify;

pub use event::LoggedEvent;
