//! Bad input from CUC: truncated, corrupt, empty, unknown codecs, absurd headers. Always a
//! typed error (or a valid MP3), never a panic.

use crate::common;

use proptest::prelude::*;
use ucbridge_audio::{probe, transcode_to_mp3, wav_duration, AudioError, Codec};

use common::{mulaw_wav, pcm16_wav, test_signal, wav};

fn small_mulaw() -> Vec<u8> {
    mulaw_wav(&test_signal(8000, 0.1))
}

#[test]
fn truncated_audio_is_an_error() {
    let good = small_mulaw();
    let cut = &good[..good.len() - 100];
    assert_eq!(
        transcode_to_mp3(cut).unwrap_err(),
        AudioError::Truncated("audio data cut short")
    );
    assert_eq!(
        transcode_to_mp3(&good[..30]).unwrap_err(),
        AudioError::Truncated("format chunk cut short")
    );
    assert_eq!(
        transcode_to_mp3(&good[..11]).unwrap_err(),
        AudioError::NotWav
    );
    assert_eq!(transcode_to_mp3(&[]).unwrap_err(), AudioError::NotWav);
}

#[test]
fn zero_length_audio_is_an_error() {
    assert_eq!(
        transcode_to_mp3(&mulaw_wav(&[])).unwrap_err(),
        AudioError::Empty
    );
    assert_eq!(wav_duration(&mulaw_wav(&[])), Ok(std::time::Duration::ZERO));
}

#[test]
fn gsm_and_g729_are_reported_unsupported_with_a_reason() {
    // GSM 6.10 WAV49: 65-byte blocks of 320 samples; G.729a: 10-byte frames.
    let gsm = wav(0x31, 8000, 65, &[0; 650]);
    let err = transcode_to_mp3(&gsm).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::Unsupported {
                codec: Codec::Gsm610,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("GSM 6.10"), "{err}");
    let g729 = wav(0x83, 8000, 10, &[0; 1000]);
    assert!(matches!(
        transcode_to_mp3(&g729),
        Err(AudioError::Unsupported {
            codec: Codec::G729a,
            ..
        })
    ));
    let odd = wav(0x1234, 8000, 1, &[0; 100]);
    let err = transcode_to_mp3(&odd).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot convert WAVE format 0x1234 audio: unknown WAVE format tag"
    );
    // Unsupported for MP3, but its length is still known.
    assert_eq!(probe(&gsm).map(|i| i.frames), Ok(3200));
}

#[test]
fn unusual_sample_rates_are_unsupported_not_resampled() {
    let w = pcm16_wav(9600, &test_signal(9600, 0.1));
    assert!(matches!(
        transcode_to_mp3(&w),
        Err(AudioError::Unsupported { .. })
    ));
}

#[test]
fn recordings_over_the_limit_are_refused_before_any_work() {
    // 66 minutes of µ-law: 31.7 MB; refused by length, not encoded.
    let data = vec![0xFFu8; 66 * 60 * 8000];
    let long = wav(7, 8000, 1, &data);
    let started = std::time::Instant::now();
    assert!(matches!(
        transcode_to_mp3(&long),
        Err(AudioError::TooLong { .. })
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = transcode_to_mp3(&bytes);
        let _ = wav_duration(&bytes);
    }

    /// Valid headers with arbitrary bytes after "RIFF....WAVE", so the chunk walk is
    /// exercised rather than the magic check.
    #[test]
    fn arbitrary_chunks_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = transcode_to_mp3(&bytes);
        let _ = probe(&bytes);
    }

    /// A real file with bytes flipped and a random cut: Ok (a valid MP3) or a typed error.
    #[test]
    fn corrupted_files_never_panic(
        flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..8),
        cut in 0usize..2000,
    ) {
        let mut bytes = small_mulaw();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut.max(1));
        match transcode_to_mp3(&bytes) {
            Ok(mp3) => prop_assert!(!mp3.bytes.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
