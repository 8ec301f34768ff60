//! The integration tests of `ucbridge-lab`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-lab --test it MODULE::`).

mod common;
mod cuc_ids_sso;
mod lab;
mod list_change;
