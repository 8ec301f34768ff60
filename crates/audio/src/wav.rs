//! The RIFF/WAVE container: find `fmt ` and `data`, name the codec, count the samples.
//!
//! Layout per Microsoft's "Multimedia Programming Interface and Data Specifications 1.0"
//! (RIFF chunks: 4-byte id, 32-bit little-endian size, body padded to an even length) and
//! format tags per `mmreg.h` (also RFC 2361 Appendix A). Every length comes from the input
//! slice, never from a header alone, so a lying header costs nothing.

use std::fmt;
use std::time::Duration;

use crate::{AudioError, MAX_DURATION};

/// `WAVE_FORMAT_PCM`.
pub const TAG_PCM: u16 = 0x0001;
/// `WAVE_FORMAT_ALAW` (G.711 A-law).
pub const TAG_ALAW: u16 = 0x0006;
/// `WAVE_FORMAT_MULAW` (G.711 µ-law).
pub const TAG_MULAW: u16 = 0x0007;
/// `WAVE_FORMAT_GSM610` (GSM 06.10 full rate, Microsoft "WAV49" packing: 65-byte blocks
/// of 320 samples).
pub const TAG_GSM610: u16 = 0x0031;
/// `WAVE_FORMAT_G729A` (10-byte frames of 80 samples).
pub const TAG_G729A: u16 = 0x0083;
/// `WAVE_FORMAT_EXTENSIBLE`: the real tag is the first two bytes of the SubFormat GUID.
pub const TAG_EXTENSIBLE: u16 = 0xFFFE;

/// The audio coding of a WAV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Linear PCM, little-endian, `bits` per sample.
    Pcm {
        bits: u16,
    },
    MuLaw,
    ALaw,
    Gsm610,
    G729a,
    /// Any other format tag.
    Other(u16),
}

impl Codec {
    fn from_tag(tag: u16, bits: u16) -> Codec {
        match tag {
            TAG_PCM => Codec::Pcm { bits },
            TAG_ALAW => Codec::ALaw,
            TAG_MULAW => Codec::MuLaw,
            TAG_GSM610 => Codec::Gsm610,
            TAG_G729A => Codec::G729a,
            other => Codec::Other(other),
        }
    }

    /// Whether [`crate::transcode_to_mp3`] decodes it.
    pub fn decodable(self) -> bool {
        matches!(
            self,
            Codec::Pcm { bits: 8 | 16 } | Codec::MuLaw | Codec::ALaw
        )
    }

    /// Bytes of one mono sample, for the codecs decoded here.
    pub(crate) fn sample_bytes(self) -> Option<usize> {
        match self {
            Codec::Pcm { bits: 16 } => Some(2),
            Codec::Pcm { bits: 8 } | Codec::MuLaw | Codec::ALaw => Some(1),
            _ => None,
        }
    }

    pub(crate) fn why_unsupported(self) -> &'static str {
        match self {
            Codec::Gsm610 => "no maintained GSM 6.10 decoder is available",
            Codec::G729a => "no maintained G.729 decoder is available",
            Codec::Pcm { .. } => "only 8- and 16-bit PCM is decoded",
            _ => "unknown WAVE format tag",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Pcm { bits } => write!(f, "{bits}-bit PCM"),
            Codec::MuLaw => f.write_str("G.711 µ-law"),
            Codec::ALaw => f.write_str("G.711 A-law"),
            Codec::Gsm610 => f.write_str("GSM 6.10"),
            Codec::G729a => f.write_str("G.729a"),
            Codec::Other(tag) => write!(f, "WAVE format 0x{tag:04X}"),
        }
    }
}

/// What a WAV holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub codec: Codec,
    pub channels: u16,
    pub sample_rate: u32,
    /// Sample frames (samples per channel).
    pub frames: u64,
    pub duration: Duration,
}

/// A parsed WAV borrowing its samples.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) codec: Codec,
    pub(crate) channels: u16,
    pub(crate) sample_rate: u32,
    byte_rate: u32,
    block_align: u16,
    /// GSM 6.10: samples per block (from the format's extra bytes; 320 in WAV49).
    samples_per_block: u16,
    /// The data chunk, cut to whole blocks.
    pub(crate) data: &'a [u8],
}

impl Parsed<'_> {
    pub(crate) fn info(&self) -> WavInfo {
        let frames = self.frames();
        WavInfo {
            codec: self.codec,
            channels: self.channels,
            sample_rate: self.sample_rate,
            frames,
            duration: frames_to_duration(frames, self.sample_rate),
        }
    }

    fn frames(&self) -> u64 {
        let len = self.data.len() as u64;
        let blocks = len / u64::from(self.block_align);
        match self.codec {
            Codec::Pcm { .. } | Codec::MuLaw | Codec::ALaw => blocks,
            Codec::Gsm610 => blocks * u64::from(self.samples_per_block),
            // Other codecs: the header's average data rate is all there is.
            _ => (u128::from(len) * u128::from(self.sample_rate) / u128::from(self.byte_rate))
                .try_into()
                .unwrap_or(u64::MAX),
        }
    }
}

fn frames_to_duration(frames: u64, rate: u32) -> Duration {
    let rate = u64::from(rate);
    let nanos = u128::from(frames % rate) * 1_000_000_000 / u128::from(rate);
    Duration::from_secs(frames / rate) + Duration::from_nanos(nanos as u64)
}

/// Refuse recordings beyond [`MAX_DURATION`].
pub(crate) fn check_duration(duration: Duration) -> Result<(), AudioError> {
    if duration > MAX_DURATION {
        return Err(AudioError::TooLong {
            duration,
            limit: MAX_DURATION,
        });
    }
    Ok(())
}

/// Parse a whole WAV file held in memory.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, AudioError> {
    let body = riff_body(bytes)?;
    let (fmt, data) = find_chunks(body)?;
    let mut parsed = parse_fmt(fmt)?;
    check_layout(&parsed)?;
    let whole = data.len() - data.len() % usize::from(parsed.block_align);
    parsed.data = &data[..whole];
    Ok(parsed)
}

/// The chunks after `RIFF <size> WAVE`, ending where the RIFF size says (trailing bytes
/// are not ours) or at the end of the input, whichever is first.
fn riff_body(bytes: &[u8]) -> Result<&[u8], AudioError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(AudioError::NotWav);
    }
    let declared = u32_at(bytes, 4) as usize;
    let end = declared.saturating_add(8).clamp(12, bytes.len());
    Ok(&bytes[12..end])
}

/// The `fmt ` and `data` chunk bodies. A chunk that claims more bytes than there are is a
/// truncated file, except an unknown chunk after a complete `data` (trailing metadata).
fn find_chunks(mut rest: &[u8]) -> Result<(&[u8], &[u8]), AudioError> {
    let (mut fmt, mut data) = (None, None);
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let size = u32_at(rest, 4) as usize;
        let body = &rest[8..];
        let Some(chunk) = body.get(..size) else {
            match id {
                b"fmt " => return Err(AudioError::Truncated("format chunk cut short")),
                b"data" => return Err(AudioError::Truncated("audio data cut short")),
                _ if data.is_some() => break,
                _ => return Err(AudioError::Truncated("chunk before the audio cut short")),
            }
        };
        match id {
            b"fmt " if fmt.is_none() => fmt = Some(chunk),
            b"data" if data.is_none() => data = Some(chunk),
            _ => {}
        }
        if fmt.is_some() && data.is_some() {
            break;
        }
        // Bodies are padded to an even length.
        rest = body.get(size + (size & 1)..).unwrap_or_default();
    }
    match (fmt, data) {
        (Some(fmt), Some(data)) => Ok((fmt, data)),
        (None, _) => Err(AudioError::Truncated("no format chunk")),
        (Some(_), None) => Err(AudioError::Truncated("no audio data chunk")),
    }
}

/// `WAVEFORMATEX`: tag, channels, rate, bytes/s, block align, bits (+ extra bytes).
fn parse_fmt(fmt: &[u8]) -> Result<Parsed<'static>, AudioError> {
    if fmt.len() < 16 {
        return Err(AudioError::Corrupt(format!(
            "format chunk of {} bytes, at least 16 expected",
            fmt.len()
        )));
    }
    let mut tag = u16_at(fmt, 0);
    if tag == TAG_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4), then the SubFormat GUID at offset 24.
        if fmt.len() < 40 {
            return Err(AudioError::Corrupt("short WAVE_FORMAT_EXTENSIBLE".into()));
        }
        tag = u16_at(fmt, 24);
    }
    let bits = u16_at(fmt, 14);
    // GSM 6.10: cbSize = 2, then wSamplesPerBlock.
    let samples_per_block = if fmt.len() >= 20 { u16_at(fmt, 18) } else { 0 };
    Ok(Parsed {
        codec: Codec::from_tag(tag, bits),
        channels: u16_at(fmt, 2),
        sample_rate: u32_at(fmt, 4),
        byte_rate: u32_at(fmt, 8),
        block_align: u16_at(fmt, 12),
        samples_per_block: if samples_per_block == 0 {
            320
        } else {
            samples_per_block
        },
        data: &[],
    })
}

/// Header values the arithmetic depends on must be sane.
fn check_layout(p: &Parsed<'_>) -> Result<(), AudioError> {
    let corrupt = |what: String| Err(AudioError::Corrupt(what));
    if p.channels == 0 || p.sample_rate == 0 || p.block_align == 0 {
        return corrupt(format!(
            "{} channels, {} Hz, block of {} bytes",
            p.channels, p.sample_rate, p.block_align
        ));
    }
    if let Some(size) = p.codec.sample_bytes() {
        let expected = size * usize::from(p.channels);
        if usize::from(p.block_align) != expected {
            return corrupt(format!(
                "{} with {} channels needs {expected}-byte blocks, header says {}",
                p.codec, p.channels, p.block_align
            ));
        }
    } else if !matches!(p.codec, Codec::Gsm610) && p.byte_rate == 0 {
        return corrupt(format!("{} without a data rate", p.codec));
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal WAV: `fmt ` body as given, then `data`.
    fn wav(fmt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        for (id, body) in [(b"fmt ", fmt), (b"data", data)] {
            out.extend_from_slice(id);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            if body.len() % 2 == 1 {
                out.push(0);
            }
        }
        let riff = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff.to_le_bytes());
        out
    }

    fn fmt(tag: u16, rate: u32, byte_rate: u32, align: u16, bits: u16, extra: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&byte_rate.to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f.extend_from_slice(extra);
        f
    }

    #[test]
    fn codecs_and_durations() {
        let ulaw = wav(&fmt(7, 8000, 8000, 1, 8, &[0, 0]), &[0xFF; 12_000]);
        let p = parse(&ulaw).unwrap().info();
        assert_eq!((p.codec, p.frames), (Codec::MuLaw, 12_000));
        assert_eq!(p.duration, Duration::from_millis(1500));
        let pcm = wav(&fmt(1, 16_000, 32_000, 2, 16, &[]), &[0; 3201]);
        let p = parse(&pcm).unwrap().info();
        assert_eq!(
            (p.codec, p.frames),
            (Codec::Pcm { bits: 16 }, 1600),
            "odd byte dropped"
        );
        // GSM 6.10 WAV49: 65-byte blocks of 320 samples.
        let gsm = wav(&fmt(0x31, 8000, 1625, 65, 0, &[2, 0, 0x40, 1]), &[0; 650]);
        let p = parse(&gsm).unwrap().info();
        assert_eq!((p.codec, p.frames), (Codec::Gsm610, 3200));
        // Other codecs: by the average data rate (G.729a: 1,000 bytes/s).
        let g729 = wav(&fmt(0x83, 8000, 1000, 10, 0, &[0, 0]), &[0; 2500]);
        assert_eq!(
            parse(&g729).unwrap().info().duration,
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn extensible_uses_the_subformat_tag() {
        let mut extra = vec![22, 0, 16, 0, 4, 0, 0, 0];
        extra.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0x10, 0]);
        extra.extend_from_slice(&[0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        let w = wav(&fmt(0xFFFE, 8000, 8000, 1, 8, &extra), &[0xFF; 80]);
        assert_eq!(parse(&w).unwrap().codec, Codec::MuLaw);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = wav(&fmt(7, 8000, 8000, 1, 8, &[0, 0]), &[0xFF; 800]);
        assert_eq!(parse(b"RIFX").unwrap_err(), AudioError::NotWav);
        assert_eq!(
            parse(&good[..20]).unwrap_err(),
            AudioError::Truncated("format chunk cut short")
        );
        assert_eq!(
            parse(&good[..good.len() - 1]).unwrap_err(),
            AudioError::Truncated("audio data cut short")
        );
        assert_eq!(
            parse(&good[..42]).unwrap_err(),
            AudioError::Truncated("no audio data chunk")
        );
        let zero_rate = wav(&fmt(7, 0, 8000, 1, 8, &[]), &[0; 8]);
        assert!(matches!(parse(&zero_rate), Err(AudioError::Corrupt(_))));
        let bad_align = wav(&fmt(1, 8000, 16000, 3, 16, &[]), &[0; 8]);
        assert!(matches!(parse(&bad_align), Err(AudioError::Corrupt(_))));
        let no_rate = wav(&fmt(0x1234, 8000, 0, 1, 8, &[]), &[0; 8]);
        assert!(matches!(parse(&no_rate), Err(AudioError::Corrupt(_))));
    }

    #[test]
    fn a_trailing_broken_chunk_after_the_audio_is_ignored() {
        let mut w = wav(&fmt(7, 8000, 8000, 1, 8, &[0, 0]), &[0xFF; 800]);
        w.extend_from_slice(b"LIST\xff\xff\0\0abc");
        let riff = (w.len() - 8) as u32;
        w[4..8].copy_from_slice(&riff.to_le_bytes());
        assert_eq!(parse(&w).unwrap().info().frames, 800);
    }

    #[test]
    fn header_only_rate_claims_are_bounded() {
        // 4,000 bytes at a claimed 1 byte/s: 4,000 s, over the limit.
        let w = wav(&fmt(0x1234, 8000, 1, 1, 8, &[]), &[0; 4000]);
        let info = parse(&w).unwrap().info();
        assert!(matches!(
            check_duration(info.duration),
            Err(AudioError::TooLong { .. })
        ));
    }
}
