//! Typed errors of voicemail sync.

use ucbridge_cuc::CucError;
use ucbridge_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum VoicemailError {
    #[error("configuration error: {0}")]
    Config(String),
    /// Unity Connection failed or refused; nothing was changed on IMAP for that account.
    #[error("Unity Connection: {0}")]
    Cuc(#[from] CucError),
    #[error("IMAP: {0}")]
    Imap(String),
    /// The master/admin login was refused for this user.
    #[error("{0}")]
    ImapLogin(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the MIME message: {0}")]
    Mime(String),
    /// The account is not (or no longer) matched.
    #[error("no matched voicemail account {0:?}")]
    UnknownAccount(String),
    #[error("the account sync took longer than {0:?}")]
    Timeout(std::time::Duration),
}

impl VoicemailError {
    /// Whether CUC was the side that failed (the "CUC down" case).
    pub fn is_cuc(&self) -> bool {
        matches!(self, VoicemailError::Cuc(_))
    }
}
