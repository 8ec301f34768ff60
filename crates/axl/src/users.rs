//! End users: listUser, getUser, addUser, updateUser, removeUser.

use serde::Serialize;

use crate::client::{Access, Secret};
use crate::list::{ListCall, ListOptions, ListSummary, Pager};
use crate::model::{
    bool_text, parse_bool, returned_tags, uuid_from_return, write_returned_tags, DirectoryNumber,
    Key,
};
use crate::xml::{ResponsePart, SoapWriter, XmlNode};
use crate::{AxlClient, AxlError};

/// A CUCM end user (`LUser` from listUser, `RUser` from getUser). Fields not asked for, or
/// empty on CUCM, are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Only in getUser (`LUser` has no displayName).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_extension: Option<DirectoryNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_cti: Option<bool>,
    /// 1 = active, 2 = inactive (LDAP-synchronised user no longer in the directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telephone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pager_number: Option<String>,
    /// Only in getUser (`LUser` has no associatedDevices).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub associated_devices: Vec<String>,
}

impl User {
    pub(crate) fn from_node(node: &XmlNode) -> Result<User, AxlError> {
        Ok(User {
            uuid: node.attribute("uuid").map(str::to_owned),
            userid: node.child_text("userid"),
            first_name: node.child_text("firstName"),
            middle_name: node.child_text("middleName"),
            last_name: node.child_text("lastName"),
            display_name: node.child_text("displayName"),
            mailid: node.child_text("mailid"),
            department: node.child_text("department"),
            manager: node.child_text("manager"),
            primary_extension: node
                .child("primaryExtension")
                .and_then(DirectoryNumber::from_node),
            enable_cti: parse_bool(node.child_text("enableCti")),
            status: node.child_text("status").and_then(|s| s.parse().ok()),
            directory_uri: node.child_text("directoryUri"),
            telephone_number: node.child_text("telephoneNumber"),
            title: node.child_text("title"),
            mobile_number: node.child_text("mobileNumber"),
            home_number: node.child_text("homeNumber"),
            pager_number: node.child_text("pagerNumber"),
            associated_devices: node
                .child("associatedDevices")
                .map(|d| {
                    d.children
                        .iter()
                        .filter(|c| c.name == "device")
                        .map(|c| c.text.trim().to_owned())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

returned_tags! {
    /// Fields listUser can return, in `LUser` order.
    UserTag {
        FirstName => "firstName",
        MiddleName => "middleName",
        LastName => "lastName",
        Userid => "userid",
        Mailid => "mailid",
        Department => "department",
        Manager => "manager",
        PrimaryExtension => "primaryExtension",
        EnableCti => "enableCti" = "true",
        Status => "status",
        DirectoryUri => "directoryUri",
        TelephoneNumber => "telephoneNumber",
        Title => "title",
        MobileNumber => "mobileNumber",
        HomeNumber => "homeNumber",
        PagerNumber => "pagerNumber",
    }
}

/// listUser search criteria (`%` is the wildcard). With nothing set, all users match.
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub userid: Option<String>,
    pub department: Option<String>,
}

impl UserSearch {
    pub fn all() -> Self {
        UserSearch::default()
    }

    fn write(&self, w: &mut SoapWriter) {
        w.start("searchCriteria");
        w.opt("firstName", self.first_name.as_deref());
        w.opt("lastName", self.last_name.as_deref());
        // The criteria need at least one element; userid `%` matches everyone.
        let any =
            self.first_name.is_some() || self.last_name.is_some() || self.department.is_some();
        match (&self.userid, any) {
            (Some(u), _) => w.text("userid", u),
            (None, false) => w.text("userid", "%"),
            (None, true) => {}
        }
        w.opt("department", self.department.as_deref());
        w.end("searchCriteria");
    }
}

/// A new end user (`XUser`). `lastName` and `userid` are required by CUCM.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub userid: String,
    pub last_name: String,
    pub first_name: Option<String>,
    pub display_name: Option<String>,
    pub middle_name: Option<String>,
    pub password: Option<Secret>,
    pub pin: Option<Secret>,
    pub mailid: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
    pub associated_devices: Vec<String>,
    pub primary_extension: Option<DirectoryNumber>,
    pub enable_cti: Option<bool>,
    /// SIP digest password; the user then serves as a phone's `digestUser` (seed 001).
    pub digest_credentials: Option<Secret>,
    /// Required by the schema; CUCM's default group when `None`.
    pub presence_group: Option<String>,
    pub directory_uri: Option<String>,
    pub telephone_number: Option<String>,
    pub title: Option<String>,
    pub mobile_number: Option<String>,
    pub home_number: Option<String>,
    pub pager_number: Option<String>,
}

/// Changes to an end user (`UpdateUserReq`); `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub first_name: Option<String>,
    pub display_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub password: Option<Secret>,
    pub pin: Option<Secret>,
    pub mailid: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
    /// Replaces the whole list when set.
    pub associated_devices: Option<Vec<String>>,
    pub primary_extension: Option<DirectoryNumber>,
    pub enable_cti: Option<bool>,
    pub digest_credentials: Option<Secret>,
    pub directory_uri: Option<String>,
    pub telephone_number: Option<String>,
    pub title: Option<String>,
    pub mobile_number: Option<String>,
    pub home_number: Option<String>,
    pub pager_number: Option<String>,
}

fn write_devices(w: &mut SoapWriter, devices: &[String]) {
    w.start("associatedDevices");
    for d in devices {
        w.text("device", d);
    }
    w.end("associatedDevices");
}

impl AxlClient {
    /// One page of listUser.
    pub async fn list_users_page(
        &self,
        search: &UserSearch,
        tags: &[UserTag],
        skip: u64,
        first: u32,
    ) -> Result<Vec<User>, AxlError> {
        self.list_page(&user_list_call(search, tags), skip, first)
            .await
    }

    /// Every matching user, one page per [`Pager::next_page`] call.
    pub fn user_pager(
        &self,
        search: &UserSearch,
        tags: &[UserTag],
        options: ListOptions,
    ) -> Pager<User> {
        Pager::list(self, user_list_call(search, tags), options)
    }

    /// Every matching user, page by page; `on_page` sees each page once.
    pub async fn for_each_user_page<E: From<AxlError>>(
        &self,
        search: &UserSearch,
        tags: &[UserTag],
        options: ListOptions,
        on_page: impl AsyncFnMut(Vec<User>) -> Result<(), E>,
    ) -> Result<ListSummary, E> {
        self.user_pager(search, tags, options)
            .for_each(on_page)
            .await
    }

    /// Every matching user in one vector (see [`AxlClient::for_each_user_page`] to bound memory).
    pub async fn list_users(
        &self,
        search: &UserSearch,
        tags: &[UserTag],
    ) -> Result<Vec<User>, AxlError> {
        let mut all = Vec::new();
        self.for_each_user_page(search, tags, ListOptions::default(), async |page| {
            all.extend(page);
            Ok::<_, AxlError>(())
        })
        .await?;
        Ok(all)
    }

    /// getUser by userid or UUID, with every field this client models.
    pub async fn get_user(&self, key: Key<'_>) -> Result<User, AxlError> {
        const OP: &str = "getUser";
        let mut w = self.writer(OP);
        key.write(&mut w, "userid");
        let mut user = None;
        self.call(OP, w.finish(), Access::Read, |part| {
            if let ResponsePart::Item(node) = part {
                if node.name == "user" {
                    user = Some(User::from_node(&node)?);
                }
            }
            Ok(())
        })
        .await?;
        user.ok_or_else(|| AxlError::Protocol {
            operation: OP.into(),
            detail: "getUser answer has no <user>".into(),
        })
    }

    /// addUser; returns the new user's UUID.
    pub async fn add_user(&self, user: &NewUser) -> Result<String, AxlError> {
        const OP: &str = "addUser";
        let mut w = self.writer(OP);
        w.start("user");
        w.opt("firstName", user.first_name.as_deref());
        w.opt("displayName", user.display_name.as_deref());
        w.opt("middleName", user.middle_name.as_deref());
        w.text("lastName", &user.last_name);
        w.text("userid", &user.userid);
        w.opt("password", user.password.as_ref().map(Secret::expose));
        w.opt("pin", user.pin.as_ref().map(Secret::expose));
        w.opt("mailid", user.mailid.as_deref());
        w.opt("department", user.department.as_deref());
        w.opt("manager", user.manager.as_deref());
        if !user.associated_devices.is_empty() {
            write_devices(&mut w, &user.associated_devices);
        }
        if let Some(dn) = &user.primary_extension {
            dn.write(&mut w, "primaryExtension");
        }
        w.opt("enableCti", user.enable_cti.map(bool_text));
        w.opt(
            "digestCredentials",
            user.digest_credentials.as_ref().map(Secret::expose),
        );
        w.text(
            "presenceGroupName",
            user.presence_group
                .as_deref()
                .unwrap_or("Standard Presence group"),
        );
        w.opt("directoryUri", user.directory_uri.as_deref());
        w.opt("telephoneNumber", user.telephone_number.as_deref());
        w.opt("title", user.title.as_deref());
        w.opt("mobileNumber", user.mobile_number.as_deref());
        w.opt("homeNumber", user.home_number.as_deref());
        w.opt("pagerNumber", user.pager_number.as_deref());
        w.end("user");
        self.write_call(OP, w.finish()).await
    }

    /// updateUser; returns the user's UUID.
    pub async fn update_user(&self, key: Key<'_>, update: &UserUpdate) -> Result<String, AxlError> {
        const OP: &str = "updateUser";
        let mut w = self.writer(OP);
        key.write(&mut w, "userid");
        w.opt("firstName", update.first_name.as_deref());
        w.opt("displayName", update.display_name.as_deref());
        w.opt("middleName", update.middle_name.as_deref());
        w.opt("lastName", update.last_name.as_deref());
        w.opt("password", update.password.as_ref().map(Secret::expose));
        w.opt("pin", update.pin.as_ref().map(Secret::expose));
        w.opt("mailid", update.mailid.as_deref());
        w.opt("department", update.department.as_deref());
        w.opt("manager", update.manager.as_deref());
        if let Some(devices) = &update.associated_devices {
            write_devices(&mut w, devices);
        }
        if let Some(dn) = &update.primary_extension {
            dn.write(&mut w, "primaryExtension");
        }
        w.opt("enableCti", update.enable_cti.map(bool_text));
        w.opt(
            "digestCredentials",
            update.digest_credentials.as_ref().map(Secret::expose),
        );
        w.opt("directoryUri", update.directory_uri.as_deref());
        w.opt("telephoneNumber", update.telephone_number.as_deref());
        w.opt("title", update.title.as_deref());
        w.opt("mobileNumber", update.mobile_number.as_deref());
        w.opt("homeNumber", update.home_number.as_deref());
        w.opt("pagerNumber", update.pager_number.as_deref());
        self.write_call(OP, w.finish()).await
    }

    /// removeUser; returns the removed user's UUID.
    pub async fn remove_user(&self, key: Key<'_>) -> Result<String, AxlError> {
        const OP: &str = "removeUser";
        let mut w = self.writer(OP);
        key.write(&mut w, "userid");
        self.write_call(OP, w.finish()).await
    }

    /// Send an add/update/remove and return the UUID CUCM answers with.
    pub(crate) async fn write_call(
        &self,
        operation: &'static str,
        body: Vec<u8>,
    ) -> Result<String, AxlError> {
        let mut uuid = None;
        self.call(operation, body, Access::Write, |part| {
            if let ResponsePart::ReturnText(t) = part {
                uuid = Some(t);
            }
            Ok(())
        })
        .await?;
        uuid_from_return(uuid, operation)
    }
}

fn user_list_call(search: &UserSearch, tags: &[UserTag]) -> ListCall<User> {
    let search = search.clone();
    let tags = tags.to_vec();
    ListCall {
        operation: "listUser",
        item: "user",
        write_criteria: Box::new(move |w| {
            search.write(w);
            write_returned_tags(w, &tags, UserTag::as_str, UserTag::placeholder);
        }),
        convert: User::from_node,
    }
}
