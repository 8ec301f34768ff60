//! The integration tests of `ucbridge-sync`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-sync --test it MODULE::`).

mod clusters;
mod directory_sync;
mod ldap_source;
mod merged_sources;
mod parsers_prop;
mod snapshot_sql;
