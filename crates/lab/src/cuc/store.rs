//! Mailboxes of the Unity Connection emulator.
//!
//! A mailbox is generated on first use, deterministically from the lab seed and the owner's
//! alias (so 100k seeded users cost nothing until someone reads a mailbox), then kept and
//! changed in memory. Audio is not stored: each message keeps the parameters of its tone
//! and the WAV is synthesised when fetched, in one of the formats CUC records in (seeded
//! messages cycle through them by tone, so a mailbox of five or more usually holds several).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::wav::{self, VoiceFormat};

/// CUMI's three folders (notes §0.2); names in URLs are case-insensitive (notes §1.1, .NET
/// SDK uses capitals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Folder {
    Inbox,
    Sent,
    Deleted,
}

impl Folder {
    pub(crate) fn parse(name: &str) -> Option<Folder> {
        match name.to_ascii_lowercase().as_str() {
            "inbox" => Some(Folder::Inbox),
            "sent" => Some(Folder::Sent),
            "deleted" => Some(Folder::Deleted),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Sent => "sent",
            Folder::Deleted => "deleted",
        }
    }

    pub(crate) const ALL: [Folder; 3] = [Folder::Inbox, Folder::Sent, Folder::Deleted];
}

/// Who owns a mailbox (from the lab database).
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) pkid: String,
    pub(crate) alias: String,
    pub(crate) display: String,
    pub(crate) extension: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Msg {
    /// `0:<uuid>` as CUMI shows it (notes §0.2).
    pub(crate) id: String,
    pub(crate) folder: Folder,
    pub(crate) subject: String,
    pub(crate) read: bool,
    pub(crate) priority: &'static str,
    pub(crate) from_display: String,
    pub(crate) from_smtp: String,
    pub(crate) from_dtmf: Option<String>,
    pub(crate) from_sub: bool,
    pub(crate) caller_number: String,
    pub(crate) caller_name: String,
    pub(crate) to_dtmf: Option<String>,
    pub(crate) arrival_ms: i64,
    pub(crate) modification_ms: i64,
    pub(crate) duration_ms: u64,
    pub(crate) imap_uid: u64,
    pub(crate) tone_hz: u32,
    /// Recording format of the synthesised tone.
    pub(crate) format: VoiceFormat,
    /// Audio given by `deliver_voicemail`; `None` = the synthesised tone.
    pub(crate) audio: Option<std::sync::Arc<Vec<u8>>>,
}

impl Msg {
    pub(crate) fn size(&self) -> usize {
        match &self.audio {
            Some(a) => a.len(),
            None => wav::size_for(self.format, self.duration_ms),
        }
    }

    pub(crate) fn wav(&self) -> Vec<u8> {
        match &self.audio {
            Some(a) => a.as_ref().clone(),
            None => wav::tone(self.format, self.duration_ms, f64::from(self.tone_hz)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) owner: Owner,
    pub(crate) messages: Vec<Msg>,
    /// One counter for the mailbox: "each time an operation is performed on Inbox folder
    /// or Delete folder, the USN of both the folders changes" (notes §1.1).
    pub(crate) usn: u64,
    pub(crate) uid_validity: u64,
    next_uid: u64,
}

impl Mailbox {
    pub(crate) fn count(&self, folder: Folder) -> usize {
        self.messages.iter().filter(|m| m.folder == folder).count()
    }

    pub(crate) fn find_mut(&mut self, id: &str) -> Option<&mut Msg> {
        self.messages.iter_mut().find(|m| m.id == id)
    }

    pub(crate) fn find(&self, id: &str) -> Option<&Msg> {
        self.messages.iter().find(|m| m.id == id)
    }

    pub(crate) fn touch(&mut self) -> i64 {
        self.usn += 1;
        now_ms()
    }

    pub(crate) fn remove(&mut self, id: &str) {
        self.messages.retain(|m| m.id != id);
        self.touch();
    }
}

/// A voice message to put into a lab mailbox (see [`crate::Cuc::deliver_voicemail`]).
#[derive(Debug, Clone, Default)]
pub struct NewVoicemail {
    /// Caller number shown as CallerId and in the subject.
    pub caller_number: String,
    pub caller_name: String,
    /// Defaults to Cisco's form `"Message from <name> (<number>)"` (fixture
    /// `cumi-inbox-messages.xml`).
    pub subject: Option<String>,
    pub duration_ms: u64,
    pub urgent: bool,
    /// WAV bytes to serve; `None` synthesises a tone of `duration_ms`.
    pub audio: Option<Vec<u8>>,
    /// Format of the synthesised tone (default: µ-law 8 kHz, CUC's default).
    pub format: VoiceFormat,
}

const CALLERS: &[&str] = &[
    "Alex Morgan",
    "Sam Rivera",
    "Jordan Lee",
    "Taylor Chen",
    "Casey Novak",
    "Robin Patel",
    "Jamie Okafor",
    "Avery Rossi",
];

/// 2026-01-05T09:00:00Z: seeded messages arrive in the hours and days before it.
const BASE_MS: i64 = 1_767_603_600_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// FNV-1a: a hash that stays the same across Rust releases (unlike `DefaultHasher`).
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn uuid_from(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

#[derive(Debug)]
pub(crate) struct Store {
    seed: u64,
    per_user: usize,
    smtp_domain: String,
    mailboxes: HashMap<String, Mailbox>,
}

impl Store {
    pub(crate) fn new(seed: u64, per_user: usize, smtp_domain: String) -> Store {
        Store {
            seed,
            per_user,
            smtp_domain,
            mailboxes: HashMap::new(),
        }
    }

    pub(crate) fn mailbox(&mut self, owner: &Owner) -> &mut Mailbox {
        let (seed, per_user) = (self.seed, self.per_user);
        let domain = self.smtp_domain.clone();
        self.mailboxes
            .entry(owner.pkid.clone())
            .or_insert_with(|| generate(seed, per_user, &domain, owner))
    }

    pub(crate) fn deliver(&mut self, owner: &Owner, vm: NewVoicemail) -> String {
        let mailbox = self.mailbox(owner);
        let now = mailbox.touch();
        let uid = mailbox.next_uid;
        mailbox.next_uid += 1;
        let id = format!("0:{}", uuid::Uuid::new_v4());
        let subject = vm
            .subject
            .unwrap_or_else(|| format!("Message from {} ({})", vm.caller_name, vm.caller_number));
        let duration_ms = if vm.duration_ms == 0 {
            2000
        } else {
            vm.duration_ms
        };
        mailbox.messages.push(Msg {
            id: id.clone(),
            folder: Folder::Inbox,
            subject,
            read: false,
            priority: if vm.urgent { "Urgent" } else { "Normal" },
            from_display: vm.caller_name.clone(),
            from_smtp: "connectionserver".into(),
            from_dtmf: None,
            from_sub: false,
            caller_number: vm.caller_number,
            caller_name: vm.caller_name,
            to_dtmf: owner.extension.clone(),
            arrival_ms: now,
            modification_ms: now,
            duration_ms,
            imap_uid: uid,
            tone_hz: 523,
            format: vm.format,
            audio: vm.audio.map(std::sync::Arc::new),
        });
        id
    }
}

fn generate(seed: u64, per_user: usize, domain: &str, owner: &Owner) -> Mailbox {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stable_hash(&owner.alias));
    let mut messages = Vec::new();
    let mut arrival = BASE_MS;
    let mut uid = 1u64;
    // per_user inbox messages (the newest unread), then one sent and one deleted message.
    let total = if per_user == 0 { 0 } else { per_user + 2 };
    for i in 0..total {
        let folder = match i {
            i if i < per_user => Folder::Inbox,
            i if i == per_user => Folder::Sent,
            _ => Folder::Deleted,
        };
        arrival -= rng.gen_range(20 * 60_000..36 * 3_600_000);
        let caller = CALLERS[rng.gen_range(0..CALLERS.len())];
        let number = format!("+1408555{:04}", rng.gen_range(0..10_000));
        let duration_ms = rng.gen_range(1_500..6_000);
        let (from_display, from_smtp, from_dtmf, from_sub, caller_name, caller_number) =
            if folder == Folder::Sent {
                (
                    owner.display.clone(),
                    format!("{}@{domain}", owner.alias),
                    owner.extension.clone(),
                    true,
                    owner.display.clone(),
                    owner.extension.clone().unwrap_or_default(),
                )
            } else {
                (
                    caller.to_owned(),
                    "connectionserver".to_owned(),
                    None,
                    false,
                    caller.to_owned(),
                    number.clone(),
                )
            };
        // Drawn in the order of the original struct literal (id, read, priority, tone) so
        // that every seed keeps its mailboxes; the format follows from the tone.
        let id = format!("0:{}", uuid_from(&mut rng));
        let read = i != 0 && rng.gen_bool(0.5);
        let priority = if rng.gen_bool(0.1) {
            "Urgent"
        } else {
            "Normal"
        };
        let tone_hz = rng.gen_range(300..900);
        messages.push(Msg {
            id,
            folder,
            subject: format!("Message from {caller_name} ({caller_number})"),
            read,
            priority,
            from_display,
            from_smtp,
            from_dtmf,
            from_sub,
            caller_number,
            caller_name,
            to_dtmf: owner.extension.clone(),
            arrival_ms: arrival,
            modification_ms: arrival,
            duration_ms,
            imap_uid: uid,
            tone_hz,
            format: VoiceFormat::ALL[tone_hz as usize % VoiceFormat::ALL.len()],
            audio: None,
        });
        uid += 1;
    }
    Mailbox {
        owner: owner.clone(),
        messages,
        usn: 1,
        uid_validity: rng.gen_range(1..1_000_000),
        next_uid: uid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(alias: &str) -> Owner {
        Owner {
            pkid: format!("pk-{alias}"),
            alias: alias.into(),
            display: "Jo Doe".into(),
            extension: Some("10001".into()),
        }
    }

    #[test]
    fn mailboxes_are_deterministic_per_seed_and_alias() {
        let ids = |seed, alias| {
            let mut s = Store::new(seed, 3, "cuc.lab".into());
            let m = s.mailbox(&owner(alias));
            m.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(1, "jdoe1"), ids(1, "jdoe1"));
        assert_ne!(ids(1, "jdoe1"), ids(2, "jdoe1"));
        assert_ne!(ids(1, "jdoe1"), ids(1, "asmith2"));
        let mut s = Store::new(1, 3, "cuc.lab".into());
        let m = s.mailbox(&owner("jdoe1"));
        assert_eq!(m.count(Folder::Inbox), 3);
        assert_eq!(m.count(Folder::Sent), 1);
        assert_eq!(m.count(Folder::Deleted), 1);
        assert!(m.messages.iter().all(|m| m.id.starts_with("0:")));
        assert!(!m.messages[0].read, "the newest message is unread");
    }

    #[test]
    fn seeded_messages_mix_cuc_recording_formats_deterministically() {
        let formats = |seed| {
            let mut s = Store::new(seed, 20, "cuc.lab".into());
            let m = s.mailbox(&owner("jdoe1"));
            m.messages.iter().map(|m| m.format).collect::<Vec<_>>()
        };
        let first = formats(7);
        assert_eq!(first, formats(7), "same seed, same formats");
        for format in VoiceFormat::ALL {
            assert!(first.contains(&format), "{format:?} missing from {first:?}");
        }
        let mut s = Store::new(7, 20, "cuc.lab".into());
        for m in &s.mailbox(&owner("jdoe1")).messages {
            assert_eq!(m.wav().len(), m.size(), "{:?}", m.format);
        }
    }

    #[test]
    fn delivery_adds_an_unread_inbox_message() {
        let mut s = Store::new(1, 0, "cuc.lab".into());
        let o = owner("jdoe1");
        let id = s.deliver(
            &o,
            NewVoicemail {
                caller_number: "+14085550100".into(),
                caller_name: "Ann Caller".into(),
                duration_ms: 1000,
                ..NewVoicemail::default()
            },
        );
        let m = s.mailbox(&o);
        let msg = m.find(&id).expect("delivered");
        assert_eq!(msg.subject, "Message from Ann Caller (+14085550100)");
        assert!(!msg.read && msg.folder == Folder::Inbox);
        assert_eq!(msg.wav().len(), msg.size());
    }
}
