//! A CUC voice message as a MIME message (mail-builder): From the caller, Date of arrival,
//! the subject, a text part with caller id, duration and urgency, and the WAV as stored.

use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use ucbridge_cuc::Message;

use crate::imap::CUC_ID_HEADER;
use crate::VoicemailError;

/// `mm:ss` of a duration in milliseconds.
fn duration_text(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The caller's name and a syntactically valid address for From.
fn sender(m: &Message, sender_domain: &str) -> (String, String) {
    let number = m
        .caller_id
        .number
        .clone()
        .or_else(|| m.from.dtmf_access_id.clone())
        .unwrap_or_default();
    let name = m
        .caller_id
        .name
        .clone()
        .or_else(|| m.from.display_name.clone())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            if number.is_empty() {
                "Unknown caller".into()
            } else {
                number.clone()
            }
        });
    // CUC lists may show a bare host ("connectionserver") as SmtpAddress (notes §1.2).
    let address = match m.from.smtp_address.as_deref() {
        Some(a) if a.contains('@') => a.to_owned(),
        _ => {
            let local: String = number
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
                .collect();
            let local = if local.is_empty() {
                "unknown".into()
            } else {
                local
            };
            format!("{local}@{sender_domain}")
        }
    };
    (name, address)
}

/// The text part: what a reader needs without playing the audio.
pub(crate) fn summary(m: &Message) -> String {
    let (name, _) = sender(m, "x");
    let number = m.caller_id.number.as_deref().unwrap_or("unknown");
    let received = m
        .arrival_time_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "unknown".into());
    let urgent = m
        .priority
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("urgent"));
    format!(
        "Voice message from {name}\r\nCaller ID: {number}\r\nReceived: {received}\r\nDuration: {}\r\nUrgent: {}\r\n",
        m.duration_ms.map(duration_text).unwrap_or_else(|| "unknown".into()),
        if urgent { "yes" } else { "no" },
    )
}

/// Build the message; `to` is the mailbox owner's address when known.
pub(crate) fn build(
    m: &Message,
    audio: Vec<u8>,
    audio_type: Option<&str>,
    to: Option<(&str, &str)>,
    sender_domain: &str,
) -> Result<Vec<u8>, VoicemailError> {
    let (name, address) = sender(m, sender_domain);
    let subject = m
        .subject
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("Voice message from {name}"));
    let uuid = m.id.trim_start_matches("0:");
    let urgent = m
        .priority
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("urgent"));
    let content_type = match audio_type {
        Some(t) if t.to_ascii_lowercase().starts_with("audio/") => {
            t.split(';').next().unwrap_or("audio/wav").trim().to_owned()
        }
        _ => "audio/wav".to_owned(),
    };
    let mut builder = MessageBuilder::new()
        .from((name, address))
        .subject(subject)
        .date(
            m.arrival_time_ms
                .map(|ms| ms / 1000)
                .unwrap_or_else(|| chrono::Utc::now().timestamp()),
        )
        // A stable Message-ID: the same CUC message always gets the same one.
        .message_id(format!("{uuid}@cuc.ucbridge"))
        .header(CUC_ID_HEADER, Raw::new(m.id.clone()))
        .text_body(summary(m))
        .attachment(content_type, "voicemessage.wav", audio);
    if let Some((display, addr)) = to {
        builder = builder.to((display.to_owned(), addr.to_owned()));
    }
    if urgent {
        // RFC 2156 Importance, and the de-facto X-Priority most clients show.
        builder = builder
            .header("Importance", Raw::new("high"))
            .header("X-Priority", Raw::new("1"));
    }
    builder
        .write_to_vec()
        .map_err(|e| VoicemailError::Mime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;
    use ucbridge_cuc::{Address, CallerId};

    fn message() -> Message {
        Message {
            id: "0:b4ffbaa5-19ad-4f4f-b95a-933a32e00d64".into(),
            subject: Some("Message from Zoë \"Z\" <x> (1001)".into()),
            read: false,
            dispatch: false,
            secure: false,
            priority: Some("Urgent".into()),
            sensitivity: None,
            uri: None,
            from: Address {
                display_name: Some("Zoë".into()),
                smtp_address: Some("connectionserver".into()),
                dtmf_access_id: None,
            },
            caller_id: CallerId {
                number: Some("+1 408 555 0100".into()),
                name: Some("Zoë \"Z\" Müller".into()),
            },
            arrival_time_ms: Some(1_522_069_679_000),
            size_bytes: None,
            duration_ms: Some(3340),
            imap_uid: None,
            from_subscriber: false,
            msg_type: Some("Voice".into()),
            modification_time_ms: None,
            attachments: vec![],
            recipients: vec![],
        }
    }

    /// What we build, a MIME parser reads back: headers escaped/encoded, audio intact.
    #[test]
    fn round_trips_through_a_mime_parser() {
        let audio: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let raw = build(
            &message(),
            audio.clone(),
            Some("audio/wav; name=voicemessage.wav"),
            Some(("Jo Doe", "jdoe@example.com")),
            "voicemail.invalid",
        )
        .unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("Message from Zoë \"Z\" <x> (1001)"));
        let from = parsed.from().and_then(|a| a.first()).unwrap();
        assert_eq!(from.name(), Some("Zoë \"Z\" Müller"));
        assert_eq!(from.address(), Some("+14085550100@voicemail.invalid"));
        assert_eq!(
            parsed.header_raw(CUC_ID_HEADER).map(str::trim),
            Some("0:b4ffbaa5-19ad-4f4f-b95a-933a32e00d64")
        );
        assert_eq!(
            parsed.message_id(),
            Some("b4ffbaa5-19ad-4f4f-b95a-933a32e00d64@cuc.ucbridge")
        );
        assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_522_069_679));
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("Duration: 0:04"), "{text}");
        assert!(text.contains("Urgent: yes"), "{text}");
        let attachment = parsed.attachment(0).unwrap();
        assert_eq!(attachment.contents(), audio.as_slice());
        assert_eq!(attachment.attachment_name(), Some("voicemessage.wav"));
        assert_eq!(parsed.header_raw("X-Priority").map(str::trim), Some("1"));
    }
}
