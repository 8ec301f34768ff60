//! The integration tests of `ucbridge-axl`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-axl --test it MODULE::`).

mod against_lab;
mod hostile;
