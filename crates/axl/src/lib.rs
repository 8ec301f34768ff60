//! Async client for Cisco Unified CM's AXL SOAP API.
//!
//! - Versioned correctly: the SOAPAction header is exactly `"CUCM:DB ver=X.Y operation"` and
//!   the body namespace `http://www.cisco.com/AXL/API/X.Y` names the same version (a wrong
//!   SOAPAction made CUCM drop `digestUser` silently in the field, seed 001). The version is
//!   configured or discovered with `getCCMVersion`.
//! - Typed operations for users, phones, lines and SQL, and end-user sign-in checks
//!   (`doAuthenticateUser`, never retried once CUCM may have seen it); requests are
//!   written with an escaping XML writer and responses are parsed as a stream, one record
//!   at a time.
//! - CUCM's limits handled: HTTP 503 and the memory-throttle fault are retried with jittered
//!   back-off; "Query request too large" makes list calls shrink their page and go on.
//! - Faults become [`AxlError::Fault`] with CUCM's `axlcode` and message.
//! - Every answer is bounded: [`MAX_XML_DEPTH`] levels, `max_response_bytes` (16 MiB) for
//!   200 answers and `max_error_body_bytes` (1 MiB) for the rest, counted as bytes arrive;
//!   every call has `request_timeout` per attempt and `total_timeout` overall (60 s / 120 s).
//!   Refused connections, DNS and TLS verification failures are never retried
//!   ([`AxlError::transport_kind`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ucbridge_axl::AxlError> {
//! use ucbridge_axl::{AxlClient, AxlConfig, UserSearch, UserTag};
//! let client = AxlClient::connect(AxlConfig::new("https://cucm:8443/axl/", "axladmin", "secret")).await?;
//! let users = client.list_users(&UserSearch::all(), &[UserTag::Userid, UserTag::Mailid]).await?;
//! # Ok(()) }
//! ```

mod authenticate;
mod changes;
mod client;
mod error;
mod lines;
mod list;
mod model;
mod phones;
mod sql;
mod transport;
mod users;
mod version;
mod xml;
#[cfg(test)]
mod xsd_tests;

pub use authenticate::{Authentication, UserCredential};
pub use changes::{Change, ChangeAction, ChangeBatch, ChangeCursor};
pub use client::{
    AxlClient, AxlConfig, ClientStats, RetryPolicy, Secret, DEFAULT_MAX_ERROR_BODY_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TOTAL_TIMEOUT,
};
pub use error::{AxlError, QueryTooLarge};
pub use lines::{Line, LineKey, LineSearch, LineTag, NewLine};
pub use list::{ListOptions, ListSummary, Pager};
pub use model::{DirectoryNumber, Key};
pub use phones::{NewPhone, Phone, PhoneLine, PhoneSearch, PhoneTag, PhoneUpdate};
pub use sql::{SqlQuery, SqlRow, SqlValue};
pub use ucbridge_auth::net::{TransportFailure, TransportKind};
pub use users::{NewUser, User, UserSearch, UserTag, UserUpdate};
pub use version::SchemaVersion;
pub use xml::{XmlNode, MAX_XML_DEPTH};

impl AxlClient {
    /// getCCMVersion: the CUCM release, e.g. `14.0.1.14900(11)`.
    pub async fn get_ccm_version(&self) -> Result<String, AxlError> {
        const OP: &str = "getCCMVersion";
        let mut w = self.writer(OP);
        w.empty("processNodeName");
        let mut version = None;
        self.call(OP, w.finish(), client::Access::Read, |part| {
            if let xml::ResponsePart::Item(node) = part {
                if let Some(v) = node.child_text("version") {
                    version = Some(v);
                }
            }
            Ok(())
        })
        .await?;
        version.ok_or_else(|| AxlError::Protocol {
            operation: OP.into(),
            detail: "getCCMVersion answer has no version".into(),
        })
    }
}
