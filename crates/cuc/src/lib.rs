//! Async client for Cisco Unity Connection's REST APIs: CUMI (a user's messages) and CUPI
//! (users).
//!
//! - CUMI: mailbox info, folders `inbox`/`sent`/`deleted` with paging, one message, its
//!   audio attachment (streamed), mark read/unread, delete.
//! - CUPI: users with paging and `query=(column is|startswith value)` filters on ObjectId,
//!   alias, names, e-mail/SMTP address and extension.
//! - XML (CUC's default) or JSON via `Accept` ([`Format`]); both are read into the same
//!   types, JSON's quirks included (string scalars, a lone object for a one-element list).
//! - Auth from `ucbridge-auth`: Basic, or an SSO Bearer token that is refreshed once after a
//!   401. Administrators act on a user's mailbox with [`MailboxRef::User`] (CUC's
//!   `userobjectid`, needing the "Mailbox Access Delegate Account" role).
//! - CUC's error bodies become [`CucError::Api`] with its code and message; an HTML answer
//!   (SSO login page, wrong URL) becomes [`CucError::HtmlAnswer`].
//! - CUNI: [`CucClient::cuni_subscribe`] / [`CucClient::cuni_unsubscribe`] on the SOAP
//!   `MessageEventService`, and [`MessageEvent::parse`] for the Notifier's callback bodies.
//! - [`SsoStatusClient`]: the UCCE SSO Status API (`/unifiedconfig/config/sso/status`).
//! - Bounded against any peer: documents nest at most [`MAX_DEPTH`] levels; bodies are
//!   capped by kind while they stream ([`CucConfig::max_document_bytes`], `max_audio_bytes`,
//!   `max_error_bytes`); every call has a total deadline ([`CucConfig::timeout`],
//!   `audio_timeout`, or [`CucClient::with_timeout`] for a quick check). The client never
//!   retries by itself; [`CucError::is_retryable`] tells callers which failures can pass.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ucbridge_cuc::CucError> {
//! use ucbridge_auth::Credentials;
//! use ucbridge_cuc::{CucClient, CucConfig, Folder, MailboxRef, MessageQuery};
//! let cuc = CucClient::new(CucConfig::new("https://cuc.example.com", Credentials::basic("admin", "pw")))?;
//! let user = cuc.user_by_alias("jdoe").await?.expect("exists");
//! let inbox = cuc
//!     .messages(&MailboxRef::User(user.object_id), Folder::Inbox, &MessageQuery::default())
//!     .await?;
//! # Ok(()) }
//! ```

mod client;
mod cuni;
mod error;
mod limits;
mod model;
mod node;
mod query;
mod sso_status;
mod transport;

pub use client::{AudioInfo, CucClient, CucConfig, Folder, Format, MailboxRef, MAX_LIST_RECORDS};
pub use cuni::{
    subscribe_request, CallbackTarget, EventMessage, EventType, MessageEvent, Subscription,
    CUNI_SERVICE_PATH, MAX_EVENT_BYTES, MAX_USERS_PER_SUBSCRIPTION,
};
pub use error::CucError;
pub use limits::{
    BodyKind, DEFAULT_AUDIO_TIMEOUT, DEFAULT_MAX_AUDIO_BYTES, DEFAULT_MAX_DOCUMENT_BYTES,
    DEFAULT_MAX_ERROR_BYTES, DEFAULT_TIMEOUT, MAX_DEPTH,
};
pub use model::{
    Address, Attachment, CallerId, FolderInfo, MailboxInfo, Message, MessagePage, Recipient, User,
    UserPage, VersionInfo,
};
pub use query::{MessageQuery, UserField, UserFilter, UserQuery};
pub use sso_status::{SsoComponentStatus, SsoStatus, SsoStatusClient};

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod proptests;
