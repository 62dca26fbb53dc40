//! The element-wise passes around the convolution kernels — bias + ReLU, the ReLU gradient with its sum,
//! the 2×2 max-pool forward and backward — in AVX-512 where the CPU has it (checked once at
//! run time), with portable fallbacks that give bit-identical results: every operation is a
//! compare, a select, a max written as `a > b ? a : b` (what `vmaxps` computes) or an add in a
//! fixed order, so training stays reproducible from machine to machine.
//!
//! The compiler does not vectorise these loops itself (a sum kept in lanes, `f32::max`'s NaN
//! rule, the pool's even/odd pairs): scalar, they took about a fifth of a training step.

use std::mem::MaybeUninit;

/// Lanes of the ReLU-gradient sum: the order of its additions, on every machine.
const LANES: usize = 16;

/// Set by a test to run the portable loops on an AVX-512 machine too (harmless to other
/// tests running at the same time: both paths give the same bits).
#[cfg(test)]
static PORTABLE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    #[cfg(test)]
    if PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx512f")
}

/// `a > b ? a : b`, the max both paths compute.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// `out[i] = max(row[i] + bias, 0)`.
pub(crate) fn bias_relu_into(out: &mut [MaybeUninit<f32>], row: &[f32], bias: f32) {
    assert_eq!(out.len(), row.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F; the slices are equally long.
        done = unsafe { avx512::bias_relu_into(out, row, bias) };
    }
    for (o, &v) in out[done..].iter_mut().zip(&row[done..]) {
        o.write(max(v + bias, 0.0));
    }
}

/// `dy = grad ⊙ (out > 0)`, returning `Σ dy` summed in [`LANES`] lanes (lane `i` takes
/// elements `i, i + 16, …` of the whole chunks), then the lanes in order, then the tail.
pub(crate) fn relu_grad_sum(dy: &mut [f32], out: &[f32], grad: &[f32]) -> f32 {
    assert!(out.len() == dy.len() && grad.len() == dy.len());
    let whole = dy.len() / LANES * LANES;
    #[cfg(target_arch = "x86_64")]
    let lanes = if has_avx512() {
        // SAFETY: the CPU has AVX-512F; the three slices are `whole` long at least.
        unsafe { avx512::relu_grad_lanes(&mut dy[..whole], &out[..whole], &grad[..whole]) }
    } else {
        relu_grad_lanes(&mut dy[..whole], &out[..whole], &grad[..whole])
    };
    #[cfg(not(target_arch = "x86_64"))]
    let lanes = relu_grad_lanes(&mut dy[..whole], &out[..whole], &grad[..whole]);
    let mut sum = lanes.iter().sum::<f32>();
    for ((d, &o), &g) in dy[whole..]
        .iter_mut()
        .zip(&out[whole..])
        .zip(&grad[whole..])
    {
        *d = if o > 0.0 { g } else { 0.0 };
        sum += *d;
    }
    sum
}

fn relu_grad_lanes(dy: &mut [f32], out: &[f32], grad: &[f32]) -> [f32; LANES] {
    let mut lanes = [0.0f32; LANES];
    for ((d, o), g) in dy
        .chunks_exact_mut(LANES)
        .zip(out.chunks_exact(LANES))
        .zip(grad.chunks_exact(LANES))
    {
        for i in 0..LANES {
            d[i] = if o[i] > 0.0 { g[i] } else { 0.0 };
            lanes[i] += d[i];
        }
    }
    lanes
}

/// The gradient of [`pool_row_winners`]' maxima for one output row: each `grad[x]` goes to the input that
/// won its window, the other three get 0; every one of the `2n` values of `grad_top` and
/// `grad_bottom` is written.
pub(crate) fn pool_row_backward(
    top: &[f32],
    bottom: &[f32],
    grad: &[f32],
    grad_top: &mut [MaybeUninit<f32>],
    grad_bottom: &mut [MaybeUninit<f32>],
) {
    let n = grad.len();
    assert!(top.len() >= 2 * n && bottom.len() >= 2 * n);
    assert!(grad_top.len() >= 2 * n && grad_bottom.len() >= 2 * n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F; the rows hold `2n` values each.
        done = unsafe { avx512::pool_row_backward(top, bottom, grad, grad_top, grad_bottom) };
    }
    for x in done..n {
        let won = window_winner(top[2 * x], top[2 * x + 1], bottom[2 * x], bottom[2 * x + 1]);
        let g = grad[x];
        let pick = |i: usize| if won == i { g } else { 0.0 };
        grad_top[2 * x].write(pick(0));
        grad_top[2 * x + 1].write(pick(1));
        grad_bottom[2 * x].write(pick(2));
        grad_bottom[2 * x + 1].write(pick(3));
    }
}

/// Which input of a 2×2 window (`a b` over `c d`) [`pool_row_winners`]' maximum came from, and so
/// which one its gradient goes to: 0–3 in row-major order, the first of equal ones (the
/// last candidate whose comparison with the running max was true).
#[inline(always)]
pub(crate) fn window_winner(a: f32, b: f32, c: f32, d: f32) -> usize {
    let m1 = max(b, a);
    let m2 = max(c, m1);
    if d > m2 {
        3
    } else if c > m1 {
        2
    } else {
        usize::from(b > a)
    }
}

/// The code [`pool_row_winners`] writes for a window whose gradient the ReLU before the pool
/// stops: its largest input is not positive.
pub(crate) const NO_WINNER: u8 = 4;

/// One output row of a 2×2 max-pool: `out[x]` is the first largest of `top[2x]`,
/// `top[2x + 1]`, `bottom[2x]`, `bottom[2x + 1]` (candidates in that order; a later one wins
/// only when strictly larger); `codes[x]` which of them that is ([`window_winner`]'s 0–3), or
/// [`NO_WINNER`] when it is not positive (a ReLU output of 0).
pub(crate) fn pool_row_winners(
    top: &[f32],
    bottom: &[f32],
    out: &mut [MaybeUninit<f32>],
    codes: &mut [u8],
) {
    let n = out.len();
    assert!(top.len() >= 2 * n && bottom.len() >= 2 * n && codes.len() == n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F; the rows hold `2n` values each, `codes` `n`.
        done = unsafe { avx512::pool_row_winners(top, bottom, out, codes) };
    }
    for x in done..n {
        let window = [top[2 * x], top[2 * x + 1], bottom[2 * x], bottom[2 * x + 1]];
        let m = max(window[3], max(window[2], max(window[1], window[0])));
        out[x].write(m);
        let won = window_winner(window[0], window[1], window[2], window[3]);
        codes[x] = if window[won] > 0.0 {
            won as u8
        } else {
            NO_WINNER
        };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::LANES;

    /// Lane indices that pick the even (`EVEN`) or odd (`ODD`) elements of two registers
    /// `a:b` (indices 16–31 address `b`), and that interleave two registers back.
    const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
    const LOW: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const HIGH: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

    #[target_feature(enable = "avx512f")]
    fn index(lanes: [i32; 16]) -> __m512i {
        // SAFETY: an unaligned load of 16 `i32`s from an array of 16.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    }

    /// The first `16·⌊n/16⌋` outputs of [`super::bias_relu_into`]; returns how many.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `out` and `row` must be equally long.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn bias_relu_into(
        out: &mut [MaybeUninit<f32>],
        row: &[f32],
        bias: f32,
    ) -> usize {
        let (b, zero) = (_mm512_set1_ps(bias), _mm512_setzero_ps());
        let whole = row.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: `i + 16 <= len` floats in both.
            unsafe {
                let v = _mm512_add_ps(_mm512_loadu_ps(row.as_ptr().add(i)), b);
                // vmaxps(a, b) = a > b ? a : b.
                let out = out.as_mut_ptr().cast::<f32>().add(i);
                _mm512_storeu_ps(out, _mm512_max_ps(v, zero));
            }
        }
        whole
    }

    /// # Safety
    /// The CPU must have AVX-512F; the slices must be equally long, a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_grad_lanes(
        dy: &mut [f32],
        out: &[f32],
        grad: &[f32],
    ) -> [f32; LANES] {
        let zero = _mm512_setzero_ps();
        let mut sum = zero;
        for i in (0..dy.len()).step_by(16) {
            // SAFETY: `i + 16 <= len` for all three (the caller's contract).
            unsafe {
                let o = _mm512_loadu_ps(out.as_ptr().add(i));
                let g = _mm512_loadu_ps(grad.as_ptr().add(i));
                let d = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(o, zero), g);
                _mm512_storeu_ps(dy.as_mut_ptr().add(i), d);
                sum = _mm512_add_ps(sum, d);
            }
        }
        let mut lanes = [0.0f32; LANES];
        // SAFETY: 16 floats into an array of 16.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes
    }

    /// The even and odd elements of `row[2x .. 2x + 32]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and `row` must hold `2x + 32` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn pairs(row: &[f32], x: usize) -> (__m512, __m512) {
        // SAFETY: the caller's contract.
        unsafe {
            let lo = _mm512_loadu_ps(row.as_ptr().add(2 * x));
            let hi = _mm512_loadu_ps(row.as_ptr().add(2 * x + 16));
            (
                _mm512_permutex2var_ps(lo, index(EVEN), hi),
                _mm512_permutex2var_ps(lo, index(ODD), hi),
            )
        }
    }

    /// Interleaves `even` and `odd` into `row[2x .. 2x + 32]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and `row` must hold `2x + 32` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_pairs(row: &mut [MaybeUninit<f32>], x: usize, even: __m512, odd: __m512) {
        // SAFETY: the caller's contract.
        unsafe {
            let lo = _mm512_permutex2var_ps(even, index(LOW), odd);
            let hi = _mm512_permutex2var_ps(even, index(HIGH), odd);
            let row = row.as_mut_ptr().cast::<f32>();
            _mm512_storeu_ps(row.add(2 * x), lo);
            _mm512_storeu_ps(row.add(2 * x + 16), hi);
        }
    }

    /// [`super::window_winner`] for 16 windows (`a b` over `c d`, lane by lane): their
    /// maxima, and the lanes that `b`, `c` and `d` win (at most one of the three; `a` wins
    /// the rest).
    #[inline(always)]
    unsafe fn winners(a: __m512, b: __m512, c: __m512, d: __m512) -> (__m512, [__mmask16; 3]) {
        // SAFETY: AVX-512F on registers (the callers are compiled for it).
        unsafe {
            let m1 = _mm512_max_ps(b, a);
            let m2 = _mm512_max_ps(c, m1);
            let win_d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, m2);
            let win_c = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c, m1) & !win_d;
            let win_b = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b, a) & !win_d & !win_c;
            (_mm512_max_ps(d, m2), [win_b, win_c, win_d])
        }
    }

    /// The first `16·⌊n/16⌋` outputs of [`super::pool_row_winners`]; returns how many.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `top` and `bottom` must hold `2·out.len()` values,
    /// `codes` `out.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_row_winners(
        top: &[f32],
        bottom: &[f32],
        out: &mut [MaybeUninit<f32>],
        codes: &mut [u8],
    ) -> usize {
        let whole = out.len() / 16 * 16;
        for x in (0..whole).step_by(16) {
            // SAFETY: `2x + 32 <= 2·whole` values in each row, `x + 16 <= whole` outputs
            // and codes.
            unsafe {
                let (a, b) = pairs(top, x);
                let (c, d) = pairs(bottom, x);
                let (m, [win_b, win_c, win_d]) = winners(a, b, c, d);
                _mm512_storeu_ps(out.as_mut_ptr().cast::<f32>().add(x), m);
                let value = _mm512_mask_blend_ps(
                    win_d,
                    _mm512_mask_blend_ps(win_c, _mm512_mask_blend_ps(win_b, a, b), c),
                    d,
                );
                let code = _mm512_maskz_mov_epi32(win_b, _mm512_set1_epi32(1));
                let code = _mm512_mask_mov_epi32(code, win_c, _mm512_set1_epi32(2));
                let code = _mm512_mask_mov_epi32(code, win_d, _mm512_set1_epi32(3));
                let stopped = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(value, _mm512_setzero_ps())
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(value, value);
                let code = _mm512_mask_mov_epi32(
                    code,
                    stopped,
                    _mm512_set1_epi32(i32::from(super::NO_WINNER)),
                );
                _mm_storeu_si128(codes.as_mut_ptr().add(x).cast(), _mm512_cvtepi32_epi8(code));
            }
        }
        whole
    }

    /// The first `16·⌊n/16⌋` outputs of [`super::pool_row_backward`]; returns how many.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the four rows must hold `2·grad.len()` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_row_backward(
        top: &[f32],
        bottom: &[f32],
        grad: &[f32],
        grad_top: &mut [MaybeUninit<f32>],
        grad_bottom: &mut [MaybeUninit<f32>],
    ) -> usize {
        let whole = grad.len() / 16 * 16;
        for x in (0..whole).step_by(16) {
            // SAFETY: as in `pool_row_winners`.
            unsafe {
                let (a, b) = pairs(top, x);
                let (c, d) = pairs(bottom, x);
                let (_, [win_b, win_c, win_d]) = winners(a, b, c, d);
                let win_a = !(win_b | win_c | win_d);
                let g = _mm512_loadu_ps(grad.as_ptr().add(x));
                store_pairs(
                    grad_top,
                    x,
                    _mm512_maskz_mov_ps(win_a, g),
                    _mm512_maskz_mov_ps(win_b, g),
                );
                store_pairs(
                    grad_bottom,
                    x,
                    _mm512_maskz_mov_ps(win_c, g),
                    _mm512_maskz_mov_ps(win_d, g),
                );
            }
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with ties, zeros of both signs, NaNs and infinities among ordinary ones.
    fn awkward(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                match state % 16 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::NAN,
                    3 => f32::INFINITY,
                    4 => 1.0,
                    5 => -1.0,
                    _ => (state >> 20) as f32 / 1e6 - 0.5,
                }
            })
            .collect()
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    // The public functions take the AVX-512 path on a CPU with it: compared, on every length up
    // to a few vectors, with the definitions written out again here; then the portable path.
    #[test]
    fn vector_and_portable_paths_agree_bit_for_bit() {
        check_against_the_definitions();
        PORTABLE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
        check_against_the_definitions();
        PORTABLE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn check_against_the_definitions() {
        for len in 0..70 {
            let (x, g) = (awkward(len, len as u64), awkward(len, 99 + len as u64));

            let mut row = vec![MaybeUninit::new(9.0); len];
            bias_relu_into(&mut row, &x, 0.25);
            // SAFETY: initialised by `vec!` and then by `bias_relu_into`.
            let row: Vec<f32> = row.iter().map(|v| unsafe { v.assume_init() }).collect();
            let want: Vec<f32> = x.iter().map(|&v| max(v + 0.25, 0.0)).collect();
            assert!(same_bits(&row, &want), "bias_relu_into, len {len}");

            let mut dy = vec![7.0; len];
            let sum = relu_grad_sum(&mut dy, &x, &g);
            let mut want = vec![7.0; len];
            let whole = len / LANES * LANES;
            let lanes = relu_grad_lanes(&mut want[..whole], &x[..whole], &g[..whole]);
            let mut want_sum = lanes.iter().sum::<f32>();
            for i in whole..len {
                want[i] = if x[i] > 0.0 { g[i] } else { 0.0 };
                want_sum += want[i];
            }
            assert!(same_bits(&dy, &want), "relu_grad_sum, len {len}");
            assert_eq!(
                sum.to_bits(),
                want_sum.to_bits(),
                "relu_grad_sum, len {len}"
            );

            let (top, bottom) = (awkward(2 * len, 7 * len as u64), awkward(2 * len, 5));
            let written = |v: Vec<MaybeUninit<f32>>| -> Vec<f32> {
                // SAFETY: initialised by `vec!` (and then by the function under test).
                v.into_iter().map(|v| unsafe { v.assume_init() }).collect()
            };
            let mut out = vec![MaybeUninit::new(9.0); len];
            let mut codes = vec![9; len];
            pool_row_winners(&top, &bottom, &mut out, &mut codes);
            let out = written(out);
            let mut grad_top = vec![MaybeUninit::new(9.0); 2 * len];
            let mut grad_bottom = vec![MaybeUninit::new(9.0); 2 * len];
            pool_row_backward(&top, &bottom, &g, &mut grad_top, &mut grad_bottom);
            let (grad_top, grad_bottom) = (written(grad_top), written(grad_bottom));
            for i in 0..len {
                let window = [top[2 * i], top[2 * i + 1], bottom[2 * i], bottom[2 * i + 1]];
                // The first largest, as a scan that keeps the best so far.
                let mut best = 0;
                for (j, &v) in window.iter().enumerate().skip(1) {
                    if v > window[best] {
                        best = j;
                    }
                }
                assert_eq!(out[i].to_bits(), window[best].to_bits(), "pool, len {len}");
                let code = if window[best] > 0.0 {
                    best as u8
                } else {
                    NO_WINNER
                };
                assert_eq!(
                    codes[i], code,
                    "pool_row_winners' code, len {len}, {window:?}"
                );
                let grads = [
                    grad_top[2 * i],
                    grad_top[2 * i + 1],
                    grad_bottom[2 * i],
                    grad_bottom[2 * i + 1],
                ];
                for (j, &got) in grads.iter().enumerate() {
                    let want = if j == best { g[i] } else { 0.0 };
                    assert_eq!(got.to_bits(), want.to_bits(), "pool grad, len {len}");
                }
            }
        }
    }
}
