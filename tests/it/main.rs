//! The black-box tests: one binary, one module per area (a test binary per file would link the whole
//! service dozens of times). Each test starts the real service on port 0 with a database of its own
//! (`support::TestDatabase`, honouring `LISTBACKUP_TEST_DATABASE_URL`), local platform emulations, and
//! waits on conditions with deadlines. Run one area with `cargo test --test it <module>::`. A test that
//! disturbs the whole database server has a binary of its own (`tests/database_unavailable.rs`).

mod support;

mod audit_as_of;
mod audit_log;
mod audit_tamper;
mod cli;
mod conformance;
mod connection_secrets;
mod connection_test_endpoint;
mod connections_api;
mod connector_paging;
mod connectors_platforms;
mod contract;
mod crash_safety;
mod demo_mode;
mod encryption;
mod event_store;
mod hardening;
mod job_concurrency;
mod job_faults;
mod job_oauth_refresh;
mod job_partial;
mod job_progress;
mod jobs_api;
mod jobs_read_model;
mod least_privilege;
mod metrics;
mod oauth_flow;
mod oauth_scopes;
mod oauth_tokens;
mod platform_activecampaign;
mod platform_box;
mod platform_dropbox;
mod platform_emulator_probe;
mod platform_gohighlevel;
mod platform_google;
mod platform_mailchimp;
mod platform_quickbooks;
mod platform_shopify;
mod platform_zendesk;
mod projections_fold;
mod projections_rebuild;
mod record_fidelity;
mod relay;
mod restore;
mod restore_files;
mod restore_platforms;
mod retention;
mod scheduler;
mod scripts;
mod shutdown;
mod snapshots;
mod source_groups_api;
mod sources_api;
mod webhooks;
