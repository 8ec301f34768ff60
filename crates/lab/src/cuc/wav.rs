//! Voice message audio in the formats CUC records in: G.711 µ-law 8 kHz (the default, and
//! the format of the recording in Cisco's capture, notes §1.2), G.711 A-law, 16-bit PCM at
//! 8 or 16 kHz, and GSM 6.10. Tags per Microsoft `mmreg.h`.

use std::f64::consts::TAU;

/// How a lab voice message is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiceFormat {
    /// G.711 µ-law, 8 kHz (`WAVE_FORMAT_MULAW` = 7).
    #[default]
    MuLaw8k,
    /// G.711 A-law, 8 kHz (`WAVE_FORMAT_ALAW` = 6).
    ALaw8k,
    /// 16-bit linear PCM, 8 kHz (`WAVE_FORMAT_PCM` = 1).
    Pcm8k,
    /// 16-bit linear PCM, 16 kHz.
    Pcm16k,
    /// GSM 6.10 in Microsoft's WAV49 packing (`WAVE_FORMAT_GSM610` = 0x31): 65-byte blocks
    /// of 320 samples. The lab has no GSM encoder: the blocks are all zero, which decoders
    /// read as near-silence.
    Gsm610,
}

impl VoiceFormat {
    /// Every format, in the order seeded mailboxes cycle through them.
    pub const ALL: [VoiceFormat; 5] = [
        VoiceFormat::MuLaw8k,
        VoiceFormat::ALaw8k,
        VoiceFormat::Pcm8k,
        VoiceFormat::Pcm16k,
        VoiceFormat::Gsm610,
    ];

    /// The name `POST /lab/cuc/voicemail` takes: `mulaw`, `alaw`, `pcm8k`, `pcm16k`, `gsm`.
    pub fn parse(name: &str) -> Option<VoiceFormat> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "mulaw" | "ulaw" => VoiceFormat::MuLaw8k,
            "alaw" => VoiceFormat::ALaw8k,
            "pcm8k" => VoiceFormat::Pcm8k,
            "pcm16k" => VoiceFormat::Pcm16k,
            "gsm" => VoiceFormat::Gsm610,
            _ => return None,
        })
    }

    /// The name [`VoiceFormat::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            VoiceFormat::MuLaw8k => "mulaw",
            VoiceFormat::ALaw8k => "alaw",
            VoiceFormat::Pcm8k => "pcm8k",
            VoiceFormat::Pcm16k => "pcm16k",
            VoiceFormat::Gsm610 => "gsm",
        }
    }

    /// (format tag, sample rate, bytes per second, block align, bits per sample).
    fn header(self) -> (u16, u32, u32, u16, u16) {
        match self {
            VoiceFormat::MuLaw8k => (7, 8000, 8000, 1, 8),
            VoiceFormat::ALaw8k => (6, 8000, 8000, 1, 8),
            VoiceFormat::Pcm8k => (1, 8000, 16_000, 2, 16),
            VoiceFormat::Pcm16k => (1, 16_000, 32_000, 2, 16),
            VoiceFormat::Gsm610 => (0x31, 8000, 1625, 65, 0),
        }
    }

    /// Extra `fmt ` bytes (`cbSize` and what follows); PCM has none (16-byte `fmt `).
    fn fmt_extra(self) -> &'static [u8] {
        match self {
            VoiceFormat::Pcm8k | VoiceFormat::Pcm16k => &[],
            // cbSize = 2, wSamplesPerBlock = 320.
            VoiceFormat::Gsm610 => &[2, 0, 0x40, 0x01],
            _ => &[0, 0],
        }
    }

    fn samples(self, duration_ms: u64) -> usize {
        let rate = u64::from(self.header().1);
        usize::try_from(duration_ms.saturating_mul(rate) / 1000).unwrap_or(0)
    }

    fn data_len(self, samples: usize) -> usize {
        match self {
            VoiceFormat::Pcm8k | VoiceFormat::Pcm16k => samples * 2,
            VoiceFormat::Gsm610 => samples.div_ceil(320) * 65,
            _ => samples,
        }
    }

    /// RIFF + `fmt ` + (`fact` for non-PCM, as Windows writes it) + `data` headers.
    fn header_len(self) -> usize {
        let fact = if self.fmt_extra().is_empty() { 0 } else { 12 };
        12 + 8 + 16 + self.fmt_extra().len() + fact + 8
    }
}

/// Size of the WAV for a message of `duration_ms`.
pub(crate) fn size_for(format: VoiceFormat, duration_ms: u64) -> usize {
    format.header_len() + format.data_len(format.samples(duration_ms))
}

/// A WAV of `duration_ms` holding a tone of `hz` with a short fade in and out.
pub(crate) fn tone(format: VoiceFormat, duration_ms: u64, hz: f64) -> Vec<u8> {
    let samples = format.samples(duration_ms);
    let mut out = Vec::with_capacity(size_for(format, duration_ms));
    write_header(&mut out, format, samples);
    let rate = f64::from(format.header().1);
    let fade = (rate / 50.0) as usize; // 20 ms
    let level = |i: usize| {
        let edge = i.min(samples - 1 - i).min(fade) as f64 / fade.max(1) as f64;
        ((i as f64 / rate * hz * TAU).sin() * 0.4 * edge * 32767.0) as i16
    };
    match format {
        VoiceFormat::MuLaw8k => out.extend((0..samples).map(|i| mulaw(level(i)))),
        VoiceFormat::ALaw8k => out.extend((0..samples).map(|i| alaw(level(i)))),
        VoiceFormat::Pcm8k | VoiceFormat::Pcm16k => {
            out.extend((0..samples).flat_map(|i| level(i).to_le_bytes()))
        }
        VoiceFormat::Gsm610 => out.resize(out.len() + format.data_len(samples), 0),
    }
    out
}

fn write_header(out: &mut Vec<u8>, format: VoiceFormat, samples: usize) {
    let (tag, rate, byte_rate, align, bits) = format.header();
    let extra = format.fmt_extra();
    let data_len = u32::try_from(format.data_len(samples)).unwrap_or(u32::MAX);
    let riff_len = data_len.saturating_add((format.header_len() - 8) as u32);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(16 + extra.len() as u32).to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(extra);
    if !extra.is_empty() {
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&u32::try_from(samples).unwrap_or(u32::MAX).to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
}

/// ITU-T G.711 µ-law encoding of one 16-bit sample.
fn mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// ITU-T G.711 A-law encoding of one 16-bit sample (13-bit magnitude, even bits inverted).
fn alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, i32::from(sample) >> 3)
    } else {
        (0, (-i32::from(sample) - 1) >> 3)
    };
    let magnitude = magnitude.min(0x0FFF);
    let segment = (32 - magnitude.leading_zeros() as i32 - 5).clamp(0, 7);
    let step = if segment == 0 {
        magnitude >> 1
    } else {
        magnitude >> segment
    } & 0x0F;
    (sign | (segment << 4) as u8 | step as u8) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn every_format_has_a_consistent_header() {
        for format in VoiceFormat::ALL {
            let wav = tone(format, 1500, 440.0);
            assert_eq!(wav.len(), size_for(format, 1500), "{format:?}");
            assert_eq!(&wav[0..4], b"RIFF");
            assert_eq!(&wav[8..12], b"WAVE");
            assert_eq!(u32_at(&wav, 4) as usize, wav.len() - 8, "{format:?}");
            let (tag, rate, ..) = format.header();
            assert_eq!((u16_at(&wav, 20), u32_at(&wav, 24)), (tag, rate));
            let data_at = format.header_len();
            assert_eq!(&wav[data_at - 8..data_at - 4], b"data");
            assert_eq!(u32_at(&wav, data_at - 4) as usize, wav.len() - data_at);
        }
        assert_eq!(size_for(VoiceFormat::MuLaw8k, 1500), 58 + 12_000);
        assert_eq!(size_for(VoiceFormat::Pcm16k, 1500), 44 + 48_000);
        // 12,000 samples = 37.5 blocks of 320 → 38 blocks of 65 bytes.
        assert_eq!(size_for(VoiceFormat::Gsm610, 1500), 60 + 38 * 65);
    }

    #[test]
    fn g711_reference_values() {
        // G.711 tables: µ-law 0 → 0xFF, full scale → 0x80 / 0x00; A-law 0 → 0xD5.
        assert_eq!(mulaw(0), 0xFF);
        assert_eq!(mulaw(32767), 0x80);
        assert_eq!(mulaw(-32768), 0x00);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(alaw(-1), 0x55);
        assert_eq!(alaw(32767), 0xAA);
        assert_eq!(alaw(-32768), 0x2A);
    }
}
