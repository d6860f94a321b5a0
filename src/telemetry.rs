//! JSON logs through `tracing`, filtered by `RUST_LOG` (default `info,tokio_postgres=warn`: PostgreSQL's
//! NOTICEs, such as "table … does not exist, skipping" of the record index's `DROP TABLE IF EXISTS`, which
//! tokio_postgres logs at `info`, are noise to an operator; its warnings still show). Each line carries the fields of the
//! span it was written in (`span`): a line written while serving a request names its `request_id`
//! (`api/src/request_id.rs` opens that span), so one request's lines can be found together.

use tracing_subscriber::EnvFilter;

/// The log filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::DEFAULT_FILTER;
    use tracing_subscriber::EnvFilter;

    #[test]
    fn the_default_filter_parses_and_keeps_tokio_postgres_to_warnings() {
        let filter: EnvFilter = DEFAULT_FILTER.parse().expect("valid directives");
        let shown = filter.to_string();
        assert!(shown.contains("tokio_postgres=warn"), "{shown}");
        assert!(shown.split(',').any(|d| d == "info"), "{shown}");
    }
}
