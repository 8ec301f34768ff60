//! The integration tests of `ucbridge-voicemail`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-voicemail --test it MODULE::`).

mod audio_formats;
mod callback_hostile;
mod common;
mod dovecot_sync;
mod imap_idle;
mod imap_tls;
mod push_trust;
