//! The integration tests of `ucbridge-provision`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-provision --test it MODULE::`).

mod against_lab;
