//! The MP3s checked from outside: decoded by mpg123 (Debian package `mpg123`), the result
//! must last as long as the source (±50 ms) and sound like it (normalized
//! cross-correlation, best lag within ±2,000 samples).
//!
//! Two signals: tones + chirp (`test_signal`) and a speech-like harmonic signal with noise
//! (`speech_like`). Threshold 0.95; measured with LAME 3.100 and mpg123 1.31: tones +
//! chirp 0.9999–1.0000 (LAME/mpg123 keep the waveform at ~0.95 gain, which correlation
//! ignores), speech-like 0.998 at 8 kHz (PCM, µ-law, A-law) and 0.995 at 16 kHz, lag 0 and
//! the exact length every time. The source reversed or shifted by 0.5 s scores < 0.2, so
//! 0.95 fails anything but the right audio and leaves 10× margin in (1 − r) for other
//! LAME builds.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    alaw_wav, best_correlation, mulaw_wav, pcm16_wav, read_pcm16, speech_like, test_signal,
};
use ucbridge_audio::{transcode_to_mp3, wav_duration, Codec};

const THRESHOLD: f64 = 0.95;
const MAX_LAG: i64 = 2000;
const SECONDS: f64 = 3.0;

/// mpg123, or a loud skip (a failure under CI=true).
fn mpg123() -> Option<&'static str> {
    let found = Command::new("mpg123")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("mpg123");
    }
    let why = "mpg123 is not installed: MP3 output cannot be checked from outside";
    if ucbridge_testkit::in_ci() {
        panic!("{why} (CI=true: install the Debian package mpg123)");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let notice = format!("\n*** SKIPPED: {why}. Install the Debian package mpg123. ***\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    None
}

/// Decode with mpg123 into 16-bit mono PCM: (rate, samples).
fn decode(mpg123: &str, mp3: &[u8], dir: &Path) -> (u32, Vec<i16>) {
    let input = dir.join("in.mp3");
    let output = dir.join("out.wav");
    std::fs::write(&input, mp3).expect("write mp3");
    let status = Command::new(mpg123)
        .args(["-q", "-e", "s16", "-w"])
        .arg(&output)
        .arg(&input)
        .status()
        .expect("run mpg123");
    assert!(status.success(), "mpg123 failed: {status}");
    let (rate, channels, samples) = read_pcm16(&std::fs::read(&output).expect("read wav"));
    assert_eq!(channels, 1, "mono MP3");
    (rate, samples)
}

/// A test signal: (sample rate, seconds) → samples.
type Signal = fn(u32, f64) -> Vec<i16>;

struct Case {
    name: &'static str,
    rate: u32,
    codec: Codec,
    make: fn(&[i16]) -> Vec<u8>,
}

const CASES: [Case; 4] = [
    Case {
        name: "PCM16 8 kHz",
        rate: 8000,
        codec: Codec::Pcm { bits: 16 },
        make: |s| pcm16_wav(8000, s),
    },
    Case {
        name: "PCM16 16 kHz",
        rate: 16_000,
        codec: Codec::Pcm { bits: 16 },
        make: |s| pcm16_wav(16_000, s),
    },
    Case {
        name: "µ-law 8 kHz",
        rate: 8000,
        codec: Codec::MuLaw,
        make: mulaw_wav,
    },
    Case {
        name: "A-law 8 kHz",
        rate: 8000,
        codec: Codec::ALaw,
        make: alaw_wav,
    },
];

#[test]
fn mp3_decoded_by_mpg123_matches_the_source() {
    let Some(mpg123) = mpg123() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let signals: [(&str, Signal); 2] = [("tones+chirp", test_signal), ("speech-like", speech_like)];
    for (case, (signal_name, make_signal)) in CASES
        .iter()
        .flat_map(|c| signals.iter().map(move |s| (c, s)))
    {
        let signal = make_signal(case.rate, SECONDS);
        let wav = (case.make)(&signal);
        let expected = Duration::from_secs_f64(SECONDS);
        assert_eq!(wav_duration(&wav), Ok(expected), "{}", case.name);

        let started = Instant::now();
        let mp3 = transcode_to_mp3(&wav).expect("transcode");
        let took = started.elapsed();
        assert_eq!(mp3.source.codec, case.codec, "{}", case.name);
        assert_eq!(mp3.duration, expected, "{}", case.name);

        let (rate, decoded) = decode(mpg123, &mp3.bytes, dir.path());
        assert_eq!(rate, case.rate, "{}: sample rate kept", case.name);
        let decoded_len = Duration::from_secs_f64(decoded.len() as f64 / f64::from(rate));
        let error_ms = (decoded_len.as_secs_f64() - SECONDS).abs() * 1000.0;
        let (corr, lag) = best_correlation(&signal, &decoded, MAX_LAG);
        eprintln!(
            "{} {signal_name}: {} bytes ({:.1} kbps), decoded {} samples (error {error_ms:.1} ms), \
             correlation {corr:.4} at lag {lag}, encoded in {took:?}",
            case.name,
            mp3.bytes.len(),
            mp3.bytes.len() as f64 * 8.0 / SECONDS / 1000.0,
            decoded.len(),
        );
        assert!(
            error_ms <= 50.0,
            "{}: duration off by {error_ms} ms",
            case.name
        );
        assert!(
            corr >= THRESHOLD,
            "{} {signal_name}: correlation {corr} below {THRESHOLD}",
            case.name
        );
    }
}

/// The check can fail: the source played backwards, or shifted by half a second, scores
/// far below the threshold (guards against a correlation that accepts anything).
#[test]
fn the_correlation_check_rejects_other_audio() {
    let Some(mpg123) = mpg123() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let signal = test_signal(8000, SECONDS);
    let mp3 = transcode_to_mp3(&mulaw_wav(&signal)).expect("transcode");
    let (_, decoded) = decode(mpg123, &mp3.bytes, dir.path());
    let reversed: Vec<i16> = signal.iter().rev().copied().collect();
    let (corr, _) = best_correlation(&reversed, &decoded, MAX_LAG);
    eprintln!("reversed: {corr:.3}");
    assert!(corr < 0.5, "time-reversed source correlates {corr}");
    let (corr, _) = best_correlation(&signal, &decoded[4000..], 200);
    eprintln!("shifted 0.5 s: {corr:.3}");
    assert!(corr < 0.5, "shifted by 0.5 s correlates {corr}");
}

/// Every MP3 sample rate gets its Info tag (transcoding fails without it), i.e. LAME
/// agrees with `bitrate_kbps` on which frames can carry it.
#[test]
fn every_mp3_sample_rate_carries_the_info_tag() {
    for rate in [
        8000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
    ] {
        let wav = pcm16_wav(rate, &test_signal(rate, 0.2));
        let mp3 = transcode_to_mp3(&wav).unwrap_or_else(|e| panic!("{rate} Hz: {e}"));
        // CBR at the chosen bitrate: 0.2 s + up to two frames of delay and padding.
        let kbps = ucbridge_audio::bitrate_kbps(rate) as usize;
        let nominal = kbps * 125 / 5;
        assert!(
            mp3.bytes.len() < nominal * 2 + 2000,
            "{rate} Hz: {} bytes",
            mp3.bytes.len()
        );
    }
}
