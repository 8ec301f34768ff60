//! Phones: listPhone, getPhone, addPhone, updatePhone, removePhone.

use serde::Serialize;

use crate::client::Access;
use crate::list::{ListCall, ListOptions, ListSummary, Pager};
use crate::model::{returned_tags, write_returned_tags, DirectoryNumber, Key};
use crate::xml::{ResponsePart, SoapWriter, XmlNode};
use crate::{AxlClient, AxlError};

/// A line appearance on a phone (`XPhoneLine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhoneLine {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub dirn: DirectoryNumber,
}

impl PhoneLine {
    fn from_node(node: &XmlNode) -> Option<PhoneLine> {
        Some(PhoneLine {
            index: node.child_text("index")?.parse().ok()?,
            label: node.child_text("label"),
            display: node.child_text("display"),
            dirn: DirectoryNumber::from_node(node.child("dirn")?)?,
        })
    }

    fn write(&self, w: &mut SoapWriter) {
        w.start("line");
        w.text("index", &self.index.to_string());
        w.opt("label", self.label.as_deref());
        w.opt("display", self.display.as_deref());
        self.dirn.write(w, "dirn");
        w.end("line");
    }
}

fn write_lines(w: &mut SoapWriter, lines: &[PhoneLine]) {
    w.start("lines");
    for line in lines {
        line.write(w);
    }
    w.end("lines");
}

/// A phone (`LPhone` from listPhone, `RPhone` from getPhone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Phone {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_side: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling_search_space: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_phone_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_user_name: Option<String>,
    /// The end user whose digest credentials the phone uses; `None` when unset (CUCM
    /// sends `<digestUser/>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_user: Option<String>,
    /// Only in getPhone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<PhoneLine>,
}

impl Phone {
    pub(crate) fn from_node(node: &XmlNode) -> Result<Phone, AxlError> {
        Ok(Phone {
            uuid: node.attribute("uuid").map(str::to_owned),
            name: node.child_text("name"),
            description: node.child_text("description"),
            product: node.child_text("product"),
            model: node.child_text("model"),
            class: node.child_text("class"),
            protocol: node.child_text("protocol"),
            protocol_side: node.child_text("protocolSide"),
            calling_search_space: node.child_text("callingSearchSpaceName"),
            device_pool: node.child_text("devicePoolName"),
            common_phone_config: node.child_text("commonPhoneConfigName"),
            location: node.child_text("locationName"),
            security_profile: node.child_text("securityProfileName"),
            sip_profile: node.child_text("sipProfileName"),
            owner_user_name: node.child_text("ownerUserName"),
            digest_user: node.child_text("digestUser"),
            lines: node
                .child("lines")
                .map(|l| {
                    l.children
                        .iter()
                        .filter(|c| c.name == "line")
                        .filter_map(PhoneLine::from_node)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

returned_tags! {
    /// Fields listPhone can return, in `LPhone` order.
    PhoneTag {
        Name => "name",
        Description => "description",
        Product => "product",
        Model => "model",
        Class => "class",
        Protocol => "protocol",
        ProtocolSide => "protocolSide",
        CallingSearchSpaceName => "callingSearchSpaceName",
        DevicePoolName => "devicePoolName",
        CommonPhoneConfigName => "commonPhoneConfigName",
        LocationName => "locationName",
        SecurityProfileName => "securityProfileName",
        SipProfileName => "sipProfileName",
        OwnerUserName => "ownerUserName",
        DigestUser => "digestUser",
    }
}

/// listPhone search criteria (`%` wildcard). With nothing set, all phones match.
#[derive(Debug, Clone, Default)]
pub struct PhoneSearch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub protocol: Option<String>,
    pub calling_search_space: Option<String>,
    pub device_pool: Option<String>,
    pub security_profile: Option<String>,
}

impl PhoneSearch {
    fn write(&self, w: &mut SoapWriter) {
        w.start("searchCriteria");
        let any = self.description.is_some()
            || self.protocol.is_some()
            || self.calling_search_space.is_some()
            || self.device_pool.is_some()
            || self.security_profile.is_some();
        match (&self.name, any) {
            (Some(n), _) => w.text("name", n),
            (None, false) => w.text("name", "%"),
            (None, true) => {}
        }
        w.opt("description", self.description.as_deref());
        w.opt("protocol", self.protocol.as_deref());
        w.opt(
            "callingSearchSpaceName",
            self.calling_search_space.as_deref(),
        );
        w.opt("devicePoolName", self.device_pool.as_deref());
        w.opt("securityProfileName", self.security_profile.as_deref());
        w.end("searchCriteria");
    }
}

/// A new phone (`XPhone`). The schema's required settings that ucbridge does not manage
/// are sent with CUCM's defaults (the same ones zeep fills in from the WSDL).
#[derive(Debug, Clone)]
pub struct NewPhone {
    pub name: String,
    pub description: Option<String>,
    /// e.g. "Third-party SIP Device (Advanced)".
    pub product: String,
    pub class: String,
    pub protocol: String,
    pub protocol_side: String,
    pub calling_search_space: Option<String>,
    pub device_pool: String,
    pub common_phone_config: String,
    pub location: String,
    pub security_profile: Option<String>,
    pub sip_profile: Option<String>,
    pub lines: Vec<PhoneLine>,
    pub phone_template: Option<String>,
    pub owner_user_name: Option<String>,
    pub digest_user: Option<String>,
}

impl NewPhone {
    /// A SIP phone of `product` with CUCM's stock profiles; adjust fields as needed.
    pub fn sip(
        name: impl Into<String>,
        product: impl Into<String>,
        device_pool: impl Into<String>,
    ) -> Self {
        NewPhone {
            name: name.into(),
            description: None,
            product: product.into(),
            class: "Phone".into(),
            protocol: "SIP".into(),
            protocol_side: "User".into(),
            calling_search_space: None,
            device_pool: device_pool.into(),
            common_phone_config: "Standard Common Phone Profile".into(),
            location: "Hub_None".into(),
            security_profile: None,
            sip_profile: Some("Standard SIP Profile".into()),
            lines: Vec::new(),
            phone_template: None,
            owner_user_name: None,
            digest_user: None,
        }
    }
}

/// Changes to a phone (`UpdatePhoneReq`); `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PhoneUpdate {
    pub new_name: Option<String>,
    pub description: Option<String>,
    pub calling_search_space: Option<String>,
    pub device_pool: Option<String>,
    pub security_profile: Option<String>,
    pub sip_profile: Option<String>,
    /// Replaces all line appearances when set.
    pub lines: Option<Vec<PhoneLine>>,
    pub owner_user_name: Option<String>,
    pub digest_user: Option<String>,
}

impl AxlClient {
    /// One page of listPhone.
    pub async fn list_phones_page(
        &self,
        search: &PhoneSearch,
        tags: &[PhoneTag],
        skip: u64,
        first: u32,
    ) -> Result<Vec<Phone>, AxlError> {
        self.list_page(&phone_list_call(search, tags), skip, first)
            .await
    }

    /// Every matching phone, one page per [`Pager::next_page`] call.
    pub fn phone_pager(
        &self,
        search: &PhoneSearch,
        tags: &[PhoneTag],
        options: ListOptions,
    ) -> Pager<Phone> {
        Pager::list(self, phone_list_call(search, tags), options)
    }

    /// Every matching phone, page by page; `on_page` sees each page once.
    pub async fn for_each_phone_page<E: From<AxlError>>(
        &self,
        search: &PhoneSearch,
        tags: &[PhoneTag],
        options: ListOptions,
        on_page: impl AsyncFnMut(Vec<Phone>) -> Result<(), E>,
    ) -> Result<ListSummary, E> {
        self.phone_pager(search, tags, options)
            .for_each(on_page)
            .await
    }

    /// getPhone by name or UUID.
    pub async fn get_phone(&self, key: Key<'_>) -> Result<Phone, AxlError> {
        const OP: &str = "getPhone";
        let mut w = self.writer(OP);
        key.write(&mut w, "name");
        let mut phone = None;
        self.call(OP, w.finish(), Access::Read, |part| {
            if let ResponsePart::Item(node) = part {
                if node.name == "phone" {
                    phone = Some(Phone::from_node(&node)?);
                }
            }
            Ok(())
        })
        .await?;
        phone.ok_or_else(|| AxlError::Protocol {
            operation: OP.into(),
            detail: "getPhone answer has no <phone>".into(),
        })
    }

    /// addPhone; returns the new phone's UUID. CUCM has been seen to accept `digestUser`
    /// and silently drop it (seed 001), so callers that depend on it read the phone back.
    pub async fn add_phone(&self, phone: &NewPhone) -> Result<String, AxlError> {
        const OP: &str = "addPhone";
        let mut w = self.writer(OP);
        w.start("phone");
        w.text("name", &phone.name);
        w.opt("description", phone.description.as_deref());
        w.text("product", &phone.product);
        w.text("class", &phone.class);
        w.text("protocol", &phone.protocol);
        w.text("protocolSide", &phone.protocol_side);
        w.opt(
            "callingSearchSpaceName",
            phone.calling_search_space.as_deref(),
        );
        w.text("devicePoolName", &phone.device_pool);
        w.text("commonPhoneConfigName", &phone.common_phone_config);
        w.text("locationName", &phone.location);
        w.text("useTrustedRelayPoint", "Default");
        w.opt("securityProfileName", phone.security_profile.as_deref());
        w.opt("sipProfileName", phone.sip_profile.as_deref());
        if !phone.lines.is_empty() {
            write_lines(&mut w, &phone.lines);
        }
        w.text_or_nil("phoneTemplateName", phone.phone_template.as_deref());
        w.nil("primaryPhoneName");
        w.text("builtInBridgeStatus", "Default");
        w.opt("ownerUserName", phone.owner_user_name.as_deref());
        w.text("packetCaptureMode", "None");
        w.text("certificateOperation", "No Pending Operation");
        w.text("deviceMobilityMode", "Default");
        w.opt("digestUser", phone.digest_user.as_deref());
        w.end("phone");
        self.write_call(OP, w.finish()).await
    }

    /// updatePhone; returns the phone's UUID.
    pub async fn update_phone(
        &self,
        key: Key<'_>,
        update: &PhoneUpdate,
    ) -> Result<String, AxlError> {
        const OP: &str = "updatePhone";
        let mut w = self.writer(OP);
        key.write(&mut w, "name");
        w.opt("newName", update.new_name.as_deref());
        w.opt("description", update.description.as_deref());
        w.opt(
            "callingSearchSpaceName",
            update.calling_search_space.as_deref(),
        );
        w.opt("devicePoolName", update.device_pool.as_deref());
        w.opt("securityProfileName", update.security_profile.as_deref());
        w.opt("sipProfileName", update.sip_profile.as_deref());
        if let Some(lines) = &update.lines {
            write_lines(&mut w, lines);
        }
        w.opt("ownerUserName", update.owner_user_name.as_deref());
        w.opt("digestUser", update.digest_user.as_deref());
        self.write_call(OP, w.finish()).await
    }

    /// removePhone; returns the removed phone's UUID.
    pub async fn remove_phone(&self, key: Key<'_>) -> Result<String, AxlError> {
        const OP: &str = "removePhone";
        let mut w = self.writer(OP);
        key.write(&mut w, "name");
        self.write_call(OP, w.finish()).await
    }
}

fn phone_list_call(search: &PhoneSearch, tags: &[PhoneTag]) -> ListCall<Phone> {
    let search = search.clone();
    let tags = tags.to_vec();
    ListCall {
        operation: "listPhone",
        item: "phone",
        write_criteria: Box::new(move |w| {
            search.write(w);
            write_returned_tags(w, &tags, PhoneTag::as_str, PhoneTag::placeholder);
        }),
        convert: Phone::from_node,
    }
}
