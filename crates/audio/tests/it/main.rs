//! The integration tests of `ucbridge-audio`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-audio --test it MODULE::`).

mod bad_input;
mod common;
mod mpg123_roundtrip;
