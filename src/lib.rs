//! The `listbackup` service: configuration, migrations, and the composition of the workspace crates into
//! one process. The binary (`src/main.rs`) is a thin CLI over this library.

pub mod cli;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod migrate;
pub mod service;
pub mod telemetry;
pub mod worker;

pub use config::Config;
