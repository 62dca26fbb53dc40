//! 3×3 convolution, stride 1, `same` padding (one pixel of zeros), NCHW, with the bias and the
//! ReLU fused: `y = max(0, conv(x, w) + b)`, and its backward pass.
//!
//! Each image is cut into column blocks of output positions small enough that the block's
//! im2col matrix (`in_channels·9 × positions`) stays in the L2 cache; every product is one
//! SGEMM on it:
//!
//! - forward: `y[:, block] = w · col` (`w` is `out × in·9`, burn's weight layout as is), then
//!   bias + ReLU while the block is hot;
//! - backward, with `dy = grad_y ⊙ (y > 0)`: `grad_b += Σ dy`, `grad_w += dy · colᵀ` and,
//!   when the input needs a gradient, `dcol = wᵀ · dy` scattered back (col2im) into `grad_x`.
//!
//! Images run in parallel on rayon's pool; with fewer images than threads (inference on one
//! image) the SGEMMs themselves are split instead. Weight and bias gradients are summed per
//! fixed group of images and the groups in a fixed order, so results never depend on
//! scheduling or on the number of threads: training stays bit-for-bit reproducible.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::scratch::with_scratch;
use crate::sgemm::{Strided, sgemm, sgemm_transposed_dst, sgemm_uninit};
use crate::simd;
use crate::uninit::{assume_vec_written, assume_written, uninit_vec, vec_written_by, zeroed};

/// Floats of im2col matrix per block: 1 MiB, half of a 2 MiB L2.
const BLOCK_FLOATS: usize = 1 << 18;
/// The fewest output positions per block, so that thin SGEMMs stay efficient.
const MIN_BLOCK: usize = 128;
/// Weight gradients are summed over at most this many image groups.
const MAX_GROUPS: usize = 16;

/// The shape of one 3×3 `same` convolution over a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3x3 {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (filters).
    pub out_channels: usize,
    /// Image height (input and output).
    pub height: usize,
    /// Image width (input and output).
    pub width: usize,
}

/// Gradients of [`Conv3x3::backward_relu`], each in the layout of what it differentiates.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvGrads {
    /// `∂L/∂x`, NCHW; `None` when not asked for.
    pub input: Option<Vec<f32>>,
    /// `∂L/∂w`, `[out, in, 3, 3]`.
    pub weight: Vec<f32>,
    /// `∂L/∂b`, `[out]`.
    pub bias: Vec<f32>,
}

impl Conv3x3 {
    /// Values in the input, `batch × in × height × width`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.positions()
    }

    /// Values in the output, `batch × out × height × width`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.positions()
    }

    /// Values in the weight, `out × in × 3 × 3`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch()
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> u64 {
        (self.output_len() * self.patch()) as u64
    }

    fn positions(&self) -> usize {
        self.height * self.width
    }

    /// The im2col row count: one row per input channel and kernel tap.
    fn patch(&self) -> usize {
        self.in_channels * 9
    }

    fn block(&self) -> usize {
        (BLOCK_FLOATS / self.patch().max(1))
            .max(MIN_BLOCK)
            .min(self.positions().max(1))
    }

    fn inner_parallelism(&self) -> Parallelism {
        let threads = rayon::current_num_threads();
        if self.batch >= threads || threads == 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(threads)
        }
    }

    /// Panics unless the input and weight lengths match the shape.
    fn check(&self, x: &[f32], w: &[f32]) {
        assert_eq!(
            x.len(),
            self.input_len(),
            "conv3x3: input length for {self:?}"
        );
        assert_eq!(
            w.len(),
            self.weight_len(),
            "conv3x3: weight length for {self:?}"
        );
    }

    /// `max(0, conv(x, w) + b)`.
    ///
    /// # Panics
    /// When a slice's length does not match the shape.
    pub fn forward_relu(&self, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        self.check(x, w);
        assert_eq!(
            b.len(),
            self.out_channels,
            "conv3x3: bias length for {self:?}"
        );
        let (hw, k, co) = (self.positions(), self.patch(), self.out_channels);
        if self.output_len() == 0 {
            return Vec::new();
        }
        let block = self.block();
        let parallelism = self.inner_parallelism();
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(co * hw)
                .zip(x.par_chunks(self.in_channels * hw))
                .for_each(|(y_img, x_img)| {
                    with_scratch(k * block, |col| {
                        for start in (0..hw).step_by(block) {
                            let n = block.min(hw - start);
                            let col = &mut col[..k * n];
                            self.im2col(x_img, start, n, col);
                            let out = &mut y_img[start..];
                            sgemm_uninit(
                                co,
                                n,
                                k,
                                out,
                                hw,
                                Strided::rows(w, k),
                                Strided::rows(col, n),
                                parallelism,
                            );
                            for (c, &bias) in b.iter().enumerate() {
                                // SAFETY: the SGEMM above wrote row `c` of this block.
                                let row = unsafe { assume_written(&mut out[c * hw..][..n]) };
                                simd::bias_relu(row, bias);
                            }
                        }
                    });
                });
        };
        // SAFETY: the blocks of every image cover all `hw` positions of all `co` rows, and
        // each block's SGEMM writes its `co × n` part.
        unsafe { vec_written_by(self.output_len(), fill) }
    }

    /// The gradients of [`forward_relu`](Self::forward_relu) given its input `x`, weight `w`,
    /// output `y` and the output's gradient `grad_y`; `∂L/∂x` only when `input_grad`.
    ///
    /// # Panics
    /// When a slice's length does not match the shape.
    pub fn backward_relu(
        &self,
        x: &[f32],
        w: &[f32],
        y: &[f32],
        grad_y: &[f32],
        input_grad: bool,
    ) -> ConvGrads {
        self.check(x, w);
        assert_eq!(
            y.len(),
            self.output_len(),
            "conv3x3: output length for {self:?}"
        );
        assert_eq!(
            grad_y.len(),
            self.output_len(),
            "conv3x3: gradient length for {self:?}"
        );
        let (hw, co, ci) = (self.positions(), self.out_channels, self.in_channels);
        // Each image's input gradient is zeroed by the thread that computes it, just before
        // (in cache, on both cores), rather than all of it up front.
        let mut grad_x = input_grad.then(|| uninit_vec(self.input_len()));
        let groups = self.batch.clamp(1, MAX_GROUPS);
        // Group g holds images [g·batch/groups, (g+1)·batch/groups).
        let bounds: Vec<usize> = (0..=groups).map(|g| g * self.batch / groups).collect();
        let mut grad_x_groups: Vec<Option<&mut [MaybeUninit<f32>]>> = Vec::with_capacity(groups);
        match grad_x.as_deref_mut() {
            Some(mut rest) => {
                for g in 0..groups {
                    let (head, tail) = rest.split_at_mut((bounds[g + 1] - bounds[g]) * ci * hw);
                    grad_x_groups.push(Some(head));
                    rest = tail;
                }
            }
            None => grad_x_groups.resize_with(groups, || None),
        }
        let parallelism = self.inner_parallelism();
        let partials: Vec<(Vec<f32>, Vec<f32>)> = grad_x_groups
            .into_par_iter()
            .enumerate()
            .map(|(g, mut gx_group)| {
                // This group's weight gradient, transposed (`k × co`).
                let mut gw_t = vec![0.0; self.weight_len()];
                let mut gb = vec![0.0; co];
                for (i, image) in (bounds[g]..bounds[g + 1]).enumerate() {
                    let gx = gx_group
                        .as_deref_mut()
                        .map(|gx| zeroed(&mut gx[i * ci * hw..][..ci * hw]));
                    self.backward_image(
                        &x[image * ci * hw..][..ci * hw],
                        w,
                        &y[image * co * hw..][..co * hw],
                        &grad_y[image * co * hw..][..co * hw],
                        gx,
                        &mut gw_t,
                        &mut gb,
                        parallelism,
                    );
                }
                (gw_t, gb)
            })
            .collect();
        let mut partials = partials.into_iter();
        let (mut weight_t, mut bias) = partials.next().unwrap_or_default();
        for (gw_t, gb) in partials {
            weight_t.iter_mut().zip(gw_t).for_each(|(a, b)| *a += b);
            bias.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
        }
        // `k × co` back to burn's `co × k`.
        let k = self.patch();
        let mut weight = vec![0.0; self.weight_len()];
        for (kk, row) in weight_t.chunks_exact(co.max(1)).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                weight[c * k + kk] = v;
            }
        }
        ConvGrads {
            // SAFETY: every image's part was zeroed (then added to) above: the groups cover
            // all images.
            input: grad_x.map(|buffer| unsafe { assume_vec_written(buffer) }),
            weight,
            bias,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_image(
        &self,
        x_img: &[f32],
        w: &[f32],
        y_img: &[f32],
        gy_img: &[f32],
        mut gx_img: Option<&mut [f32]>,
        gw_t: &mut [f32],
        gb: &mut [f32],
        parallelism: Parallelism,
    ) {
        let (hw, k, co) = (self.positions(), self.patch(), self.out_channels);
        let block = self.block();
        let scratch_len = co * block + 2 * k * block;
        with_scratch(scratch_len, |scratch| {
            let (dy, rest) = scratch.split_at_mut(co * block);
            let (col, dcol) = rest.split_at_mut(k * block);
            for start in (0..hw).step_by(block) {
                let n = block.min(hw - start);
                let dy = &mut dy[..co * n];
                for c in 0..co {
                    gb[c] += simd::relu_grad_sum(
                        &mut dy[c * n..][..n],
                        &y_img[c * hw + start..][..n],
                        &gy_img[c * hw + start..][..n],
                    );
                }
                let col = &mut col[..k * n];
                self.im2col(x_img, start, n, col);
                // grad_w[co × k] += dy[co × n] · colᵀ[n × k], kept transposed (`k × co`):
                // the faster layout for the `gemm` crate.
                sgemm_transposed_dst(
                    co,
                    k,
                    n,
                    gw_t,
                    co,
                    true,
                    Strided::rows(dy, n),
                    Strided::transposed(col, n),
                    parallelism,
                );
                if let Some(gx) = gx_img.as_deref_mut() {
                    let dcol = &mut dcol[..k * n];
                    // dcol[k × n] = wᵀ[k × co] · dy[co × n]
                    sgemm(
                        k,
                        n,
                        co,
                        dcol,
                        n,
                        false,
                        Strided::transposed(w, k),
                        Strided::rows(dy, n),
                        parallelism,
                    );
                    self.col2im_add(dcol, start, n, gx);
                }
            }
        });
    }

    /// For each (channel, tap) row, the input pixels under output positions
    /// `start..start + n` (zeros outside the image).
    fn im2col(&self, x_img: &[f32], start: usize, n: usize, col: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        for ci in 0..self.in_channels {
            let plane = &x_img[ci * h * w..][..h * w];
            for tap in 0..9 {
                let row = &mut col[(ci * 9 + tap) * n..][..n];
                for_each_run(
                    start,
                    n,
                    w,
                    tap,
                    h,
                    |dst, run, src_row, lo, hi, src_start| {
                        let out = &mut row[dst..dst + run];
                        match src_row {
                            None => out.fill(0.0),
                            Some(sy) => {
                                out[..lo].fill(0.0);
                                out[lo..hi]
                                    .copy_from_slice(&plane[sy * w + src_start..][..hi - lo]);
                                out[hi..].fill(0.0);
                            }
                        }
                    },
                );
            }
        }
    }

    /// The adjoint of [`im2col`](Self::im2col): adds each column entry to its input pixel.
    fn col2im_add(&self, dcol: &[f32], start: usize, n: usize, gx_img: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        for ci in 0..self.in_channels {
            let plane = &mut gx_img[ci * h * w..][..h * w];
            for tap in 0..9 {
                let row = &dcol[(ci * 9 + tap) * n..][..n];
                for_each_run(
                    start,
                    n,
                    w,
                    tap,
                    h,
                    |dst, _run, src_row, lo, hi, src_start| {
                        if let Some(sy) = src_row {
                            let target = &mut plane[sy * w + src_start..][..hi - lo];
                            for (t, v) in target.iter_mut().zip(&row[dst + lo..dst + hi]) {
                                *t += v;
                            }
                        }
                    },
                );
            }
        }
    }
}

/// Walks output positions `start..start + n` one image row at a time. For tap `tap` (ky·3 +
/// kx) calls `f(dst, run, src_row, lo, hi, src_start)`: the run covers block offsets
/// `dst..dst + run`; `src_row` is the input row it reads (`None` above or below the image);
/// within the run, offsets `lo..hi` read input pixels `src_start..src_start + (hi - lo)` of
/// that row, the rest falls on the padding.
fn for_each_run(
    start: usize,
    n: usize,
    w: usize,
    tap: usize,
    h: usize,
    mut f: impl FnMut(usize, usize, Option<usize>, usize, usize, usize),
) {
    let (ky, kx) = (tap / 3, tap % 3);
    let mut dst = 0;
    while dst < n {
        let p = start + dst;
        let (oy, ox0) = (p / w, p % w);
        let run = (w - ox0).min(n - dst);
        // Output column ox reads input column ox + kx - 1: valid for 1 - kx <= ox < w + 1 - kx.
        let lo_ox = ox0.max(usize::from(kx == 0));
        let hi_ox = (ox0 + run).min(w + 1 - kx).max(lo_ox);
        let src_row = (oy + ky).checked_sub(1).filter(|&sy| sy < h);
        f(
            dst,
            run,
            src_row,
            lo_ox - ox0,
            hi_ox - ox0,
            (lo_ox + kx).saturating_sub(1),
        );
        dst += run;
    }
}
