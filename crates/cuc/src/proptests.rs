//! Property tests of everything that reads network input: the tree readers (XML, JSON),
//! the record readers over them, and the CUNI event parser. Arbitrary and mutated input
//! must give a value or an error — never a panic — and every tree built stays within
//! [`MAX_DEPTH`]. 256 cases per property by default; `PROPTEST_CASES=100000` runs longer.

use proptest::prelude::*;

use crate::limits::MAX_DEPTH;
use crate::model::{
    read_error, FolderInfo, MailboxInfo, Message, MessagePage, User, UserPage, VersionInfo,
};
use crate::node::{from_json, from_xml, Node};
use crate::sso_status::SsoStatus;
use crate::{CucError, MessageEvent};

/// Well-formed documents in CUC's shapes, the seeds that mutations start from.
const SEEDS: &[&str] = &[
    r#"<?xml version="1.0"?><Messages total="2"><Message><MsgId>0:ab</MsgId><Subject>a &amp; b</Subject><Read>true</Read><Priority>Urgent</Priority><From><DisplayName>X</DisplayName><DtmfAccessId>1001</DtmfAccessId></From><CallerId><CallerNumber>1001</CallerNumber></CallerId><ArrivalTime>1522069679000</ArrivalTime><Size>37291</Size><Duration>3340</Duration><MsgType>1</MsgType></Message><Message><MsgId>0:cd</MsgId><Attachments><Attachment><URI>/vmrest/messages/0:cd/attachments/0</URI><contentType>audio/wav</contentType></Attachment></Attachments><Recipients><Recipient><Type>TO</Type><Address><SmtpAddress>a@b</SmtpAddress></Address></Recipient></Recipients></Message></Messages>"#,
    r#"<?xml version="1.0"?><Users total="1"><User><URI>/vmrest/users/1</URI><ObjectId>1</ObjectId><Alias>jdoe</Alias><FirstName>J</FirstName><LastName>Doe</LastName><DtmfAccessId>1001</DtmfAccessId><SmtpAddress>jdoe@x</SmtpAddress></User></Users>"#,
    r#"<Folder><DisplayName>Inbox</DisplayName><MessageCount>3</MessageCount><UnreadCount>1</UnreadCount><Usn>7</Usn><UIDValidity>11</UIDValidity></Folder>"#,
    r#"<ErrorDetails><errors><code>NOT_FOUND</code><message>gone</message></errors></ErrorDetails>"#,
    r#"<messageEvent subscriptionId="s1" eventType="NEW_MESSAGE" eventTime="11:15:40 PM 10/30/2008" mailboxId="abell" displayName="A" USN="7"><messageInfo messageId="72204bd7" receiveTime="x" uid="543" msgType="Voice" priority="Urgent" sender="null" callerAni="+1408"/></messageEvent>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><ns:subscribeResponse xmlns:ns="x"><ns:out><subscriptionId>s1</subscriptionId><expiration>2030-01-01T00:00:00Z</expiration></ns:out></ns:subscribeResponse></soapenv:Body></soapenv:Envelope>"#,
    r#"<ssoStatus><globalSsoState>HYBRID</globalSsoState><hasIdsCredentials>true</hasIdsCredentials><ssoComponentStatuses><ssoComponentStatus><refURL>/x/21</refURL><name>A</name></ssoComponentStatus></ssoComponentStatuses></ssoStatus>"#,
    r#"{"@total":"2","Message":[{"MsgId":"0:ab","Read":"true","From":{"DisplayName":"X"}},{"MsgId":"0:cd","Size":"12"}]}"#,
    r#"{"@total":"1","User":{"ObjectId":"1","Alias":"jdoe","DtmfAccessId":"1001"}}"#,
    r#"{"errors":{"code":"NOT_FOUND","message":"gone"}}"#,
];

/// Depth of a tree (the root is 1), without recursion.
fn depth(root: &Node) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(root, 1)];
    while let Some((node, d)) = pending.pop() {
        deepest = deepest.max(d);
        pending.extend(node.children.iter().map(|c| (c, d + 1)));
    }
    deepest
}

/// Every record reader over one tree; results are irrelevant, panics are not.
fn read_all(n: &Node) {
    assert!(depth(n) <= MAX_DEPTH, "a tree of depth {}", depth(n));
    let _ = Message::read_node(n);
    let _ = MessagePage::read_node(n);
    let _ = FolderInfo::read_node(n);
    let _ = MailboxInfo::read_node(n);
    let _ = User::read_node(n);
    let _ = UserPage::read_node(n);
    let _ = VersionInfo::read_node(n);
    let _ = SsoStatus::read(n);
    let _ = read_error(n);
}

/// Everything a body from the network goes through.
fn read_body(bytes: &[u8]) {
    if let Ok(n) = from_xml(bytes) {
        read_all(&n);
    }
    for root in ["Messages", "Users", "ErrorDetails"] {
        if let Ok(n) = from_json(bytes, root) {
            read_all(&n);
        }
    }
    let _ = MessageEvent::parse(bytes);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Repeat a slice many times (nesting, long runs).
    Repeat(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let fragment = prop_oneof![
        Just(b"<a>".to_vec()),
        Just(b"</a>".to_vec()),
        Just(b"<![CDATA[x]]>".to_vec()),
        Just(b"&amp;&#x0;&bogus;".to_vec()),
        Just(b"{\"a\":[".to_vec()),
        Just(b"]}".to_vec()),
        Just(b"\"@total\":\"-1\"".to_vec()),
        Just("\u{feff}\u{10ffff}".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), fragment).prop_map(|(i, f)| Mutation::Insert(i, f)),
        (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..8, 1usize..200).prop_map(|(i, l, n)| Mutation::Repeat(i, l, n)),
    ]
}

fn apply(doc: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, b) if !doc.is_empty() => {
            let i = i % doc.len();
            doc[i] ^= b;
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(i, f) => {
            let i = at(*i, doc.len());
            doc.splice(i..i, f.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i, doc.len());
            let end = (i + n).min(doc.len());
            doc.drain(i..end);
        }
        Mutation::Truncate(i) => doc.truncate(at(*i, doc.len())),
        Mutation::Repeat(i, l, n) => {
            let i = at(*i, doc.len());
            let end = (i + l).min(doc.len());
            let piece = doc[i..end].repeat(*n);
            doc.splice(i..i, piece);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        read_body(&bytes);
    }

    #[test]
    fn mutated_cuc_documents_never_panic(
        seed in 0..SEEDS.len(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        let mut doc = SEEDS[seed].as_bytes().to_vec();
        for m in &mutations {
            apply(&mut doc, m);
        }
        read_body(&doc);
    }

    /// Nesting is accepted up to the limit and refused past it, in both formats, at any
    /// depth up to far beyond the stack's reach.
    #[test]
    fn depth_bound_holds(levels in prop_oneof![1usize..80, 1000usize..200_000], closed: bool) {
        let mut xml = b"<a x=\"1\">".repeat(levels);
        if closed {
            xml.extend(b"</a>".repeat(levels));
        }
        match from_xml(&xml) {
            Ok(n) => {
                prop_assert!(closed && levels <= MAX_DEPTH);
                prop_assert_eq!(depth(&n), levels);
            }
            Err(CucError::TooDeep { limit }) => {
                prop_assert_eq!(limit, MAX_DEPTH);
                prop_assert!(levels > MAX_DEPTH);
            }
            Err(e) => prop_assert!(!closed && levels <= MAX_DEPTH, "{e}"),
        }
        // {"a":{"a":...1}}: `levels` objects under the root object.
        let mut json = b"{\"a\":".repeat(levels);
        json.extend_from_slice(b"1");
        json.extend(b"}".repeat(levels));
        match from_json(&json, "root") {
            Ok(n) => {
                prop_assert!(levels < MAX_DEPTH);
                prop_assert_eq!(depth(&n), levels + 1);
            }
            Err(CucError::TooDeep { .. }) => prop_assert!(levels >= MAX_DEPTH),
            Err(e) => prop_assert!(false, "{e}"),
        }
        let event = [
            b"<messageEvent eventType=\"NEW_MESSAGE\">".as_slice(),
            &b"<a>".repeat(levels),
            &b"</a>".repeat(levels),
            b"</messageEvent>",
        ]
        .concat();
        let parsed = MessageEvent::parse(&event);
        let too_big = event.len() > crate::MAX_EVENT_BYTES;
        prop_assert_eq!(parsed.is_ok(), levels < MAX_DEPTH && !too_big, "{:?}", parsed);
    }

    /// Events built from arbitrary attribute values read back what was written.
    #[test]
    fn cuni_events_read_back(
        event_type in "[A-Z_]{1,20}",
        alias in "[^\u{0}-\u{1f}]{0,40}",
        usn: Option<u64>,
        ids in proptest::collection::vec("[0-9a-f-]{1,36}", 0..5),
    ) {
        let mut w = quick_xml::Writer::new(Vec::new());
        let mut root = quick_xml::events::BytesStart::new("messageEvent");
        root.push_attribute(("eventType", event_type.as_str()));
        root.push_attribute(("mailboxId", alias.as_str()));
        if let Some(usn) = usn {
            root.push_attribute(("USN", usn.to_string().as_str()));
        }
        w.write_event(quick_xml::events::Event::Start(root)).unwrap();
        for id in &ids {
            let mut info = quick_xml::events::BytesStart::new("messageInfo");
            info.push_attribute(("messageId", id.as_str()));
            w.write_event(quick_xml::events::Event::Empty(info)).unwrap();
        }
        w.write_event(quick_xml::events::Event::End(
            quick_xml::events::BytesEnd::new("messageEvent"),
        ))
        .unwrap();
        let e = MessageEvent::parse(&w.into_inner()).unwrap();
        prop_assert_eq!(e.usn, usn);
        let expected_alias = Some(alias.trim()).filter(|a| !a.is_empty() && *a != "null");
        prop_assert_eq!(e.mailbox_id.as_deref(), expected_alias);
        prop_assert_eq!(
            e.messages.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(),
            ids.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
}
