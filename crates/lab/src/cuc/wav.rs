//! Voice message audio: G.711 µ-law, 8 kHz, mono WAV (format tag 7), the format of the
//! CUC recording in Cisco's capture (notes §1.2).

/// Bytes before the samples: RIFF + `fmt ` (18-byte body, as for non-PCM formats) + `fact`
/// + `data` headers.
pub(crate) const HEADER_LEN: usize = 12 + 8 + 18 + 8 + 4 + 8;
const RATE: u32 = 8000;

/// Size of the WAV for a message of `duration_ms`.
pub(crate) fn size_for(duration_ms: u64) -> usize {
    HEADER_LEN + samples_for(duration_ms)
}

fn samples_for(duration_ms: u64) -> usize {
    usize::try_from(duration_ms.saturating_mul(u64::from(RATE)) / 1000).unwrap_or(0)
}

/// A WAV of `duration_ms` holding a tone of `hz` with a short fade in and out.
pub(crate) fn tone(duration_ms: u64, hz: f64) -> Vec<u8> {
    let samples = samples_for(duration_ms);
    let mut out = Vec::with_capacity(HEADER_LEN + samples);
    let data_len = u32::try_from(samples).unwrap_or(u32::MAX);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(data_len.saturating_add(HEADER_LEN as u32 - 8)).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&18u32.to_le_bytes());
    out.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes()); // bytes per second
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(&0u16.to_le_bytes()); // no extra format bytes
    out.extend_from_slice(b"fact");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    let fade = (RATE / 50) as usize; // 20 ms
    for i in 0..samples {
        let t = i as f64 / f64::from(RATE);
        let edge = i.min(samples - 1 - i).min(fade) as f64 / fade.max(1) as f64;
        let v = (t * hz * std::f64::consts::TAU).sin() * 0.4 * edge;
        out.push(mulaw((v * 32767.0) as i16));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_size() {
        let wav = tone(1500, 440.0);
        assert_eq!(wav.len(), size_for(1500));
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 7);
        assert_eq!(wav.len(), HEADER_LEN + 12_000);
        let riff_len = u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize;
        assert_eq!(riff_len, wav.len() - 8);
    }

    #[test]
    fn mulaw_reference_values() {
        // G.711 table: 0 → 0xFF, full-scale positive → 0x80, full-scale negative → 0x00.
        assert_eq!(mulaw(0), 0xFF);
        assert_eq!(mulaw(32767), 0x80);
        assert_eq!(mulaw(-32768), 0x00);
    }
}
