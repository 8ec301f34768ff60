//! Decoded samples → MP3 with LAME (mono, CBR, LAME "Info" tag for gapless trimming).

use std::num::NonZeroU32;

use mp3lame_encoder::{
    max_required_buffer_size, Bitrate, Builder, Encoder, FlushGap, Mode, MonoPcm, Quality, VbrMode,
};

use crate::wav::{Codec, Parsed};
use crate::{g711, AudioError, BLOCK_SAMPLES};

/// Sample rates MP3 has (MPEG-1, -2 and -2.5 Layer III). The encoder keeps the source's
/// rate, so only these are accepted.
const MPEG_RATES: [u32; 9] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// LAME's bitstream buffer can hold this much on flush (`lame.h`: "at least 7200 bytes").
const FLUSH_BYTES: usize = 7200;

/// Bitrates tried, lowest first; each is valid for MPEG-1, -2 and -2.5 Layer III.
const BITRATES: [(u32, Bitrate); 6] = [
    (32, Bitrate::Kbps32),
    (40, Bitrate::Kbps40),
    (48, Bitrate::Kbps48),
    (64, Bitrate::Kbps64),
    (80, Bitrate::Kbps80),
    (96, Bitrate::Kbps96),
];

/// LAME 3.100 `VbrTag.c`: `LAMEHEADERSIZE` (Xing header with TOC, 120 bytes, + LAME
/// extension, 36 bytes).
const LAME_TAG_BYTES: u32 = 156;

/// The MP3 bitrate for a sample rate: 32 kbps, or the lowest above it whose CBR frame
/// holds the Info tag. LAME silently drops the tag when a frame (`(version + 1) * 72000 *
/// kbps / rate` bytes) is shorter than side info + tag (`InitVbrTag`), and without the tag
/// decoders keep the encoder delay. Mono side info with the 4-byte header: 21 bytes in
/// MPEG-1 (≥ 32 kHz), 13 in MPEG-2/2.5. So 8 kHz → 32 kbps, 16 kHz → 40 kbps.
pub fn bitrate_kbps(sample_rate: u32) -> u32 {
    bitrate(sample_rate).0
}

fn bitrate(rate: u32) -> (u32, Bitrate) {
    let (bytes_per_kbps, side_info) = if rate >= 32_000 {
        (144_000, 21)
    } else {
        (72_000, 13)
    };
    let fits = |kbps: u32| bytes_per_kbps * kbps / rate.max(1) >= side_info + LAME_TAG_BYTES;
    BITRATES
        .into_iter()
        .find(|&(kbps, _)| fits(kbps))
        .unwrap_or(BITRATES[BITRATES.len() - 1])
}

pub(crate) fn check_sample_rate(codec: Codec, rate: u32) -> Result<(), AudioError> {
    if MPEG_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::Unsupported {
            codec,
            why: "sample rate has no MP3 equivalent (8–48 kHz MPEG rates)",
        })
    }
}

/// Encode a decodable, mono-or-not WAV; multi-channel input is mixed down to mono.
pub(crate) fn encode(wav: &Parsed<'_>) -> Result<Vec<u8>, AudioError> {
    let Some(sample_bytes) = wav.codec.sample_bytes() else {
        return Err(AudioError::Unsupported {
            codec: wav.codec,
            why: wav.codec.why_unsupported(),
        });
    };
    let mut lame = encoder(wav.sample_rate)?;
    let frame_bytes = sample_bytes * usize::from(wav.channels);
    let seconds = wav.data.len() / frame_bytes / wav.sample_rate as usize + 1;
    let kbps = bitrate_kbps(wav.sample_rate) as usize;
    let mut out = Vec::with_capacity(seconds * kbps * 125 + FLUSH_BYTES);
    let mut pcm = Vec::with_capacity(BLOCK_SAMPLES);
    for block in wav.data.chunks(BLOCK_SAMPLES * frame_bytes) {
        pcm.clear();
        decode_mono(wav.codec, wav.channels, block, &mut pcm);
        out.reserve(max_required_buffer_size(pcm.len()));
        lame.encode_to_vec(MonoPcm(pcm.as_slice()), &mut out)
            .map_err(|e| AudioError::Encoder(format!("encode: {e}")))?;
    }
    out.reserve(FLUSH_BYTES);
    lame.flush_to_vec::<FlushGap>(&mut out)
        .map_err(|e| AudioError::Encoder(format!("flush: {e}")))?;
    write_info_tag(&lame, &mut out)?;
    Ok(out)
}

fn encoder(rate: u32) -> Result<Encoder, AudioError> {
    let setting = |what: &str| {
        let what = what.to_owned();
        move |e: mp3lame_encoder::BuildError| AudioError::Encoder(format!("{what}: {e}"))
    };
    let mut b = Builder::new().ok_or_else(|| AudioError::Encoder("out of memory".into()))?;
    b.set_num_channels(1).map_err(setting("channels"))?;
    b.set_sample_rate(rate).map_err(setting("input rate"))?;
    // Same rate out: LAME would otherwise pick one for the bitrate and resample.
    b.set_output_sample_rate(NonZeroU32::new(rate))
        .map_err(setting("output rate"))?;
    b.set_mode(Mode::Mono).map_err(setting("mode"))?;
    b.set_vbr_mode(VbrMode::Off).map_err(setting("CBR"))?;
    b.set_brate(bitrate(rate).1).map_err(setting("bitrate"))?;
    // LAME's default algorithm quality (`-q 5`).
    b.set_quality(Quality::Good).map_err(setting("quality"))?;
    // The "Info" frame records encoder delay and padding (LAME tag, 12 bits each), which
    // mpg123, ffmpeg and Apple's decoders use to trim them: without it an 8 kHz message
    // would gain ~1,105 samples (138 ms) of delay plus up to one frame of padding.
    b.set_to_write_vbr_tag(true).map_err(setting("Info tag"))?;
    b.build().map_err(setting("init"))
}

/// Samples of a block of whole frames, channels averaged.
fn decode_mono(codec: Codec, channels: u16, block: &[u8], out: &mut Vec<i16>) {
    let sample = |b: &[u8]| -> i64 {
        match codec {
            Codec::Pcm { bits: 16 } => i64::from(i16::from_le_bytes([b[0], b[1]])),
            Codec::Pcm { .. } => (i64::from(b[0]) - 128) << 8,
            Codec::ALaw => i64::from(g711::alaw_to_linear(b[0])),
            _ => i64::from(g711::ulaw_to_linear(b[0])),
        }
    };
    let size = codec.sample_bytes().unwrap_or(1);
    let n = i64::from(channels.max(1));
    for frame in block.chunks_exact(size * usize::from(channels)) {
        // i64: up to 65,535 channels of ±32,768 do not fit an i32 sum with margin.
        let sum: i64 = frame.chunks_exact(size).map(sample).sum();
        out.push((sum / n) as i16);
    }
}

/// LAME starts the stream with an empty frame (header, then zeros) reserved for the Info
/// tag, which it can fill only at the end (LAME 3.100 `VbrTag.c`: `InitVbrTag`,
/// `lame_get_lametag_frame`): put it there, after checking that the frame is that one.
fn write_info_tag(lame: &Encoder, out: &mut [u8]) -> Result<(), AudioError> {
    let mut tag = Vec::with_capacity(lame.lame_tag_size());
    let written = lame
        .lame_tag_encode_to_vec(&mut tag)
        .ok_or_else(|| AudioError::Encoder("no Info tag".into()))?
        .get();
    let start = lame.id3v2_tag_size();
    let reserved =
        |slot: &[u8]| written > 4 && slot[..4] == tag[..4] && slot[4..].iter().all(|&b| b == 0);
    match out.get_mut(start..start + written) {
        Some(slot) if reserved(slot) => {
            slot.copy_from_slice(&tag[..written]);
            Ok(())
        }
        _ => Err(AudioError::Encoder(
            "no room reserved for the Info tag".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_averaged_and_codecs_expanded() {
        let mut out = Vec::new();
        let stereo: Vec<u8> = [100i16, 300, -32768, -32768]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        decode_mono(Codec::Pcm { bits: 16 }, 2, &stereo, &mut out);
        assert_eq!(out, [200, -32768]);
        out.clear();
        decode_mono(Codec::MuLaw, 1, &[0xFF, 0x80], &mut out);
        decode_mono(Codec::ALaw, 1, &[0xD5], &mut out);
        decode_mono(Codec::Pcm { bits: 8 }, 1, &[128, 0], &mut out);
        assert_eq!(out, [0, 32_124, 8, 0, -32_768]);
    }

    #[test]
    fn bitrates_leave_room_for_the_info_tag() {
        let kbps: Vec<u32> = MPEG_RATES.iter().map(|&r| bitrate_kbps(r)).collect();
        assert_eq!(kbps, [32, 32, 32, 40, 64, 64, 40, 64, 64]);
    }
}
