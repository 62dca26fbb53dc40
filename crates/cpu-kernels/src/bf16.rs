//! bfloat16 products with `f32` sums: AVX512-BF16's `vdpbf16ps`, and the same arithmetic
//! computed lane by lane in plain Rust ([`Emulated`]), rounding exactly as the instruction
//! does, which the tests hold the instruction to on a CPU that has it and against an `f64`
//! convolution on every CPU. The emulation is a reference, never a fallback: a CPU without
//! the instruction is refused ([`available`]).
//!
//! `vdpbf16ps` takes pairs: accumulator lane `i` adds `a[2i + 1] · b[2i + 1]`, rounds, then
//! adds `a[2i] · b[2i]` and rounds (each product exact, even beyond `f32`'s range: 8-bit
//! significands), to nearest even, subnormal inputs and results taken as zero (measured on
//! this project's AMD EPYC: 3.2 million random lanes equal to that order, 1.4 % differ from
//! the other; a product past `f32::MAX` does not become infinite). The operands are
//! stored as pairs, in a `u32` (element `2i` in the low half), or as runs of `u16` whose
//! consecutive elements pair up:
//!
//! - the forward product and the input gradient pair **two channels** at one tap: the padded
//!   input (or output gradient) is stored with channels `2p` and `2p + 1` interleaved
//!   ([`pad_pairs`]), the weights packed likewise;
//! - the weight gradient pairs **two consecutive positions**: plain padded channels of
//!   `u16` ([`to_bf16_slice`]).

use crate::implicit::{ConvBlock, WgradBlock, conv, wgrad};
use crate::isa::Isa;
use crate::lanes::{Element, Lanes};

/// Whether this CPU runs the bf16 kernels: AVX512-BF16 (with AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A subnormal taken as zero (its sign kept), as the instruction takes its inputs and results.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// `x` rounded to bfloat16 as `vcvtneps2bf16` does: to nearest even, a subnormal to zero, a
/// NaN to a quiet NaN.
pub(crate) fn to_bf16(x: f32) -> u16 {
    let x = flush(x);
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// `x` rounded to bfloat16 ([`to_bf16`]) and back: the value the instruction multiplies.
#[inline(always)]
pub(crate) fn round(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// The `f32` a bfloat16 stands for.
#[inline(always)]
pub(crate) fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

impl Element for u16 {
    #[inline(always)]
    fn value(self) -> f32 {
        from_bf16(self)
    }
}

/// `dst[i] = to_bf16(src[i])`.
pub(crate) fn to_bf16_slice(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX512-BF16; the slices are equally long.
        done = unsafe { x86::to_bf16_slice(src, dst) };
    }
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = to_bf16(s);
    }
}

/// Channels `2p` and `2p + 1` of `src` (`channels` planes of `plane` floats) interleaved into
/// plane `p` of `dst`: `dst[p·plane + i]` holds `to_bf16` of the first in its low half, of the
/// second (zero past the last channel) in its high half. `dst` past the pairs' planes is
/// zeroed.
pub(crate) fn pad_pairs(src: &[f32], channels: usize, plane: usize, dst: &mut [u32]) {
    let pairs = channels.div_ceil(2);
    assert!(src.len() >= channels * plane && dst.len() >= pairs * plane);
    for p in 0..pairs {
        let even = &src[2 * p * plane..][..plane];
        let odd = (2 * p + 1 < channels).then(|| &src[(2 * p + 1) * plane..][..plane]);
        let out = &mut dst[p * plane..][..plane];
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the CPU has AVX512-BF16; the slices are `plane` long.
            done = unsafe { x86::interleave(even, odd, out) };
        }
        for i in done..plane {
            let high = odd.map_or(0, |odd| to_bf16(odd[i]));
            out[i] = u32::from(to_bf16(even[i])) | u32::from(high) << 16;
        }
    }
    dst[pairs * plane..].fill(0);
}

/// [`crate::implicit::conv_block`] on pairs of bfloat16: `vdpbf16ps` (`hardware`) or its
/// emulation. Tiles as AVX-512's: [`Isa::conv_rows`] and [`ConvBlock::stride`] of
/// `Isa::Avx512`.
///
/// # Panics
/// As `conv_block`; when `hardware` and the CPU lacks AVX512-BF16.
pub(crate) fn conv_block(hardware: bool, block: &ConvBlock<'_, u32>, out: &mut [f32]) {
    let stride = block.stride(Isa::Avx512);
    if block.check(Isa::Avx512.conv_rows(), stride, out).is_none() {
        return;
    }
    if hardware {
        assert!(available(), "bf16: this CPU lacks AVX512-BF16");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: checked above; the CPU has the instructions.
        unsafe {
            x86::conv(block, out, stride)
        };
    } else {
        // SAFETY: checked above; plain Rust.
        unsafe { conv::<Emulated<false>, 8, 3>(block, out, stride) };
    }
}

/// [`crate::implicit::wgrad_block`] on runs of bfloat16, pairs of consecutive positions.
///
/// # Panics
/// As `wgrad_block`; when `hardware` and the CPU lacks AVX512-BF16.
pub(crate) fn wgrad_block(hardware: bool, block: &WgradBlock<'_, u16>, g: &mut [f32]) {
    if !block.check(g) {
        return;
    }
    let vectorised = if hardware {
        assert!(available(), "bf16: this CPU lacks AVX512-BF16");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: checked above; the CPU has the instructions.
        let done = unsafe { x86::wgrad(block, g) };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        done
    } else {
        // SAFETY: checked above; plain Rust.
        unsafe { wgrad::<Emulated<true>, 8>(block, g) }
    };
    block.tail(vectorised, g);
}

/// A pair of bfloat16 for the weights: `lo` and `hi` rounded.
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | u32::from(to_bf16(hi)) << 16
}

/// 16 accumulators fed pairs of bfloat16 in plain Rust: `RUNS` false reads operand pairs as
/// `u32`s, true as runs of `u16` (element `2i` and `2i + 1` pair up).
#[derive(Clone, Copy)]
pub(crate) struct Emulated<const RUNS: bool>([f32; 16]);

impl<const RUNS: bool> Emulated<RUNS> {
    /// One lane of `vdpbf16ps`: the high products first. A product of two bfloat16 is exact
    /// in `f64` (16 significant bits, no overflow: the instruction does not overflow it
    /// either, measured), and each sum is rounded once to `f32`: the `f64` sum's own rounding
    /// cannot move it across an `f32` rounding boundary, the two operands' bits spanning at
    /// most 24 + 16 places.
    #[inline(always)]
    fn dot(acc: f32, a: u32, b: u32) -> f32 {
        let product = |a: u32, b: u32| {
            f64::from(flush(from_bf16(a as u16))) * f64::from(flush(from_bf16(b as u16)))
        };
        let t = flush((f64::from(flush(acc)) + product(a >> 16, b >> 16)) as f32);
        flush((f64::from(t) + product(a & 0xFFFF, b & 0xFFFF)) as f32)
    }
}

macro_rules! emulated {
    ($runs:literal, $elem:ty, $step:literal, $load:expr) => {
        impl Lanes for Emulated<$runs> {
            type Elem = $elem;
            type In = [u32; 16];
            const L: usize = 16;
            const STEP: usize = $step;
            #[inline(always)]
            fn zero() -> Self {
                Emulated([0.0; 16])
            }
            #[inline(always)]
            unsafe fn load(p: *const $elem) -> [u32; 16] {
                // SAFETY: the caller's contract.
                unsafe { $load(p) }
            }
            #[inline(always)]
            unsafe fn splat(p: *const $elem) -> [u32; 16] {
                // SAFETY: the caller's contract (a pair's two halves are read).
                [unsafe { p.cast::<u32>().read_unaligned() }; 16]
            }
            #[inline(always)]
            fn mac(self, a: [u32; 16], b: [u32; 16]) -> Self {
                Emulated(std::array::from_fn(|i| Self::dot(self.0[i], a[i], b[i])))
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                // SAFETY: the caller's contract.
                unsafe { p.cast::<[f32; 16]>().write_unaligned(self.0) }
            }
            #[inline(always)]
            fn sums16(v: [Self; 16]) -> [f32; 16] {
                v.map(|v| tree_sum(&v.0))
            }
        }
    };
}

emulated!(false, u32, 16, |p: *const u32| p
    .cast::<[u32; 16]>()
    .read_unaligned());
emulated!(true, u16, 32, |p: *const u16| {
    let runs = p.cast::<[u16; 32]>().read_unaligned();
    std::array::from_fn(|i| u32::from(runs[2 * i]) | u32::from(runs[2 * i + 1]) << 16)
});

/// The lane sum in the order of the AVX-512 tree (`lanes::tree16`), so the emulation's
/// weight gradients equal the instruction's bit for bit.
fn tree_sum(l: &[f32; 16]) -> f32 {
    let e = |j: usize| (l[j] + l[8 + j]) + (l[4 + j] + l[12 + j]);
    (e(0) + e(2)) + (e(1) + e(3))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Lanes;
    use crate::implicit::{ConvBlock, WgradBlock};
    use crate::lanes::{tree16, unwrap16};

    /// 16 accumulators in a `zmm` register fed pairs of bfloat16 by `vdpbf16ps`; `RUNS` as
    /// in [`super::Emulated`]. Only used inside functions compiled with
    /// `#[target_feature(enable = "avx512f,avx512bf16")]`, on a CPU that has them.
    #[derive(Clone, Copy)]
    pub(crate) struct Hardware<const RUNS: bool>(pub(super) __m512);

    macro_rules! hardware {
        ($runs:literal, $elem:ty, $step:literal) => {
            // SAFETY (every block): the instruction sets are the CPU's (see the type); the
            // pointer contracts are the callers'.
            impl Lanes for Hardware<$runs> {
                type Elem = $elem;
                type In = __m512bh;
                const L: usize = 16;
                const STEP: usize = $step;
                #[inline(always)]
                fn zero() -> Self {
                    Hardware(unsafe { _mm512_setzero_ps() })
                }
                #[inline(always)]
                unsafe fn load(p: *const $elem) -> __m512bh {
                    unsafe {
                        std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast()))
                    }
                }
                #[inline(always)]
                unsafe fn splat(p: *const $elem) -> __m512bh {
                    let pair = unsafe { p.cast::<i32>().read_unaligned() };
                    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair)) }
                }
                #[inline(always)]
                fn mac(self, a: __m512bh, b: __m512bh) -> Self {
                    Hardware(unsafe { _mm512_dpbf16_ps(self.0, a, b) })
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    unsafe { _mm512_storeu_ps(p, self.0) }
                }
                #[inline(always)]
                fn sums16(v: [Self; 16]) -> [f32; 16] {
                    tree16(unwrap16(&v, |v| v.0))
                }
            }
        };
    }

    hardware!(false, u32, 16);
    hardware!(true, u16, 32);

    /// # Safety
    /// As [`crate::implicit::conv`]; the CPU must have AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn conv(block: &ConvBlock<'_, u32>, out: &mut [f32], stride: usize) {
        // SAFETY: the caller's contract.
        unsafe { crate::implicit::conv::<Hardware<false>, 8, 3>(block, out, stride) }
    }

    /// # Safety
    /// As [`crate::implicit::wgrad`]; the CPU must have AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn wgrad(block: &WgradBlock<'_, u16>, g: &mut [f32]) -> usize {
        // SAFETY: the caller's contract.
        unsafe { crate::implicit::wgrad::<Hardware<true>, 8>(block, g) }
    }

    /// The first `16·⌊n/16⌋` of [`super::to_bf16_slice`]; returns how many.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16; the slices must be equally long.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn to_bf16_slice(src: &[f32], dst: &mut [u16]) -> usize {
        let whole = src.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: 16 elements at `i` in both.
            unsafe {
                let v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src.as_ptr().add(i)));
                _mm256_storeu_si256(
                    dst.as_mut_ptr().add(i).cast(),
                    std::mem::transmute::<__m256bh, __m256i>(v),
                );
            }
        }
        whole
    }

    /// The first `16·⌊n/16⌋` of one plane of [`super::pad_pairs`]; returns how many.
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16; the slices must be equally long.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn interleave(even: &[f32], odd: Option<&[f32]>, out: &mut [u32]) -> usize {
        let whole = even.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: 16 elements at `i` in every slice.
            unsafe {
                let half = |p: *const f32| -> __m512i {
                    let h: __m256i = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(
                        _mm512_loadu_ps(p),
                    ));
                    _mm512_cvtepu16_epi32(h)
                };
                let low = half(even.as_ptr().add(i));
                let pairs = match odd {
                    Some(odd) => {
                        _mm512_or_si512(low, _mm512_slli_epi32::<16>(half(odd.as_ptr().add(i))))
                    }
                    None => low,
                };
                _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), pairs);
            }
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "x86_64")]
    use x86::Hardware;

    /// Random bit patterns: every exponent, subnormals, infinities and NaNs among them.
    fn patterns(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bits = (state >> 16) as u32;
                match state % 8 {
                    0 => f32::from_bits(bits & 0x807F_FFFF), // subnormal or zero
                    1 => f32::from_bits(bits | 0x7F80_0000), // infinity or NaN
                    _ => f32::from_bits(bits),
                }
            })
            .collect()
    }

    #[test]
    fn rounding_matches_the_instruction_and_round_trips() {
        let v = patterns(4099, 3);
        let scalar: Vec<u16> = v.iter().map(|&x| to_bf16(x)).collect();
        let mut vector = vec![0u16; v.len()];
        to_bf16_slice(&v, &mut vector);
        if available() {
            assert_eq!(scalar, vector, "vcvtneps2bf16 against to_bf16");
        } else {
            eprintln!("NOT TESTED: vcvtneps2bf16 (this CPU lacks AVX512-BF16)");
        }
        for (&x, &h) in v.iter().zip(&scalar) {
            let back = from_bf16(h);
            if x.is_nan() {
                assert!(back.is_nan());
            } else if x.is_subnormal() {
                assert_eq!(back, 0.0);
            } else if back.is_finite() {
                assert!((back - x).abs() <= x.abs() / 256.0, "{x} → {back}");
            }
        }
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80); // a tie: to even
        assert_eq!(to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
    }

    #[test]
    fn pairs_interleave_two_channels() {
        let plane = 37;
        let src = patterns(3 * plane, 9);
        let mut dst = vec![7u32; 2 * plane + 5];
        pad_pairs(&src, 3, plane, &mut dst);
        for i in 0..plane {
            assert_eq!(dst[i] as u16, to_bf16(src[i]));
            assert_eq!((dst[i] >> 16) as u16, to_bf16(src[plane + i]));
            assert_eq!(dst[plane + i] as u16, to_bf16(src[2 * plane + i]));
            assert_eq!(dst[plane + i] >> 16, 0, "no fourth channel");
        }
        assert_eq!(dst[2 * plane..], [0; 5]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_emulated_lane_is_the_instruction() {
        if !available() {
            eprintln!("NOT TESTED: vdpbf16ps (this CPU lacks AVX512-BF16)");
            return;
        }
        let (acc, a, b) = (
            patterns(16 * 5000, 1),
            patterns(32 * 5000, 2),
            patterns(32 * 5000, 4),
        );
        let halves = |v: &[f32]| v.iter().map(|&x| to_bf16(x)).collect::<Vec<u16>>();
        let (a, b) = (halves(&a), halves(&b));
        for n in 0..5000 {
            let acc = &acc[16 * n..][..16];
            let (a, b) = (&a[32 * n..][..32], &b[32 * n..][..32]);
            // SAFETY: 16 and 32 elements; the CPU has the instructions.
            let (hardware, emulated) = unsafe {
                let lanes = Emulated::<true>(acc.try_into().unwrap());
                let emulated = lanes.mac(
                    Emulated::<true>::load(a.as_ptr()),
                    Emulated::<true>::load(b.as_ptr()),
                );
                (x86_dot(acc, a, b), emulated.0)
            };
            for i in 0..16 {
                let (h, e) = (hardware[i], emulated[i]);
                assert!(
                    h.to_bits() == e.to_bits() || (h.is_nan() && e.is_nan()),
                    "lane {i}: {h} vs {e}: acc {:e} ({:08x}), a {:04x} {:04x}, b {:04x} {:04x}",
                    acc[i],
                    acc[i].to_bits(),
                    a[2 * i],
                    a[2 * i + 1],
                    b[2 * i],
                    b[2 * i + 1]
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn x86_dot(acc: &[f32], a: &[u16], b: &[u16]) -> [f32; 16] {
        let lanes = Hardware::<true>(unsafe { std::arch::x86_64::_mm512_loadu_ps(acc.as_ptr()) });
        // SAFETY: 32 elements each.
        let out = unsafe {
            lanes.mac(
                Hardware::<true>::load(a.as_ptr()),
                Hardware::<true>::load(b.as_ptr()),
            )
        };
        let mut lanes = [0.0f32; 16];
        // SAFETY: 16 floats.
        unsafe { out.store(lanes.as_mut_ptr()) };
        lanes
    }
}
