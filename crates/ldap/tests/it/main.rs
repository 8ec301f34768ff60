//! The integration tests of `ucbridge-ldap`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-ldap --test it MODULE::`).

mod slapd_export;
