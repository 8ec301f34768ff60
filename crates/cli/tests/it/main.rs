//! The integration tests of `ucbridge`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge --test it MODULE::`).

mod auth_cli;
mod backup_cli;
mod cli;
mod config_check_cli;
mod devices_cli;
mod ldap_cli;
mod log_format_cli;
mod serve_cli;
mod voicemail_cli;
