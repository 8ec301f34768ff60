//! Voicemail audio end to end: the CUC lab records in each of CUC's formats, the engine
//! syncs them into a real Dovecot as MP3 (the default), and what cannot be converted —
//! GSM 6.10, a truncated download, no audio at all — still syncs, with the original (or
//! nothing) attached and the reason in the text part.

use crate::common;

use std::collections::HashMap;

use common::world;
use mail_parser::MimeHeaders;
use ucbridge_lab::{NewVoicemail, VoiceFormat};
use ucbridge_voicemail::{AttachmentFormat, VoicemailOptions};

/// (name, format, audio given instead of the lab's tone).
fn deliveries() -> Vec<(&'static str, VoiceFormat, Option<Vec<u8>>)> {
    let mut truncated = b"RIFF\xff\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0".to_vec();
    truncated.extend_from_slice(b"\x80\x3e\0\0\x02\0\x10\0data\xff\xff\0\0\x01\x02\x03\x04");
    vec![
        ("mulaw", VoiceFormat::MuLaw8k, None),
        ("alaw", VoiceFormat::ALaw8k, None),
        ("pcm8", VoiceFormat::Pcm8k, None),
        ("pcm16", VoiceFormat::Pcm16k, None),
        ("gsm", VoiceFormat::Gsm610, None),
        ("truncated", VoiceFormat::MuLaw8k, Some(truncated)),
        ("empty", VoiceFormat::MuLaw8k, Some(Vec::new())),
    ]
}

/// What one synced message carries: (content type, file name, first 4 bytes) per
/// attachment, and the text part.
type Synced = (Vec<(String, String, Vec<u8>)>, String);

fn read(raw: &[u8]) -> Synced {
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("MIME");
    let attachments = parsed
        .attachments()
        .map(|a| {
            let ct = a.content_type().expect("content type");
            (
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()),
                a.attachment_name().unwrap_or_default().to_owned(),
                a.contents().iter().take(4).copied().collect(),
            )
        })
        .collect();
    (attachments, parsed.body_text(0).expect("text").into_owned())
}

#[tokio::test]
async fn every_cuc_format_syncs_as_mp3_or_keeps_its_wav_with_a_reason() {
    let Some(w) = world(1, 0).await else { return };
    let alias = w.aliases[0].clone();
    let mut names = HashMap::new();
    for (name, format, audio) in deliveries() {
        let id = w
            .lab
            .cuc()
            .deliver_voicemail(
                &alias,
                NewVoicemail {
                    caller_number: "+14085550100".into(),
                    caller_name: format!("Caller {name}"),
                    duration_ms: 2600,
                    format,
                    audio,
                    ..NewVoicemail::default()
                },
            )
            .expect("deliver");
        names.insert(id, name);
    }
    let options = VoicemailOptions::default();
    assert_eq!(
        options.attachment_format,
        AttachmentFormat::Mp3,
        "the default"
    );
    let engine = w.engine(options);
    let summary = engine.sync_all(&|_, _| {}).await.expect("sync");
    assert_eq!(
        (summary.succeeded, summary.appended),
        (1, 7),
        "{:?}",
        summary.failed
    );

    let mut imap = w.imap(&alias).await;
    let mut synced: HashMap<&str, Synced> = HashMap::new();
    for m in imap.messages("Voicemail").await {
        let name = names[m.cuc_id.as_deref().expect("cuc id")];
        synced.insert(name, read(&imap.full_message("Voicemail", m.uid).await));
    }
    imap.logout().await;
    for name in ["mulaw", "alaw", "pcm8", "pcm16"] {
        let (attachments, text) = &synced[name];
        assert_eq!(attachments.len(), 1, "{name}");
        let (ct, file, head) = &attachments[0];
        assert_eq!(
            (ct.as_str(), file.as_str()),
            ("audio/mpeg", "voicemessage.mp3")
        );
        assert_eq!(head[0], 0xFF, "{name}: an MPEG frame");
        assert!(
            text.contains("Duration: 0:03") && !text.contains("Note:"),
            "{name}: {text}"
        );
    }
    for (name, why) in [("gsm", "GSM 6.10"), ("truncated", "truncated")] {
        let (attachments, text) = &synced[name];
        assert_eq!(attachments.len(), 1, "{name}");
        let (ct, file, head) = &attachments[0];
        assert_eq!(
            (ct.as_str(), file.as_str()),
            ("audio/wav", "voicemessage.wav")
        );
        assert_eq!(head.as_slice(), b"RIFF", "{name}: the original");
        assert!(
            text.contains("Note:") && text.contains(why),
            "{name}: {text}"
        );
    }
    let (attachments, text) = &synced["empty"];
    assert!(attachments.is_empty(), "nothing to attach");
    assert!(text.contains("no audio"), "{text}");

    // The account status says so too: three messages without MP3, the last reason named.
    assert_eq!(summary.audio_problems, 3);
    assert_eq!(summary.audio_problem_accounts.len(), 1);
    assert_eq!(summary.audio_problem_accounts[0].0, alias);
    let status = engine.status().await.expect("status");
    let account = &status.accounts[0].account;
    assert_eq!(account.audio_problems, 3);
    let last = account.last_audio_problem.as_deref().expect("a reason");
    assert!(last.contains("(message 0:"), "{last}");
    assert!(account.last_error.is_none(), "a problem, not a failure");
    // A sync with nothing new keeps the record and adds nothing.
    let again = engine.sync_account(&alias).await.expect("resync");
    assert_eq!((again.appended, again.audio_problems), (0, 0));
    let status = engine.status().await.expect("status");
    assert_eq!(status.accounts[0].account.audio_problems, 3);
}

/// `attachment_format_by_user`: one user's exception (WAV) beside the global MP3.
#[tokio::test]
async fn a_users_own_attachment_format_wins_over_the_global_one() {
    let Some(w) = world(2, 0).await else { return };
    for alias in &w.aliases {
        w.lab
            .cuc()
            .deliver_voicemail(
                alias,
                NewVoicemail {
                    caller_name: format!("Caller for {alias}"),
                    duration_ms: 1500,
                    format: VoiceFormat::MuLaw8k,
                    ..NewVoicemail::default()
                },
            )
            .expect("deliver");
    }
    let wav_user = w.aliases[0].clone();
    let mut options = VoicemailOptions::default();
    options
        .attachment_format_by_user
        .insert(wav_user.to_lowercase(), AttachmentFormat::Wav);
    let engine = w.engine(options);
    let summary = engine.sync_all(&|_, _| {}).await.expect("sync");
    assert_eq!(
        (summary.succeeded, summary.appended),
        (2, 2),
        "{:?}",
        summary.failed
    );

    for alias in &w.aliases {
        let mut imap = w.imap(alias).await;
        let messages = imap.messages("Voicemail").await;
        assert_eq!(messages.len(), 1, "{alias}");
        let (attachments, _) = read(&imap.full_message("Voicemail", messages[0].uid).await);
        imap.logout().await;
        let want = if *alias == wav_user {
            ("audio/wav", "voicemessage.wav")
        } else {
            ("audio/mpeg", "voicemessage.mp3")
        };
        assert_eq!(attachments.len(), 1, "{alias}");
        assert_eq!(
            (attachments[0].0.as_str(), attachments[0].1.as_str()),
            want,
            "{alias}"
        );
    }
}
