//! One image's channels moved between the network's layout (channels first: `c × h × w`) and
//! channels last, zero-padded (`(h + 2) × (w + 2) × c`, a zero pixel all round), as the
//! pooled backward pass ([`crate::pooled`]) reads its input and writes its input gradient.
//! On AVX-512, 16 channels × 16 pixels at a time through a 16 × 16 transpose in registers
//! (rounded to bf16 on the way in when asked, by `vcvtneps2bf16` itself); elsewhere, and for
//! what is left, one value at a time. Both give the same bits.

use std::mem::MaybeUninit;

use crate::bf16;
use crate::isa::Isa;

/// The shape of one image: `channels × height × width`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Image {
    /// Floats of the channels-last padded layout.
    pub fn padded_len(&self) -> usize {
        (self.height + 2) * (self.width + 2) * self.channels
    }

    /// `x` (channels first) into `dst` channels last and zero-padded, each value rounded to
    /// bf16 ([`bf16::round`]) when `bf16`.
    pub fn write_channels_last(&self, isa: Isa, x: &[f32], bf16: bool, dst: &mut [f32]) {
        let (h, w, c) = (self.height, self.width, self.channels);
        assert!(x.len() >= c * h * w && dst.len() >= self.padded_len());
        let row = (w + 2) * c;
        dst[..row].fill(0.0);
        dst[(h + 1) * row..][..row].fill(0.0);
        for y in 0..h {
            let out = &mut dst[(y + 1) * row..][..row];
            out[..c].fill(0.0);
            out[(w + 1) * c..].fill(0.0);
        }
        let done = self.vectorised(isa, bf16);
        #[cfg(target_arch = "x86_64")]
        if done > 0 {
            // SAFETY: the CPU has AVX-512F (and AVX512-BF16 when `bf16`: `vectorised`); the
            // lengths were checked above and `done` pixels of each row are whole blocks.
            unsafe {
                if bf16 {
                    x86::last_bf16(self, x, dst, done);
                } else {
                    x86::last_f32(self, x, dst, done);
                }
            }
        }
        for y in 0..h {
            for ch in 0..c {
                let from = &x[(ch * h + y) * w..][..w];
                for px in done..w {
                    let v = from[px];
                    dst[((y + 1) * (w + 2) + px + 1) * c + ch] =
                        if bf16 { bf16::round(v) } else { v };
                }
            }
        }
    }

    /// The interior of the channels-last padded `src` into `dst`, channels first: every
    /// element of `dst` written.
    pub fn write_channels_first(&self, isa: Isa, src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let (h, w, c) = (self.height, self.width, self.channels);
        assert!(src.len() >= self.padded_len() && dst.len() >= c * h * w);
        let done = self.vectorised(isa, false);
        #[cfg(target_arch = "x86_64")]
        if done > 0 {
            // SAFETY: as in `write_channels_last`.
            unsafe { x86::first(self, src, dst, done) };
        }
        for y in 0..h {
            for ch in 0..c {
                let to = &mut dst[(ch * h + y) * w..][..w];
                for (px, to) in to.iter_mut().enumerate().skip(done) {
                    to.write(src[((y + 1) * (w + 2) + px + 1) * c + ch]);
                }
            }
        }
    }

    /// Pixels of each row the AVX-512 transposes take: whole blocks of 16, when the CPU and
    /// `isa` have AVX-512 (and AVX512-BF16 for `bf16`) and the channels come in sixteens.
    fn vectorised(&self, isa: Isa, bf16: bool) -> usize {
        let able = isa == Isa::Avx512
            && isa.available()
            && self.channels.is_multiple_of(16)
            && (!bf16 || bf16::available());
        if able { self.width / 16 * 16 } else { 0 }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::Image;

    /// What happens to each vector on its way in.
    trait Round {
        /// # Safety
        /// The CPU must have what the implementation uses.
        unsafe fn round(v: __m512) -> __m512;
    }

    struct Keep;
    impl Round for Keep {
        #[inline(always)]
        unsafe fn round(v: __m512) -> __m512 {
            v
        }
    }

    /// Rounded to bf16 by `vcvtneps2bf16` and widened back.
    struct Bf16;
    impl Round for Bf16 {
        #[inline(always)]
        unsafe fn round(v: __m512) -> __m512 {
            // SAFETY: only inside `last_bf16`, compiled for AVX512-BF16.
            unsafe {
                let halves: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(halves)))
            }
        }
    }

    /// `r[i][j]` → `out[j][i]` for 16 vectors of 16.
    #[inline(always)]
    unsafe fn transpose(r: [__m512; 16]) -> [__m512; 16] {
        // SAFETY: AVX-512F shuffles on registers (the callers are compiled for it).
        unsafe {
            // Pairs of rows interleaved: within each 128-bit lane, a0 b0 a1 b1 / a2 b2 a3 b3.
            let t: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            // Quads: lane L of u[4g + k] holds rows 4g..4g+3 of column 4L + k.
            let u: [__m512; 16] = std::array::from_fn(|i| {
                let (g, k) = (i / 4, i % 4);
                let (a, b) = (
                    _mm512_castps_pd(t[4 * g + k / 2]),
                    _mm512_castps_pd(t[4 * g + k / 2 + 2]),
                );
                _mm512_castpd_ps(if k % 2 == 0 {
                    _mm512_unpacklo_pd(a, b)
                } else {
                    _mm512_unpackhi_pd(a, b)
                })
            });
            // Column 4L + k gathers lane L of u[k], u[4 + k], u[8 + k], u[12 + k].
            let mut out = [_mm512_setzero_ps(); 16];
            for k in 0..4 {
                let s0 = _mm512_shuffle_f32x4::<0x44>(u[k], u[4 + k]);
                let s1 = _mm512_shuffle_f32x4::<0xEE>(u[k], u[4 + k]);
                let s2 = _mm512_shuffle_f32x4::<0x44>(u[8 + k], u[12 + k]);
                let s3 = _mm512_shuffle_f32x4::<0xEE>(u[8 + k], u[12 + k]);
                out[k] = _mm512_shuffle_f32x4::<0x88>(s0, s2);
                out[4 + k] = _mm512_shuffle_f32x4::<0xDD>(s0, s2);
                out[8 + k] = _mm512_shuffle_f32x4::<0x88>(s1, s3);
                out[12 + k] = _mm512_shuffle_f32x4::<0xDD>(s1, s3);
            }
            out
        }
    }

    /// The first `done` pixels of every row of [`Image::write_channels_last`], rounded by `R`.
    #[inline(always)]
    unsafe fn last<R: Round>(image: &Image, x: &[f32], dst: &mut [f32], done: usize) {
        let (h, w, c) = (image.height, image.width, image.channels);
        for y in 0..h {
            for px in (0..done).step_by(16) {
                for ch in (0..c).step_by(16) {
                    // SAFETY: rows `ch..ch + 16` and pixels `px..px + 16` lie inside the image
                    // (`done ≤ w`, `c` a multiple of 16); the caller's contract for the CPU.
                    unsafe {
                        let rows: [__m512; 16] = std::array::from_fn(|i| {
                            _mm512_loadu_ps(x.as_ptr().add(((ch + i) * h + y) * w + px))
                        });
                        let pixels = transpose(rows);
                        for (i, v) in pixels.into_iter().enumerate() {
                            let at = ((y + 1) * (w + 2) + px + i + 1) * c + ch;
                            _mm512_storeu_ps(dst.as_mut_ptr().add(at), R::round(v));
                        }
                    }
                }
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F; the lengths as [`Image::write_channels_last`] checks them.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn last_f32(image: &Image, x: &[f32], dst: &mut [f32], done: usize) {
        // SAFETY: the caller's contract.
        unsafe { last::<Keep>(image, x, dst, done) }
    }

    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16; the lengths as
    /// [`Image::write_channels_last`] checks them.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn last_bf16(image: &Image, x: &[f32], dst: &mut [f32], done: usize) {
        // SAFETY: the caller's contract.
        unsafe { last::<Bf16>(image, x, dst, done) }
    }

    /// The first `done` pixels of every row of [`Image::write_channels_first`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the lengths as [`Image::write_channels_first`] checks them.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn first(
        image: &Image,
        src: &[f32],
        dst: &mut [MaybeUninit<f32>],
        done: usize,
    ) {
        let (h, w, c) = (image.height, image.width, image.channels);
        for y in 0..h {
            for px in (0..done).step_by(16) {
                for ch in (0..c).step_by(16) {
                    // SAFETY: as in `last`.
                    unsafe {
                        let pixels: [__m512; 16] = std::array::from_fn(|i| {
                            let at = ((y + 1) * (w + 2) + px + i + 1) * c + ch;
                            _mm512_loadu_ps(src.as_ptr().add(at))
                        });
                        let rows = transpose(pixels);
                        for (i, v) in rows.into_iter().enumerate() {
                            let at = ((ch + i) * h + y) * w + px;
                            _mm512_storeu_ps(dst.as_mut_ptr().add(at).cast(), v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both directions on every instruction set here, against the definition, with awkward
    /// widths (tails after whole blocks) and values that bf16 rounds every way.
    #[test]
    fn the_layouts_hold_the_same_values_on_every_path() {
        for (c, h, w) in [(16, 3, 37), (32, 2, 16), (48, 1, 5), (16, 4, 33)] {
            let image = Image {
                channels: c,
                height: h,
                width: w,
            };
            let x: Vec<f32> = (0..c * h * w)
                .map(|i| match i % 7 {
                    0 => f32::from_bits(0x3F80_8000 + i as u32),
                    1 => f32::MIN_POSITIVE / 3.0,
                    2 => -(i as f32) * 1.000_1,
                    _ => i as f32 / 7.0 + 0.123_456,
                })
                .collect();
            for bf16 in [false, true] {
                let mut want = vec![9.0; image.padded_len()];
                image.write_channels_last(Isa::Portable, &x, bf16, &mut want);
                for ch in 0..c {
                    for y in 0..h {
                        for px in 0..w {
                            let v = x[(ch * h + y) * w + px];
                            let v = if bf16 { bf16::round(v) } else { v };
                            let got = want[((y + 1) * (w + 2) + px + 1) * c + ch];
                            assert_eq!(got.to_bits(), v.to_bits());
                        }
                    }
                }
                let zeros = want.iter().filter(|v| **v == 0.0).count();
                assert!(
                    zeros >= image.padded_len() - c * h * w,
                    "the border is zero"
                );
                for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                    if bf16 && isa == Isa::Avx512 && !bf16::available() {
                        eprintln!("NOT TESTED: the AVX512-BF16 rounding transpose (CPU lacks it)");
                        continue;
                    }
                    let mut got = vec![9.0; image.padded_len()];
                    image.write_channels_last(isa, &x, bf16, &mut got);
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} bf16 {bf16} {c}×{h}×{w}"
                    );
                    let mut back = vec![MaybeUninit::new(7.0f32); c * h * w];
                    image.write_channels_first(isa, &got, &mut back);
                    // SAFETY: initialised above.
                    let back: Vec<f32> = back.iter().map(|v| unsafe { v.assume_init() }).collect();
                    let want_back: Vec<f32> = x
                        .iter()
                        .map(|&v| if bf16 { bf16::round(v) } else { v })
                        .collect();
                    assert!(
                        back.iter()
                            .zip(&want_back)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} back, {c}×{h}×{w}"
                    );
                }
            }
        }
    }
}
