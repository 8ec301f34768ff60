//! CUMI and CUPI records, read from [`Node`]s. Element names are CUC's (fixtures
//! `cumi-*.xml`, `cupi-users-list.xml`, `cupi-users-query-single.json`).

use serde::Serialize;

use crate::node::Node;
use crate::CucError;

fn bool_of(n: &Node, name: &str) -> Result<bool, CucError> {
    match n.text_of(name) {
        None => Ok(false),
        Some(t) if t.eq_ignore_ascii_case("true") || t == "1" => Ok(true),
        Some(t) if t.eq_ignore_ascii_case("false") || t == "0" => Ok(false),
        Some(t) => Err(CucError::Protocol(format!(
            "{name} is {t:?}, not a boolean"
        ))),
    }
}

fn num_of<T: std::str::FromStr>(n: &Node, name: &str) -> Result<Option<T>, CucError> {
    match n.text_of(name) {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| CucError::Protocol(format!("{name} is {t:?}, not a number"))),
    }
}

fn text(n: &Node, name: &str) -> Option<String> {
    n.text_of(name).map(str::to_owned)
}

fn expect_root(n: &Node, name: &str) -> Result<(), CucError> {
    if n.name == name {
        Ok(())
    } else {
        Err(CucError::Protocol(format!(
            "expected <{name}>, got <{}>",
            n.name
        )))
    }
}

/// `total="N"` of a list (`@total` in JSON).
fn total_of(n: &Node) -> Result<u64, CucError> {
    match n.attr("total") {
        None => Ok(n.children.len() as u64),
        Some(t) => t
            .trim()
            .parse()
            .map_err(|_| CucError::Protocol(format!("total is {t:?}, not a number"))),
    }
}

/// Sender or recipient address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Address {
    pub display_name: Option<String>,
    /// Can be a bare host such as `connectionserver` in lists (notes §1.2).
    pub smtp_address: Option<String>,
    /// The extension.
    pub dtmf_access_id: Option<String>,
}

impl Address {
    fn read(n: &Node) -> Address {
        Address {
            display_name: text(n, "DisplayName"),
            smtp_address: text(n, "SmtpAddress"),
            // The schema spells DtmfAccessID, real answers DtmfAccessId (fixtures).
            dtmf_access_id: text(n, "DtmfAccessId").or_else(|| text(n, "DtmfAccessID")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallerId {
    pub number: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub uri: String,
    /// e.g. `audio/wav; name=voicemessage.wav`.
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    /// `TO`, `CC` or `BCC`.
    pub kind: String,
    pub address: Address,
}

/// A CUMI message: the list envelope, plus attachments and recipients when read one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `0:<uuid>` (notes §0.2).
    pub id: String,
    pub subject: Option<String>,
    pub read: bool,
    pub dispatch: bool,
    pub secure: bool,
    /// `Low`, `Normal` or `Urgent`.
    pub priority: Option<String>,
    pub sensitivity: Option<String>,
    pub uri: Option<String>,
    pub from: Address,
    pub caller_id: CallerId,
    /// Milliseconds since 1970 UTC (notes §1.2).
    pub arrival_time_ms: Option<i64>,
    pub size_bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub imap_uid: Option<String>,
    pub from_subscriber: bool,
    /// `Voice`, `Email`, `Fax`, `DR`, `RR`, `NDR`.
    pub msg_type: Option<String>,
    pub modification_time_ms: Option<i64>,
    pub attachments: Vec<Attachment>,
    pub recipients: Vec<Recipient>,
}

impl Message {
    pub(crate) fn read_node(n: &Node) -> Result<Message, CucError> {
        expect_root(n, "Message")?;
        let id =
            text(n, "MsgId").ok_or_else(|| CucError::Protocol("a Message without MsgId".into()))?;
        let attachments = n
            .child("Attachments")
            .map(|a| {
                a.children_named("Attachment")
                    .filter_map(|x| {
                        Some(Attachment {
                            uri: text(x, "URI")?,
                            content_type: text(x, "contentType"),
                            content_disposition: text(x, "contentDisposition"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let recipients = n
            .child("Recipients")
            .map(|r| {
                r.children_named("Recipient")
                    .map(|x| Recipient {
                        kind: text(x, "Type").unwrap_or_default(),
                        address: x.child("Address").map(Address::read).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Message {
            id,
            subject: text(n, "Subject"),
            read: bool_of(n, "Read")?,
            dispatch: bool_of(n, "Dispatch")?,
            secure: bool_of(n, "Secure")?,
            priority: text(n, "Priority"),
            sensitivity: text(n, "Sensitivity"),
            uri: text(n, "URI"),
            from: n.child("From").map(Address::read).unwrap_or_default(),
            caller_id: n
                .child("CallerId")
                .map(|c| CallerId {
                    number: text(c, "CallerNumber"),
                    name: text(c, "CallerName"),
                })
                .unwrap_or_default(),
            arrival_time_ms: num_of(n, "ArrivalTime")?,
            size_bytes: num_of(n, "Size")?,
            duration_ms: num_of(n, "Duration")?,
            imap_uid: text(n, "IMAPUid"),
            from_subscriber: bool_of(n, "FromSub")?,
            msg_type: text(n, "MsgType"),
            modification_time_ms: num_of(n, "ModificationTime")?,
            attachments,
            recipients,
        })
    }
}

/// One page of a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagePage {
    /// All messages matching, across pages.
    pub total: u64,
    pub messages: Vec<Message>,
}

impl MessagePage {
    pub(crate) fn read_node(n: &Node) -> Result<MessagePage, CucError> {
        expect_root(n, "Messages")?;
        Ok(MessagePage {
            total: total_of(n)?,
            messages: n
                .children_named("Message")
                .map(Message::read_node)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// `GET /vmrest/mailbox/folders/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderInfo {
    pub display_name: Option<String>,
    pub message_count: u64,
    /// Update sequence number, 11.5+ (notes §1.1).
    pub usn: Option<u64>,
    pub uid_validity: Option<u64>,
}

impl FolderInfo {
    pub(crate) fn read_node(n: &Node) -> Result<FolderInfo, CucError> {
        expect_root(n, "Folder")?;
        Ok(FolderInfo {
            display_name: text(n, "DisplayName"),
            message_count: num_of(n, "MessageCount")?.unwrap_or(0),
            usn: num_of(n, "USN")?,
            uid_validity: num_of(n, "UIDValidity")?,
        })
    }
}

/// `GET /vmrest/mailbox` (Mailbox schema, fixture `cumi-schema-fragments.xsd.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxInfo {
    pub display_name: Option<String>,
    pub current_size_bytes: Option<u64>,
    pub is_primary: bool,
    pub is_mailbox_mounted: bool,
    pub is_receive_quota_exceeded: bool,
    pub is_send_quota_exceeded: bool,
    pub receive_quota: Option<u64>,
    pub send_quota: Option<u64>,
    pub is_deleted_folder_enabled: bool,
}

impl MailboxInfo {
    pub(crate) fn read_node(n: &Node) -> Result<MailboxInfo, CucError> {
        expect_root(n, "Mailbox")?;
        Ok(MailboxInfo {
            display_name: text(n, "DisplayName"),
            current_size_bytes: num_of(n, "CurrentSizeInBytes")?,
            is_primary: bool_of(n, "IsPrimary")?,
            is_mailbox_mounted: bool_of(n, "IsMailboxMounted")?,
            is_receive_quota_exceeded: bool_of(n, "IsReceiveQuotaExceeded")?,
            is_send_quota_exceeded: bool_of(n, "IsSendQuotaExceeded")?,
            receive_quota: num_of(n, "ReceiveQuota")?,
            send_quota: num_of(n, "SendQuota")?,
            is_deleted_folder_enabled: bool_of(n, "IsDeletedFolderEnabled")?,
        })
    }
}

/// A CUPI user (summary fields from lists; `smtp_address` only on the full object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub object_id: String,
    pub alias: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    /// The corporate address; not the CUC SMTP address (seed 002, notes §2).
    pub email_address: Option<String>,
    pub smtp_address: Option<String>,
    /// DtmfAccessId: the primary extension.
    pub extension: Option<String>,
    pub department: Option<String>,
    pub uri: Option<String>,
}

impl User {
    pub(crate) fn read_node(n: &Node) -> Result<User, CucError> {
        expect_root(n, "User")?;
        Ok(User {
            object_id: text(n, "ObjectId")
                .ok_or_else(|| CucError::Protocol("a User without ObjectId".into()))?,
            alias: text(n, "Alias")
                .ok_or_else(|| CucError::Protocol("a User without Alias".into()))?,
            first_name: text(n, "FirstName"),
            last_name: text(n, "LastName"),
            display_name: text(n, "DisplayName"),
            email_address: text(n, "EmailAddress"),
            smtp_address: text(n, "SmtpAddress"),
            extension: text(n, "DtmfAccessId"),
            department: text(n, "Department"),
            uri: text(n, "URI"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPage {
    pub total: u64,
    pub users: Vec<User>,
}

impl UserPage {
    pub(crate) fn read_node(n: &Node) -> Result<UserPage, CucError> {
        expect_root(n, "Users")?;
        Ok(UserPage {
            total: total_of(n)?,
            users: n
                .children_named("User")
                .map(User::read_node)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// `GET /vmrest/version` (fixture `vmrest-version.xml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub name: Option<String>,
    pub version: String,
}

impl VersionInfo {
    pub(crate) fn read_node(n: &Node) -> Result<VersionInfo, CucError> {
        expect_root(n, "VersionInformation")?;
        Ok(VersionInfo {
            name: text(n, "name"),
            version: text(n, "version")
                .ok_or_else(|| CucError::Protocol("VersionInformation without version".into()))?,
        })
    }
}

/// CUC's error body: `ErrorDetails/errors/{code,message}` as real servers send (fixtures
/// `cupi-error-details-*.xml`; JSON `{"errors":{...}}`, notes §1.4), or the older
/// `<Error><Code/><Message/>...` of the CUMI guide (fixture `cumi-error-403-doc-example.txt`),
/// whose second code/message pair is kept as detail.
pub(crate) fn read_error(n: &Node) -> Option<(String, String)> {
    if let Some(errors) = n.child("errors") {
        let code = text(errors, "code")?;
        let message = text(errors, "message").unwrap_or_default();
        return Some((code, message));
    }
    if n.name == "Error" {
        let codes: Vec<&str> = n.children_named("Code").map(|c| c.text.trim()).collect();
        let messages: Vec<&str> = n.children_named("Message").map(|c| c.text.trim()).collect();
        let code = (*codes.first()?).to_owned();
        let mut message = messages.first().copied().unwrap_or_default().to_owned();
        if let (Some(c2), Some(m2)) = (codes.get(1), messages.get(1)) {
            message.push_str(&format!(" ({c2} {m2})"));
        }
        return Some((code, message));
    }
    None
}
