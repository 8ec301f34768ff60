//! `ucbridge-bench --scenario mp3`: what turning voicemail into MP3 attachments costs.
//!
//! `--messages` recordings of `--audio-seconds` (default 20 × 60 s) in each of CUC's two
//! common formats — G.711 µ-law at 8 kHz (CUC's default) and 16-bit PCM at 16 kHz — go
//! through `ucbridge_audio::transcode_to_mp3`, the call the voicemail engine makes per
//! message. Reported per format: messages/s, and CPU seconds per minute of audio from this
//! process's `/proc/self/stat` utime + stime (all threads; the transcoding is the only work
//! running). The audio is generated here, speech-like rather than tones (harmonics of a
//! gliding pitch, a syllabic envelope with pauses, some noise), since a perceptual coder
//! works harder on it; one untimed conversion per format goes first.

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use ucbridge_audio::transcode_to_mp3;

use crate::args::BenchArgs;
use crate::common::{cpu_seconds, peak_rss_mib, print_json};

#[derive(Serialize)]
struct FormatReport {
    format: &'static str,
    sample_rate: u32,
    recordings: usize,
    audio_seconds_each: u32,
    wav_bytes: usize,
    mp3_bytes: usize,
    mp3_kbps: u32,
    wall_seconds: f64,
    messages_per_second: f64,
    cpu_seconds: f64,
    cpu_seconds_per_audio_minute: f64,
}

#[derive(Serialize)]
struct Report {
    formats: Vec<FormatReport>,
    peak_rss_mib: Option<f64>,
}

struct Format {
    name: &'static str,
    rate: u32,
    wav: fn(&[i16]) -> Vec<u8>,
}

const FORMATS: [Format; 2] = [
    Format {
        name: "G.711 µ-law 8 kHz",
        rate: 8_000,
        wav: mulaw_wav,
    },
    Format {
        name: "PCM16 16 kHz",
        rate: 16_000,
        wav: pcm16_wav,
    },
];

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.messages == 0 || args.audio_seconds == 0 {
        bail!("--messages and --audio-seconds must be at least 1");
    }
    let (recordings, seconds) = (args.messages, args.audio_seconds);
    eprintln!("Transcoding {recordings} recordings of {seconds} s per format to MP3 ...");
    // CPU-bound and synchronous: off the async workers, which stay idle meanwhile.
    let formats = tokio::task::spawn_blocking(move || {
        FORMATS
            .iter()
            .map(|f| measure(f, recordings, seconds))
            .collect::<Result<Vec<_>>>()
    })
    .await
    .context("the transcoding thread failed")??;
    let report = Report {
        formats,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "MP3 transcoding (LAME, CBR mono at the source rate), {recordings} recordings of {seconds} s per format:"
    );
    for f in &report.formats {
        println!(
            "  {:<18} {:>7.1} messages/s  {:>6.3} CPU s per audio minute  (WAV {} kB -> MP3 {} kB, {} kbps)",
            f.format,
            f.messages_per_second,
            f.cpu_seconds_per_audio_minute,
            f.wav_bytes / 1000,
            f.mp3_bytes / 1000,
            f.mp3_kbps
        );
    }
    if let Some(rss) = report.peak_rss_mib {
        println!("  peak RSS: {rss:.0} MiB");
    }
    Ok(())
}

fn measure(format: &Format, recordings: usize, seconds: u32) -> Result<FormatReport> {
    let wav = (format.wav)(&speech_like(format.rate, seconds));
    // Untimed first run: checks the result and leaves one-off costs out of the figures.
    let first = transcode_to_mp3(&wav).with_context(|| format!("{}: transcoding", format.name))?;
    ensure!(
        first.duration == Duration::from_secs(u64::from(seconds)),
        "{}: the MP3 lasts {:?}, not {seconds} s",
        format.name,
        first.duration
    );
    let cpu_before = cpu_seconds().context("no /proc/self/stat: CPU time is Linux-only")?;
    let started = Instant::now();
    let mut mp3_bytes = 0;
    for _ in 0..recordings {
        let mp3 = transcode_to_mp3(std::hint::black_box(&wav))?;
        mp3_bytes = mp3.bytes.len();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(cpu_before) - cpu_before;
    let audio_minutes = recordings as f64 * f64::from(seconds) / 60.0;
    Ok(FormatReport {
        format: format.name,
        sample_rate: format.rate,
        recordings,
        audio_seconds_each: seconds,
        wav_bytes: wav.len(),
        mp3_bytes,
        mp3_kbps: ucbridge_audio::bitrate_kbps(format.rate),
        wall_seconds: wall,
        messages_per_second: recordings as f64 / wall.max(1e-9),
        cpu_seconds: cpu,
        cpu_seconds_per_audio_minute: cpu / audio_minutes,
    })
}

/// Speech-like mono audio: harmonics of a pitch gliding around 170 Hz up to the band of the
/// format (3.4 kHz telephone band at 8 kHz, 7 kHz wideband at 16 kHz), a 4 Hz syllabic
/// envelope with a pause every other second, and 10 % noise; deterministic.
fn speech_like(rate: u32, seconds: u32) -> Vec<i16> {
    let n = rate as usize * seconds as usize;
    let rate = f64::from(rate);
    let band = if rate >= 16_000.0 { 7_000.0 } else { 3_400.0 };
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
            let t = i as f64 / rate;
            let f0 = 170.0 + 50.0 * (TAU * 1.3 * t).sin();
            phase += TAU * f0 / rate;
            let harmonics: f64 = (1..)
                .map(f64::from)
                .take_while(|k| k * f0 < band)
                .map(|k| (phase * k).sin() / k)
                .sum();
            let syllables = 0.5 + 0.5 * (TAU * 4.0 * t).sin();
            let talking = if (t as u64) % 2 == 1 && t.fract() > 0.6 {
                0.05
            } else {
                1.0
            };
            let v = (0.25 * harmonics + 0.1 * noise()) * syllables * talking;
            (v.clamp(-1.0, 1.0) * 30_000.0) as i16
        })
        .collect()
}

/// A mono WAV: format tag, rate, bytes per sample and the encoded samples.
fn wav(tag: u16, rate: u32, sample_bytes: u16, data: &[u8]) -> Vec<u8> {
    let mut fmt = Vec::with_capacity(18);
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(sample_bytes)).to_le_bytes());
    fmt.extend_from_slice(&sample_bytes.to_le_bytes());
    fmt.extend_from_slice(&(sample_bytes * 8).to_le_bytes());
    if tag != 1 {
        // cbSize: non-PCM formats carry the WAVEFORMATEX extension, empty here.
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF\0\0\0\0WAVE");
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

fn pcm16_wav(samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav(1, 16_000, 2, &data)
}

fn mulaw_wav(samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().map(|&s| linear_to_ulaw(s)).collect();
    wav(7, 8_000, 1, &data)
}

/// G.711 µ-law encoding of a 16-bit sample (bias 0x84, clipped at 32,635).
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.abs().min(CLIP) + BIAS;
    // Segment: position of the highest set bit among bits 7..14.
    let exponent = (7..=14)
        .rev()
        .find(|b| magnitude & (1 << b) != 0)
        .unwrap_or(7)
        - 7;
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_encoding_round_trips_through_the_crates_decoder() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let back = i32::from(ucbridge_audio::g711::ulaw_to_linear(linear_to_ulaw(s)));
            let s = i32::from(s).clamp(-32_124, 32_124);
            // µ-law steps grow with the magnitude: 1/16 of the segment, at most 1,024.
            let step = (s.abs() / 16).max(8) + 8;
            assert!((back - s).abs() <= step, "{s} -> {back}");
        }
    }

    #[test]
    fn generated_recordings_transcode_to_the_same_length() {
        for f in &FORMATS {
            let wav = (f.wav)(&speech_like(f.rate, 2));
            let mp3 = transcode_to_mp3(&wav).unwrap();
            assert_eq!(mp3.duration, Duration::from_secs(2), "{}", f.name);
            assert_eq!(mp3.source.sample_rate, f.rate);
            assert!(!mp3.bytes.is_empty());
        }
    }
}
