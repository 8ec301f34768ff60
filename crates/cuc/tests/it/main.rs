//! The integration tests of `ucbridge-cuc`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-cuc --test it MODULE::`).

mod against_lab;
mod axl_bearer;
mod hostile;
