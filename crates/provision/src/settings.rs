//! What a provisioned device looks like: the `[provisioning]` configuration.

use serde::Deserialize;

use crate::ProvisionError;

/// The CUCM product (and model) of every provisioned device. "Advanced" rather than
/// "Basic": Cisco's admin guide asks for wireless/soft third-party SIP clients to be
/// configured as Third-party SIP Device (Advanced), and only Advanced has more than one
/// line and video (CUCM Administration Guide 7.1, "Licensing for Third-Party Phones That
/// Are Running SIP").
pub const PRODUCT: &str = "Third-party SIP Device (Advanced)";

/// Products that count as "a third-party SIP device" of a user (CUCM lets a user id be the
/// digest user of only one third-party phone: "If the same user ID is assigned as the
/// Digest User for multiple phones, the third-party phones ... will not successfully
/// register", CUCM 15 Feature Configuration Guide, third-party SIP phones).
pub const THIRD_PARTY_PRODUCTS: &[&str] = &[
    "Third-party SIP Device (Advanced)",
    "Third-party SIP Device (Basic)",
];

/// A directory-number range, both ends inclusive, all numbers of the same width as
/// `start` (leading zeros kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnRange {
    pub start: u64,
    pub end: u64,
    pub width: usize,
}

impl DnRange {
    /// Parse `"80000-80999"`.
    pub fn parse(text: &str) -> Result<DnRange, ProvisionError> {
        let bad = |why: &str| ProvisionError::Config(format!("bad dn_range {text:?}: {why}"));
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| bad("expected START-END"))?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
            return Err(bad("both ends must be digits"));
        }
        if a.len() != b.len() {
            return Err(bad("both ends must have the same number of digits"));
        }
        let start: u64 = a.parse().map_err(|_| bad("start too large"))?;
        let end: u64 = b.parse().map_err(|_| bad("end too large"))?;
        if start > end {
            return Err(bad("start is after end"));
        }
        Ok(DnRange {
            start,
            end,
            width: a.len(),
        })
    }

    pub fn format(&self, n: u64) -> String {
        format!("{n:0width$}", width = self.width)
    }

    pub fn first(&self) -> String {
        self.format(self.start)
    }

    pub fn last(&self) -> String {
        self.format(self.end)
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `pattern` is a number of this range.
    pub fn contains(&self, pattern: &str) -> bool {
        pattern.len() == self.width
            && pattern.bytes().all(|c| c.is_ascii_digit())
            && pattern
                .parse::<u64>()
                .is_ok_and(|n| n >= self.start && n <= self.end)
    }
}

impl std::fmt::Display for DnRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first(), self.last())
    }
}

/// The `[provisioning]` table. Defaults match the lab's seeded configuration.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningConfig {
    pub device_pool: String,
    pub sip_profile: String,
    /// Calling search space of the device; empty = none.
    pub css: String,
    /// Must be a security profile with digest authentication enabled.
    pub security_profile: String,
    /// Partition of allocated DNs; empty = no partition.
    pub partition: String,
    /// DNs allocated to users without a primary extension, e.g. "80000-80999".
    pub dn_range: String,
    /// Device names are `<prefix><USERID>` (see [`crate::device_name`]).
    pub name_prefix: String,
    /// Key file for digest passwords when `UCBRIDGE_SECRET_KEY` is not set.
    pub secret_key_file: Option<std::path::PathBuf>,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            device_pool: "Default".into(),
            sip_profile: "Standard SIP Profile".into(),
            css: "Internal_CSS".into(),
            security_profile: "Third-party SIP Device Advanced - Standard SIP Secure Profile"
                .into(),
            partition: "Internal_PT".into(),
            dn_range: "80000-80999".into(),
            name_prefix: "UCB".into(),
            secret_key_file: None,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct ProvisionSettings {
    pub device_pool: String,
    pub sip_profile: String,
    pub css: Option<String>,
    pub security_profile: String,
    pub partition: Option<String>,
    pub dn_range: DnRange,
    pub name_prefix: String,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl ProvisioningConfig {
    pub fn compile(&self) -> Result<ProvisionSettings, ProvisionError> {
        let required = |name: &str, v: &str| {
            non_empty(v)
                .ok_or_else(|| ProvisionError::Config(format!("[provisioning] {name} is empty")))
        };
        let prefix = self.name_prefix.trim().to_ascii_uppercase();
        if !prefix.bytes().all(crate::naming::allowed_byte) {
            return Err(ProvisionError::Config(format!(
                "[provisioning] name_prefix {prefix:?} may only contain A-Z, 0-9, '.', '_' and '-'"
            )));
        }
        if prefix.len() > crate::naming::MAX_PREFIX_LEN {
            return Err(ProvisionError::Config(format!(
                "[provisioning] name_prefix {prefix:?} is longer than {} characters",
                crate::naming::MAX_PREFIX_LEN
            )));
        }
        Ok(ProvisionSettings {
            device_pool: required("device_pool", &self.device_pool)?,
            sip_profile: required("sip_profile", &self.sip_profile)?,
            css: non_empty(&self.css),
            security_profile: required("security_profile", &self.security_profile)?,
            partition: non_empty(&self.partition),
            dn_range: DnRange::parse(&self.dn_range)?,
            name_prefix: prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = DnRange::parse("80000-80999").unwrap();
        assert_eq!((r.start, r.end, r.width, r.len()), (80000, 80999, 5, 1000));
        assert!(r.contains("80500") && !r.contains("81000") && !r.contains("8050"));
        let z = DnRange::parse("0100-0199").unwrap();
        assert_eq!(z.first(), "0100");
        for bad in ["", "80000", "9-1", "800-80000", "a-b", "1-+2"] {
            assert!(DnRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_compile_and_bad_prefix_is_refused() {
        let s = ProvisioningConfig::default().compile().unwrap();
        assert_eq!(s.partition.as_deref(), Some("Internal_PT"));
        let bad = ProvisioningConfig {
            name_prefix: "bad prefix".into(),
            ..ProvisioningConfig::default()
        };
        assert!(bad.compile().is_err());
    }
}
