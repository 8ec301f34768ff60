//! The integration tests of `ucbridge-signin`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-signin --test it MODULE::`).

mod authenticator;
