//! ITU-T G.711 decoding: one byte per sample to 16-bit linear PCM.
//!
//! The expansions are those of the reference implementation in ITU-T G.191 (the Sun
//! `g711.c` that libsndfile, SoX and ffmpeg also follow), tabulated at compile time.

/// µ-law byte → linear sample (range ±32,124).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    ULAW[usize::from(byte)]
}

/// A-law byte → linear sample (range ±32,256).
pub fn alaw_to_linear(byte: u8) -> i16 {
    ALAW[usize::from(byte)]
}

const ULAW: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw(i as u8);
        i += 1;
    }
    t
};

const ALAW: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw(i as u8);
        i += 1;
    }
    t
};

/// µ-law: bits are stored inverted; sign, 3-bit segment, 4-bit step; bias 0x84 (G.711 §2).
const fn ulaw(byte: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !byte;
    let segment = ((u >> 4) & 0x07) as i32;
    let step = (u & 0x0F) as i32;
    let magnitude = (((step << 3) + BIAS) << segment) - BIAS;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// A-law: even bits inverted (XOR 0x55); segment 0 is linear, the others double per step.
const fn alaw(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let step = ((a & 0x0F) as i32) << 4;
    let magnitude = match segment {
        0 => step + 8,
        1 => step + 0x108,
        s => (step + 0x108) << (s - 1),
    };
    // In A-law a set sign bit means positive.
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of the G.191 reference decoder.
    #[test]
    fn reference_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
    }

    /// Both laws are odd-symmetric and monotonic in their segment/step code.
    #[test]
    fn monotonic_and_symmetric() {
        let mut last_u = -1;
        let mut last_a = -1;
        for code in 0..128u8 {
            // Positive half, increasing magnitude: µ-law 0xFF down to 0x80.
            let u = ulaw_to_linear(0xFF - code);
            assert!(i32::from(u) > last_u || code == 0, "µ-law {code}");
            assert_eq!(ulaw_to_linear(0x7F - code), -u);
            last_u = i32::from(u);
            let a = alaw_to_linear((0x80 | code) ^ 0x55);
            assert!(i32::from(a) > last_a, "A-law {code}");
            assert_eq!(alaw_to_linear(code ^ 0x55), -a);
            last_a = i32::from(a);
        }
    }
}
