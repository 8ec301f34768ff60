//! The integration tests of `ucbridge-auth`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-auth --test it MODULE::`).

mod ids_hostile;
