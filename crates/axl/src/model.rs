//! Shapes shared by several operations.

use serde::Serialize;

use crate::xml::{SoapWriter, XmlNode};

/// A directory number reference: pattern plus route partition (`XDirn`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectoryNumber {
    pub pattern: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_partition: Option<String>,
}

impl DirectoryNumber {
    pub fn new(pattern: impl Into<String>, route_partition: Option<&str>) -> Self {
        DirectoryNumber {
            pattern: pattern.into(),
            route_partition: route_partition.map(str::to_owned),
        }
    }

    pub(crate) fn from_node(node: &XmlNode) -> Option<Self> {
        let pattern = node.child_text("pattern")?;
        Some(DirectoryNumber {
            pattern,
            route_partition: node.child_text("routePartitionName"),
        })
    }

    /// `<pattern/>` then `<routePartitionName/>` (nil when none: the element is required
    /// and nillable in `XDirn`).
    pub(crate) fn write(&self, w: &mut SoapWriter, element: &str) {
        w.start(element);
        w.text("pattern", &self.pattern);
        w.text_or_nil("routePartitionName", self.route_partition.as_deref());
        w.end(element);
    }
}

/// Which object a get/update/remove addresses: by its name (userid for users) or UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    Name(&'a str),
    Uuid(&'a str),
}

impl<'a> Key<'a> {
    pub(crate) fn write(&self, w: &mut SoapWriter, name_element: &str) {
        match self {
            Key::Name(n) => w.text(name_element, n),
            Key::Uuid(u) => w.text("uuid", u),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(name: &'a str) -> Self {
        Key::Name(name)
    }
}

/// Parse an AXL boolean (`true`/`false`, `t`/`f` in SQL).
pub(crate) fn parse_bool(text: Option<String>) -> Option<bool> {
    match text?.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

pub(crate) fn bool_text(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// Text of the `<return>` of an add/update/remove: the object's UUID.
pub(crate) fn uuid_from_return(
    text: Option<String>,
    operation: &str,
) -> Result<String, crate::AxlError> {
    text.ok_or_else(|| crate::AxlError::Protocol {
        operation: operation.to_owned(),
        detail: "response has no <return> UUID".into(),
    })
}

/// Declare an enum of returned tags whose declaration order is the XSD sequence order, so
/// that sorting the enum values yields a schema-valid `<returnedTags>`.
macro_rules! returned_tags {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $tag:literal $(= $placeholder:literal)?),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every tag, in XSD order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The AXL element name.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $tag),+ }
            }

            /// Content for the tag inside `<returnedTags>`. CUCM reads only the element
            /// name, but some schemas type the element (11.5's `enableCti` is a boolean
            /// pattern that rejects ""), so typed tags carry a valid dummy value.
            pub(crate) fn placeholder(&self) -> Option<&'static str> {
                match self { $($name::$variant => None $(.or(Some($placeholder)))?),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::AxlError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .find(|t| t.as_str().eq_ignore_ascii_case(s))
                    .copied()
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|t| t.as_str()).collect();
                        crate::AxlError::Config(format!(
                            "unknown tag {s:?}; known: {}", names.join(", ")
                        ))
                    })
            }
        }
    };
}
pub(crate) use returned_tags;

/// Write `<returnedTags>` with the tags sorted into XSD order and de-duplicated.
pub(crate) fn write_returned_tags<T: Ord + Copy>(
    w: &mut SoapWriter,
    tags: &[T],
    name: fn(&T) -> &'static str,
    placeholder: fn(&T) -> Option<&'static str>,
) {
    let mut sorted: Vec<T> = tags.to_vec();
    sorted.sort();
    sorted.dedup();
    w.start("returnedTags");
    for tag in &sorted {
        match placeholder(tag) {
            Some(value) => w.text(name(tag), value),
            None => w.empty(name(tag)),
        }
    }
    w.end("returnedTags");
}
