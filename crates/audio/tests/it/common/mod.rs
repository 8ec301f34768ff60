//! Test audio made here, independently of the crate: a signal, WAV files in CUC's formats
//! (with G.711 encoders after the ITU-T G.191 reference `g711.c`), and a reader for the
//! 16-bit PCM WAV mpg123 writes.
#![allow(dead_code)]

use std::f64::consts::TAU;

/// 440 Hz + 1 kHz + a louder 300 → 3,000 Hz chirp, 20 ms fades, peak ≤ 0.75 of full
/// scale. The chirp carries 82 % of the energy and makes alignment unambiguous: the two
/// tones alone repeat every 25 ms, so any shift by 25 ms would match them.
pub fn test_signal(rate: u32, seconds: f64) -> Vec<i16> {
    let n = (f64::from(rate) * seconds) as usize;
    let fade = rate as usize / 50;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let chirp_phase = TAU * (300.0 * t + (2700.0 / (2.0 * seconds)) * t * t);
            let v = 0.15 * (TAU * 440.0 * t).sin()
                + 0.15 * (TAU * 1000.0 * t).sin()
                + 0.45 * chirp_phase.sin();
            let edge = i.min(n - 1 - i).min(fade) as f64 / fade as f64;
            (v * edge * 32767.0) as i16
        })
        .collect()
}

/// Speech-like: harmonics of a gliding 120–220 Hz pitch up to 3.4 kHz, a 4 Hz syllabic
/// envelope and 10 % noise (deterministic). Harder for a perceptual coder than tones.
pub fn speech_like(rate: u32, seconds: f64) -> Vec<i16> {
    let n = (f64::from(rate) * seconds) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / f64::from(1u32 << 31) - 0.5
    };
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = 170.0 + 50.0 * (TAU * 1.3 * t).sin();
            phase += TAU * f0 / f64::from(rate);
            let harmonics: f64 = (1..)
                .map(f64::from)
                .take_while(|k| k * f0 < 3400.0)
                .map(|k| (phase * k).sin() / k)
                .sum();
            let envelope = 0.5 + 0.5 * (TAU * 4.0 * t).sin();
            let v = (0.25 * harmonics + 0.1 * noise()) * envelope;
            (v.clamp(-1.0, 1.0) * 30_000.0) as i16
        })
        .collect()
}

/// A WAV: tag, rate, bytes per sample, and the encoded data.
pub fn wav(tag: u16, rate: u32, sample_bytes: u16, data: &[u8]) -> Vec<u8> {
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(sample_bytes)).to_le_bytes());
    fmt.extend_from_slice(&sample_bytes.to_le_bytes());
    fmt.extend_from_slice(&(sample_bytes * 8).to_le_bytes());
    if tag != 1 {
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
    for (id, body) in [(b"fmt ", fmt.as_slice()), (b"data", data)] {
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

pub fn pcm16_wav(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav(1, rate, 2, &data)
}

pub fn mulaw_wav(samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().map(|&s| linear_to_ulaw(s)).collect();
    wav(7, 8000, 1, &data)
}

pub fn alaw_wav(samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().map(|&s| linear_to_alaw(s)).collect();
    wav(6, 8000, 1, &data)
}

/// G.191 `linear2ulaw` (14-bit magnitude with bias 0x84, inverted).
fn linear_to_ulaw(sample: i16) -> u8 {
    let pcm = i32::from(sample) >> 2;
    let (mask, magnitude) = if pcm < 0 { (0x7F, -pcm) } else { (0xFF, pcm) };
    let magnitude = (magnitude.min(8159) + (0x84 >> 2)) as u32;
    let ends = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let seg = ends.iter().position(|&e| magnitude <= e).unwrap_or(8) as u32;
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let value = (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F);
    (value as u8) ^ mask
}

/// G.191 `linear2alaw`.
fn linear_to_alaw(sample: i16) -> u8 {
    let pcm = i32::from(sample) >> 3;
    let (mask, magnitude) = if pcm >= 0 {
        (0xD5, pcm)
    } else {
        (0x55, -pcm - 1)
    };
    let ends = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = ends.iter().position(|&e| magnitude <= e).unwrap_or(8) as i32;
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let value = (seg << 4) | ((magnitude >> shift) & 0x0F);
    (value as u8) ^ mask
}

/// (sample rate, channels, samples) of a 16-bit PCM WAV.
pub fn read_pcm16(bytes: &[u8]) -> (u32, u16, Vec<i16>) {
    assert_eq!(&bytes[0..4], b"RIFF", "decoder output is not a WAV");
    let mut at = 12;
    let (mut rate, mut channels) = (0, 0);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..];
        if id == b"fmt " {
            assert_eq!(
                u16::from_le_bytes([body[14], body[15]]),
                16,
                "16-bit output"
            );
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let size = size.min(body.len());
            let samples = body[..size]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return (rate, channels, samples);
        }
        at += 8 + size + (size & 1);
    }
    panic!("no data chunk in decoder output");
}

/// Best normalized cross-correlation of `decoded` against `original` over lags in
/// `-max_lag..=max_lag` (decoded[i + lag] ↔ original[i]); returns (correlation, lag).
pub fn best_correlation(original: &[i16], decoded: &[i16], max_lag: i64) -> (f64, i64) {
    let mut best = (f64::MIN, 0);
    for lag in -max_lag..=max_lag {
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for (i, &x) in original.iter().enumerate() {
            let j = i as i64 + lag;
            let y = if j >= 0 && (j as usize) < decoded.len() {
                f64::from(decoded[j as usize])
            } else {
                0.0
            };
            let x = f64::from(x);
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        let c = if xx > 0.0 && yy > 0.0 {
            xy / (xx * yy).sqrt()
        } else {
            0.0
        };
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}
