//! The integration tests of `ucbridge-server`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-server --test it MODULE::`).

mod api;
mod chat;
mod common;
mod end_user;
mod hostile;
mod node_recovery;
mod passdb;
mod router;
mod rules_sources;
mod signin_clusters;
mod sources;
mod stats;
mod voicemail_job;
