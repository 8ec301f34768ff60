//! Device provisioning: for one CUCM end user, a secure third-party SIP device whose
//! digest user is that user (seed 001; the WebPhone integration of seed 002).
//!
//! [`Provisioner::ensure`] makes CUCM hold
//! 1. the end user with digest credentials (a CSPRNG password, kept encrypted in the store);
//! 2. a "Third-party SIP Device (Advanced)" named from the user ([`device_name`]) with the
//!    configured device pool, SIP profile, CSS and a security profile with digest
//!    authentication, `digestUser` = the user — read back with getPhone, because CUCM has
//!    been seen to accept and silently drop `digestUser` (seed 001);
//! 3. a line: the user's primary extension, or a free DN from the configured range
//!    (claimed with addLine; 4052 means another run took it, so the next one is tried);
//! 4. the device in the user's associated devices (existing ones kept).
//!
//! Rules: a third-party SIP device of the user that ucbridge did not create stops the run
//! before anything is written; a second run changes nothing; a failure rolls back what the
//! run created. The store records what ucbridge created, which is all [`Provisioner::remove`]
//! ever removes.

mod naming;
mod provisioner;
mod secret;
mod settings;

pub use naming::{device_name, MAX_NAME_LEN, MAX_PREFIX_LEN};
pub use provisioner::{
    BulkItem, DnSource, EnsureOptions, EnsureReport, Outcome, Provisioner, RemoveReport,
    ShowReport, UserDevice,
};
pub use secret::{generate_digest_password, DIGEST_PASSWORD_LEN};
pub use settings::{DnRange, ProvisionSettings, ProvisioningConfig, PRODUCT, THIRD_PARTY_PRODUCTS};
pub use ucbridge_auth::{SecretBox, SecretKeyError, SECRET_KEY_ENV, SECRET_KEY_FILE_ENV};

use ucbridge_axl::AxlError;
use ucbridge_store::StoreError;

/// Everything provisioning can fail with. Messages name the user, device or
/// configuration object concerned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("provisioning configuration: {0}")]
    Config(String),
    #[error("end user {0:?} does not exist on CUCM")]
    UserNotFound(String),
    #[error(
        "end user {userid:?} already has a third-party SIP device that ucbridge did not create \
         ({}); CUCM allows one per digest user, so none was created",
        devices.join(", ")
    )]
    ForeignDevice {
        userid: String,
        devices: Vec<String>,
    },
    #[error("the configured {kind} {name:?} does not exist on CUCM; nothing was changed")]
    MissingReference { kind: &'static str, name: String },
    #[error(
        "the configured security profile {name:?} does not enable digest authentication; \
         choose a secure third-party SIP profile with digest authentication"
    )]
    SecurityProfileWithoutDigest { name: String },
    #[error(
        "a device named {name} already exists on CUCM and is not ucbridge's device for {userid:?}"
    )]
    DeviceNameTaken { name: String, userid: String },
    #[error("no free directory number left in {range} (partition {partition})")]
    RangeExhausted { range: String, partition: String },
    #[error(
        "CUCM accepted device {device} but its digest user reads back as {found:?}, not \
         {expected:?} (the silent drop of seed 001: check the AXL schema version)"
    )]
    DigestUserDropped {
        device: String,
        expected: String,
        found: Option<String>,
    },
    #[error("device {device} did not read back as written: {detail}")]
    Verification { device: String, detail: String },
    #[error("ucbridge has no device for end user {0:?}; nothing to remove")]
    NotProvisioned(String),
    #[error("{step}: {source}")]
    Axl {
        step: String,
        #[source]
        source: AxlError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretKeyError),
    #[error("{cause}; rolling back left these behind: {}", leftovers.join("; "))]
    RollbackIncomplete {
        cause: Box<ProvisionError>,
        leftovers: Vec<String>,
    },
}

impl ProvisionError {
    pub(crate) fn axl(step: impl Into<String>) -> impl FnOnce(AxlError) -> ProvisionError {
        let step = step.into();
        move |source| ProvisionError::Axl { step, source }
    }
}

pub type Result<T, E = ProvisionError> = std::result::Result<T, E>;
