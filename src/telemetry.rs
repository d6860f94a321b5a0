//! JSON logs through `tracing`, filtered by `RUST_LOG` (default `info`). Each line carries the fields of the
//! span it was written in (`span`): a line written while serving a request names its `request_id`
//! (`api/src/request_id.rs` opens that span), so one request's lines can be found together.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .try_init();
}
