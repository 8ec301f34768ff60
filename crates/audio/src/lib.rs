//! Voicemail audio for mail clients: the WAV Unity Connection serves, as MP3.
//!
//! CUC records voice messages as WAV in the codec of its recording setting: G.711 µ-law
//! (the default), G.711 A-law, 16-bit linear PCM at 8 or 16 kHz, GSM 6.10 or G.729a. Phones
//! play MP3 everywhere; µ-law and A-law WAV do not play on iOS. [`transcode_to_mp3`] reads
//! the WAV, decodes it to 16-bit PCM and encodes mono constant-bitrate MP3 with LAME.
//!
//! - **Container.** [`wav`] walks the RIFF chunks itself. `hound`, the maintained small WAV
//!   crate, reads only integer/float PCM and refuses the G.711 format tags 6 and 7, which
//!   are CUC's default; the RIFF walk is ~100 lines and has to be bounds-checked here anyway.
//! - **Codecs.** [`g711`] decodes µ-law and A-law (ITU-T G.711). GSM 6.10 and G.729a are
//!   reported as [`AudioError::Unsupported`]: no maintained Rust GSM 6.10 decoder exists
//!   (`gsm-sys` 0.0.2 is an unmaintained libgsm FFI binding), and the only G.729 one
//!   (`g729-sys`, pure Rust) is a young single-maintainer port not validated here against
//!   the ITU test vectors. The caller then keeps the WAV and reports why.
//! - **Encoder.** LAME 3.100 through `mp3lame-encoder` (LGPL; built from source by
//!   `mp3lame-sys`). Its `encode_to_vec`/`flush_to_vec` wrap the `spare_capacity_mut` +
//!   `set_len` dance, so this crate has no `unsafe` at all.
//! - **Bitrate.** CBR mono at the source's sample rate (no resampling): 32 kbps at 8 kHz,
//!   40 kbps at 16 kHz ([`bitrate_kbps`]: the lowest from 32 up whose frame can carry
//!   LAME's "Info" tag). Speech needs no more — the tests measure a correlation ≥ 0.99 with
//!   the source — and it is half of µ-law's 64 kbps (240 kB per minute at 8 kHz; a sixth
//!   of 16 kHz PCM16). CBR plays on every device. The Info tag carries the encoder delay
//!   and padding, which decoders trim, so the MP3 lasts exactly as long as the recording.
//! - **Bounds.** Input is already in memory; decoding and encoding run in blocks of
//!   [`BLOCK_SAMPLES`], so the extra memory is the MP3 itself (bitrate × duration: 240 kB
//!   per minute at 8 kHz) plus one block. A recording longer than [`MAX_DURATION`] is refused before any work.
//!   Nothing here panics on input: every malformed case is an [`AudioError`].
//! - **Channels.** CUC records mono; a multi-channel WAV is mixed down to mono.
#![forbid(unsafe_code)]

pub mod g711;
mod mp3;
pub mod wav;

use std::time::Duration;

pub use mp3::bitrate_kbps;
pub use wav::{Codec, WavInfo};

/// Longest recording accepted: an hour, the longest message length we know CUC to allow
/// (3,600 s; not checked against Cisco's documentation), plus 5 minutes. It bounds the
/// work per message: at 16 kHz PCM16, 125 MB of input, 20 MB of MP3, ~10 CPU s.
pub const MAX_DURATION: Duration = Duration::from_secs(65 * 60);

/// Samples decoded and handed to LAME at a time (8 MP3 frames at ≤ 24 kHz).
pub const BLOCK_SAMPLES: usize = 8 * 576;

/// What went wrong with a recording. None of these is a panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AudioError {
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    #[error("truncated WAV: {0}")]
    Truncated(&'static str),
    #[error("corrupt WAV: {0}")]
    Corrupt(String),
    #[error("the recording holds no audio")]
    Empty,
    #[error("recording of {}s is longer than the {}s limit", .duration.as_secs(), .limit.as_secs())]
    TooLong { duration: Duration, limit: Duration },
    /// A codec or layout this crate does not decode; keep the original and say why.
    #[error("cannot convert {codec} audio: {why}")]
    Unsupported { codec: Codec, why: &'static str },
    /// LAME refused a setting or failed while encoding.
    #[error("MP3 encoder: {0}")]
    Encoder(String),
}

/// A recording as MP3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp3Audio {
    pub bytes: Vec<u8>,
    /// Length of the recording (sample frames / sample rate), which the MP3 reproduces.
    pub duration: Duration,
    /// What the WAV held.
    pub source: WavInfo,
}

/// Convert a CUC WAV to MP3 (mono, [`bitrate_kbps`], same sample rate).
pub fn transcode_to_mp3(wav: &[u8]) -> Result<Mp3Audio, AudioError> {
    let parsed = wav::parse(wav)?;
    let info = parsed.info();
    wav::check_duration(info.duration)?;
    if !parsed.codec.decodable() {
        return Err(AudioError::Unsupported {
            codec: parsed.codec,
            why: parsed.codec.why_unsupported(),
        });
    }
    mp3::check_sample_rate(parsed.codec, parsed.sample_rate)?;
    if info.frames == 0 {
        return Err(AudioError::Empty);
    }
    let bytes = mp3::encode(&parsed)?;
    Ok(Mp3Audio {
        bytes,
        duration: info.duration,
        source: info,
    })
}

/// Length of a WAV recording, for any codec whose data rate the header states.
pub fn wav_duration(wav: &[u8]) -> Result<Duration, AudioError> {
    let info = probe(wav)?;
    Ok(info.duration)
}

/// What a WAV holds (codec, rate, length) without decoding it.
pub fn probe(wav: &[u8]) -> Result<WavInfo, AudioError> {
    let info = wav::parse(wav)?.info();
    wav::check_duration(info.duration)?;
    Ok(info)
}
