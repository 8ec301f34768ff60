//! A CUC voice message as a MIME message (mail-builder): From the caller, Date of arrival,
//! the subject, a text part with caller id, duration and urgency, and the audio: an MP3
//! made from CUC's WAV, the WAV as stored, or both ([`AttachmentFormat`]). When the WAV
//! cannot be converted (GSM 6.10, G.729a, a corrupt or empty file) the message still goes
//! out, with the original attached and the reason in the text part and the log.

use std::time::Duration;

use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use ucbridge_audio::{transcode_to_mp3, wav_duration};
use ucbridge_cuc::Message;

use crate::config::AttachmentFormat;
use crate::imap::CUC_ID_HEADER;
use crate::VoicemailError;

/// `m:ss` of a duration in milliseconds, to the nearest second (5,031 ms is 0:05).
fn duration_text(ms: u64) -> String {
    let secs = ms.saturating_add(500) / 1000;
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// One audio part.
#[derive(Debug)]
struct Part {
    content_type: String,
    file_name: &'static str,
    bytes: Vec<u8>,
}

/// The audio parts of a message, and why the MP3 is missing when it is.
#[derive(Debug)]
pub(crate) struct Audio {
    parts: Vec<Part>,
    /// Length of the recording read from the audio (CUC's own figure is preferred).
    duration: Option<Duration>,
    /// Why the MP3 that `format` asked for could not be made (or there is no audio), for
    /// the log and the text part.
    problem: Option<String>,
}

/// Build the message, transcoding off the async workers (a long recording takes LAME
/// long enough to stall every task on the worker). A conversion problem is logged and
/// returned with the message, for the account's status.
pub(crate) async fn build_message(
    m: &Message,
    audio: Vec<u8>,
    audio_type: Option<&str>,
    to: Option<(&str, &str)>,
    sender_domain: &str,
    format: AttachmentFormat,
) -> Result<(Vec<u8>, Option<String>), VoicemailError> {
    let audio_type = audio_type.map(str::to_owned);
    let audio = match format {
        AttachmentFormat::Wav => prepare_audio(audio, audio_type.as_deref(), format),
        _ => {
            tokio::task::spawn_blocking(move || prepare_audio(audio, audio_type.as_deref(), format))
                .await
                .map_err(|e| VoicemailError::Mime(format!("audio conversion task: {e}")))?
        }
    };
    let problem = audio.problem.clone();
    if let Some(problem) = &problem {
        tracing::warn!(message = %m.id, %problem, "voicemail audio not converted to MP3");
    }
    Ok((build(m, audio, to, sender_domain)?, problem))
}

/// The parts `format` asks for; the original WAV whenever the MP3 cannot be made.
pub(crate) fn prepare_audio(
    wav: Vec<u8>,
    audio_type: Option<&str>,
    format: AttachmentFormat,
) -> Audio {
    let wav_type = match audio_type {
        Some(t) if t.to_ascii_lowercase().starts_with("audio/") => {
            t.split(';').next().unwrap_or("audio/wav").trim().to_owned()
        }
        _ => "audio/wav".to_owned(),
    };
    if wav.is_empty() {
        return Audio {
            parts: vec![],
            duration: None,
            problem: Some("Unity Connection served no audio for this message".into()),
        };
    }
    let original = |bytes| Part {
        content_type: wav_type.clone(),
        file_name: "voicemessage.wav",
        bytes,
    };
    if format == AttachmentFormat::Wav {
        let duration = wav_duration(&wav).ok();
        return Audio {
            parts: vec![original(wav)],
            duration,
            problem: None,
        };
    }
    match transcode_to_mp3(&wav) {
        Ok(mp3) => {
            let mut parts = vec![Part {
                content_type: "audio/mpeg".into(),
                file_name: "voicemessage.mp3",
                bytes: mp3.bytes,
            }];
            if format == AttachmentFormat::Both {
                parts.push(original(wav));
            }
            Audio {
                parts,
                duration: Some(mp3.duration),
                problem: None,
            }
        }
        Err(e) => Audio {
            duration: wav_duration(&wav).ok(),
            parts: vec![original(wav)],
            problem: Some(format!("the recording is attached as WAV, not MP3 ({e})")),
        },
    }
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

/// The text part: what a reader needs without playing the audio. `duration` (read from the
/// audio) stands in when CUC gave none; `note` explains an attachment that is not the MP3.
pub(crate) fn summary(m: &Message, duration: Option<Duration>, note: Option<&str>) -> String {
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
    let duration_ms = m
        .duration_ms
        .or_else(|| duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    let mut text = format!(
        "Voice message from {name}\r\nCaller ID: {number}\r\nReceived: {received}\r\nDuration: {}\r\nUrgent: {}\r\n",
        duration_ms.map(duration_text).unwrap_or_else(|| "unknown".into()),
        if urgent { "yes" } else { "no" },
    );
    if let Some(note) = note {
        text.push_str(&format!("Note: {note}.\r\n"));
    }
    text
}

/// Build the message; `to` is the mailbox owner's address when known.
pub(crate) fn build(
    m: &Message,
    audio: Audio,
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
    let text = summary(m, audio.duration, audio.problem.as_deref());
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
        .text_body(text);
    for part in audio.parts {
        builder = builder.attachment(part.content_type, part.file_name, part.bytes);
    }
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
            prepare_audio(
                audio.clone(),
                Some("audio/wav; name=voicemessage.wav"),
                AttachmentFormat::Wav,
            ),
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
        assert!(
            text.contains("Duration: 0:03"),
            "3,340 ms rounds to 0:03: {text}"
        );
        assert!(text.contains("Urgent: yes"), "{text}");
        let attachment = parsed.attachment(0).unwrap();
        assert_eq!(attachment.contents(), audio.as_slice());
        assert_eq!(attachment.attachment_name(), Some("voicemessage.wav"));
        assert_eq!(parsed.header_raw("X-Priority").map(str::trim), Some("1"));
    }

    /// A 16-bit PCM WAV of `ms` of a 440 Hz tone at `rate`.
    fn pcm_wav(rate: u32, ms: u32) -> Vec<u8> {
        let samples: Vec<u8> = (0..rate * ms / 1000)
            .flat_map(|i| {
                let t = f64::from(i) / f64::from(rate);
                (((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16).to_le_bytes()
            })
            .collect();
        let mut wav = b"RIFF".to_vec();
        wav.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&rate.to_le_bytes());
        wav.extend_from_slice(&(rate * 2).to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        wav.extend_from_slice(&samples);
        wav
    }

    async fn built(m: &Message, audio: Vec<u8>, format: AttachmentFormat) -> Vec<u8> {
        build_message(
            m,
            audio,
            Some("audio/wav"),
            None,
            "voicemail.invalid",
            format,
        )
        .await
        .unwrap()
        .0
    }

    /// (content type, file name, bytes) of every attachment, and the text part.
    fn parts(raw: &[u8]) -> (Vec<(String, String, Vec<u8>)>, String) {
        let parsed = mail_parser::MessageParser::default().parse(raw).unwrap();
        let attachments = parsed
            .attachments()
            .map(|a| {
                let ct = a.content_type().unwrap();
                (
                    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()),
                    a.attachment_name().unwrap_or_default().to_owned(),
                    a.contents().to_vec(),
                )
            })
            .collect();
        (attachments, parsed.body_text(0).unwrap().into_owned())
    }

    #[test]
    fn durations_round_to_the_nearest_second() {
        assert_eq!(duration_text(0), "0:00");
        assert_eq!(duration_text(499), "0:00");
        assert_eq!(duration_text(5031), "0:05");
        assert_eq!(duration_text(5500), "0:06");
        assert_eq!(duration_text(59_499), "0:59");
        assert_eq!(duration_text(59_500), "1:00");
        assert_eq!(duration_text(754_000), "12:34");
    }

    #[tokio::test]
    async fn mp3_is_attached_as_audio_mpeg() {
        let wav = pcm_wav(8000, 2400);
        let raw = built(&message(), wav, AttachmentFormat::Mp3).await;
        let (attachments, text) = parts(&raw);
        assert_eq!(attachments.len(), 1);
        let (ct, name, bytes) = &attachments[0];
        assert_eq!(
            (ct.as_str(), name.as_str()),
            ("audio/mpeg", "voicemessage.mp3")
        );
        assert_eq!(bytes[0], 0xFF, "starts with an MPEG frame (the Info tag)");
        assert!(
            bytes.len() < 12_000,
            "32 kbps: ~9.6 kB for 2.4 s, got {}",
            bytes.len()
        );
        assert!(!text.contains("Note:"), "{text}");
    }

    #[tokio::test]
    async fn both_attaches_the_mp3_then_the_original() {
        let wav = pcm_wav(16_000, 1000);
        let raw = built(&message(), wav.clone(), AttachmentFormat::Both).await;
        let (attachments, _) = parts(&raw);
        let names: Vec<_> = attachments.iter().map(|a| a.1.as_str()).collect();
        assert_eq!(names, ["voicemessage.mp3", "voicemessage.wav"]);
        assert_eq!(attachments[1].0, "audio/wav");
        assert_eq!(attachments[1].2, wav, "the WAV as CUC served it");
    }

    #[tokio::test]
    async fn unconvertible_audio_keeps_the_wav_and_says_why() {
        // GSM 6.10 (tag 0x31): no decoder, the message still goes out with the WAV.
        let mut gsm = pcm_wav(8000, 100);
        gsm[20] = 0x31;
        let raw = built(&message(), gsm.clone(), AttachmentFormat::Mp3).await;
        let (attachments, text) = parts(&raw);
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0].1, "voicemessage.wav");
        assert_eq!(attachments[0].2, gsm);
        assert!(
            text.contains("Note:") && text.contains("GSM 6.10"),
            "{text}"
        );
        // Truncated download: same.
        let cut = pcm_wav(8000, 500);
        let cut = cut[..cut.len() / 2].to_vec();
        let (attachments, text) =
            parts(&built(&message(), cut.clone(), AttachmentFormat::Both).await);
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0].2, cut);
        assert!(text.contains("truncated"), "{text}");
        // Nothing at all: no attachment, still a message.
        let (attachments, text) = parts(&built(&message(), vec![], AttachmentFormat::Mp3).await);
        assert!(attachments.is_empty());
        assert!(text.contains("no audio"), "{text}");
    }

    #[tokio::test]
    async fn the_duration_comes_from_the_audio_when_cuc_gives_none() {
        let mut m = message();
        m.duration_ms = None;
        let (_, text) = parts(&built(&m, pcm_wav(8000, 2600), AttachmentFormat::Mp3).await);
        assert!(text.contains("Duration: 0:03"), "{text}");
        let (_, text) = parts(&built(&m, pcm_wav(8000, 2400), AttachmentFormat::Wav).await);
        assert!(text.contains("Duration: 0:02"), "{text}");
    }
}
