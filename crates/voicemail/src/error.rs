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
    /// The mass-removal guard stopped the sync before any change (CUC or IMAP).
    #[error("{0}")]
    RemovalsRefused(RemovalsRefused),
}

/// What the mass-removal guard refused ([`crate::RemovalGuard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalsRefused {
    /// Messages the sync would have removed from IMAP because CUC no longer lists them.
    pub removals: u64,
    /// ucbridge's messages on IMAP in the account.
    pub on_imap: u64,
    /// CUC listed no message at all in the account.
    pub cuc_empty: bool,
}

impl std::fmt::Display for RemovalsRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cuc_empty {
            write!(
                f,
                "Unity Connection lists this mailbox as empty, so the sync would remove {} of the {} voicemails ucbridge put on IMAP; refused (an administrator without the \"Mailbox Access Delegate Account\" role sees every mailbox empty)",
                self.removals, self.on_imap
            )?;
        } else {
            write!(
                f,
                "the sync would remove {} of the {} voicemails ucbridge put on IMAP, more than [voicemail] max_removal_share allows; refused",
                self.removals, self.on_imap
            )?;
        }
        write!(
            f,
            ". No message was changed on IMAP or CUC. If the messages really are gone from CUC, re-run with --confirm-removals (server: [voicemail] confirm_removals = true for one reconcile)"
        )
    }
}

impl VoicemailError {
    /// Whether CUC was the side that failed (the "CUC down" case).
    pub fn is_cuc(&self) -> bool {
        matches!(self, VoicemailError::Cuc(_))
    }

    /// Whether the mass-removal guard refused the sync.
    pub fn is_removal_refused(&self) -> bool {
        matches!(self, VoicemailError::RemovalsRefused(_))
    }
}
