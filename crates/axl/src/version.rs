//! AXL schema versions.

use std::fmt;
use std::str::FromStr;

use crate::AxlError;

/// An AXL schema version (`major.minor`), as used in the SOAPAction header
/// `"CUCM:DB ver=14.0 listUser"` and the namespace `http://www.cisco.com/AXL/API/14.0`.
/// Both must name the same version (AXL Developer Guide, "Versioning").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    pub major: u16,
    pub minor: u16,
}

impl SchemaVersion {
    pub const V11_0: SchemaVersion = SchemaVersion::new(11, 0);
    pub const V11_5: SchemaVersion = SchemaVersion::new(11, 5);
    pub const V12_0: SchemaVersion = SchemaVersion::new(12, 0);
    pub const V12_5: SchemaVersion = SchemaVersion::new(12, 5);
    pub const V14_0: SchemaVersion = SchemaVersion::new(14, 0);
    pub const V15_0: SchemaVersion = SchemaVersion::new(15, 0);

    /// The schemas this client speaks. Cisco publishes a schema per major/minor release and
    /// skipped 13.x (AXL Developer Guide, "Versioning").
    pub const SUPPORTED: [SchemaVersion; 6] = [
        Self::V11_0,
        Self::V11_5,
        Self::V12_0,
        Self::V12_5,
        Self::V14_0,
        Self::V15_0,
    ];

    pub const fn new(major: u16, minor: u16) -> Self {
        SchemaVersion { major, minor }
    }

    /// The XML namespace of this schema.
    pub fn namespace(&self) -> String {
        format!("http://www.cisco.com/AXL/API/{self}")
    }

    /// The exact SOAPAction header value for an operation, quotes included.
    pub fn soap_action(&self, operation: &str) -> String {
        format!("\"CUCM:DB ver={self} {operation}\"")
    }

    /// The schema to use for a CUCM release string such as `14.0.1.14900(11)`: the release's
    /// own major.minor when this client supports it, else the newest supported schema not
    /// newer than the release (a 16.x CUCM still accepts 15.0 for N-2 majors).
    pub fn for_cucm_release(release: &str) -> Result<SchemaVersion, AxlError> {
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| {
            AxlError::Config(format!(
                "cannot read a version from CUCM release {release:?}"
            ))
        })?;
        let minor: u16 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let release_version = SchemaVersion::new(major, minor);
        Self::SUPPORTED
            .iter()
            .rev()
            .find(|v| **v <= release_version)
            .copied()
            .ok_or_else(|| {
                AxlError::Config(format!(
                    "CUCM release {release} is older than the oldest supported AXL schema ({})",
                    Self::SUPPORTED[0]
                ))
            })
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for SchemaVersion {
    type Err = AxlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (major, minor) = s
            .trim()
            .split_once('.')
            .ok_or_else(|| AxlError::Config(format!("AXL version {s:?} is not major.minor")))?;
        let version = SchemaVersion::new(
            major
                .parse()
                .map_err(|_| AxlError::Config(format!("bad AXL major version in {s:?}")))?,
            minor
                .parse()
                .map_err(|_| AxlError::Config(format!("bad AXL minor version in {s:?}")))?,
        );
        if !Self::SUPPORTED.contains(&version) {
            let list: Vec<String> = Self::SUPPORTED.iter().map(|v| v.to_string()).collect();
            return Err(AxlError::Config(format!(
                "AXL schema {version} is not supported (supported: {})",
                list.join(", ")
            )));
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_action_is_exact() {
        assert_eq!(
            SchemaVersion::V14_0.soap_action("listUser"),
            "\"CUCM:DB ver=14.0 listUser\""
        );
        assert_eq!(
            SchemaVersion::V12_5.namespace(),
            "http://www.cisco.com/AXL/API/12.5"
        );
    }

    #[test]
    fn maps_cucm_releases_to_schemas() {
        let f = SchemaVersion::for_cucm_release;
        assert_eq!(f("12.5.1.10000(22)").unwrap(), SchemaVersion::V12_5);
        assert_eq!(f("14.0.1.14900(11)").unwrap(), SchemaVersion::V14_0);
        assert_eq!(f("15.0.1.11900-23").unwrap(), SchemaVersion::V15_0);
        assert_eq!(f("13.0.1").unwrap(), SchemaVersion::V12_5);
        assert_eq!(f("16.0.1").unwrap(), SchemaVersion::V15_0);
        assert!(f("10.5.2").is_err());
        assert!(f("garbage").is_err());
    }

    #[test]
    fn parses_and_rejects_versions() {
        assert_eq!(
            "11.5".parse::<SchemaVersion>().unwrap(),
            SchemaVersion::V11_5
        );
        assert!("13.0".parse::<SchemaVersion>().is_err());
        assert!("14".parse::<SchemaVersion>().is_err());
    }
}
