//! 3×3 convolution, stride 1, `same` padding (one pixel of zeros), NCHW, with the bias and the
//! ReLU fused: `y = max(0, conv(x, w) + b)`, and its backward pass, as implicit GEMM
//! ([`crate::implicit`]): each image is copied once into a zero-padded buffer and the
//! kernels read their columns from it; no im2col matrix, no col2im.
//!
//! Each image is cut into blocks of about [`BLOCK_POSITIONS`] output positions (whole rows),
//! small enough that a block's outputs stay in the L2 cache while the bias and ReLU (or the
//! copy out of the padded layout) run over them:
//!
//! - forward: `y[:, block] = w · col`, `w` (`out × in·9`, burn's weight layout) packed in
//!   panels of the kernel's tile rows;
//! - backward, with `dy = grad_y ⊙ (y > 0)` written zero-padded: `grad_b += Σ dy`,
//!   `grad_w += dy · colᵀ` (in burn's layout directly) and, when the input needs a gradient,
//!   `grad_x = w' · col(dy)`: the same product as the forward pass over the padded `dy`, with
//!   `w'` the weights transposed (`in × out·9`) and each kernel turned by 180°.
//!
//! Images run in parallel on rayon's pool; with fewer images than threads (inference on one
//! image) the output channels are split instead. Weight and bias gradients are summed per
//! fixed group of images and the groups in a fixed order, and every kernel's sums run in an
//! order fixed by the shape, so results never depend on scheduling or on the number of
//! threads: training stays bit-for-bit reproducible on a machine. The instruction set is
//! [`Isa::active`]'s (AVX-512, AVX2 + FMA or portable); results differ between them in the
//! last bits.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::implicit::Padded;
use crate::isa::Isa;
use crate::products::{self, Arithmetic, Packed, Source, Wgrad};
use crate::scratch::with_scratch;
use crate::simd;
use crate::uninit::{assume_vec_written, uninit_vec, vec_written_by};

/// Bytes of a block's outputs and inputs together: 384 KiB, for a 1 MiB L2.
const BLOCK_BYTES: usize = 384 << 10;
/// Positions per block of the weight gradient (whose sums leave the registers after each).
const WGRAD_POSITIONS: usize = 4096;
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

    /// Output rows per block of a product with `channels` rows of output and input
    /// together: [`BLOCK_BYTES`] of them.
    fn block_rows(&self, geometry: &Padded, channels: usize) -> usize {
        (BLOCK_BYTES / (channels.max(1) * geometry.wp * 4)).clamp(1, self.height.max(1))
    }

    /// The row ranges of an image's blocks.
    fn row_blocks(
        &self,
        geometry: &Padded,
        channels: usize,
    ) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (rows, height) = (self.block_rows(geometry, channels), self.height);
        (0..height)
            .step_by(rows)
            .map(move |r| (r, (r + rows).min(height)))
    }

    /// Panics unless the input and weight lengths match the shape.
    pub(crate) fn check(&self, x: &[f32], w: &[f32]) {
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

    /// `max(0, conv(x, w) + b)`, on [`Isa::active`]'s instruction set.
    ///
    /// # Panics
    /// When a slice's length does not match the shape.
    pub fn forward_relu(&self, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        self.forward_relu_on(Isa::active(), x, w, b)
    }

    /// [`forward_relu`](Self::forward_relu) in the arithmetic `arithmetic` (an [`Isa`] for
    /// `f32`).
    ///
    /// # Panics
    /// When a slice's length does not match the shape, or this CPU lacks the arithmetic.
    pub fn forward_relu_on(
        &self,
        arithmetic: impl Into<Arithmetic>,
        x: &[f32],
        w: &[f32],
        b: &[f32],
    ) -> Vec<f32> {
        let arithmetic = arithmetic.into();
        self.check(x, w);
        assert_eq!(
            b.len(),
            self.out_channels,
            "conv3x3: bias length for {self:?}"
        );
        assert!(
            arithmetic.available(),
            "conv3x3: this CPU lacks {arithmetic:?}"
        );
        let (hw, ci, co) = (self.positions(), self.in_channels, self.out_channels);
        if self.output_len() == 0 {
            return Vec::new();
        }
        let geometry = Padded::new(self.height, self.width);
        let a = Packed::new(arithmetic, &geometry, co, ci, |row, c, tap| {
            w[(row * ci + c) * 9 + tap]
        });
        let mr = a.rows_per_panel();
        // Channels per task: all of them, or (fewer images than threads) a share of them.
        let threads = rayon::current_num_threads();
        let chunk = if self.batch >= threads {
            co
        } else {
            co.div_ceil(threads).div_ceil(mr) * mr
        };
        let stride = products::stride(
            arithmetic,
            self.block_rows(&geometry, ci + co) * geometry.wp,
        );
        let copies = arithmetic.pairs_len(&geometry, ci);
        let scratch = geometry.len(ci) + copies + chunk.div_ceil(mr) * mr * stride;
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(co * hw)
                .zip(x.par_chunks(ci * hw))
                .for_each(|(y_img, x_img)| {
                    y_img
                        .par_chunks_mut(chunk * hw)
                        .enumerate()
                        .for_each(|(part, y_part)| {
                            let first = part * chunk;
                            let channels = y_part.len() / hw;
                            let panels = first / mr..(first + channels).div_ceil(mr);
                            with_scratch(scratch, |scratch| {
                                let (padded, rest) = scratch.split_at_mut(geometry.len(ci));
                                let (copies, out) = rest.split_at_mut(copies);
                                geometry.pad(x_img, ci, padded);
                                let src = Source::new(arithmetic, &geometry, ci, padded, copies);
                                for (r0, r1) in self.row_blocks(&geometry, ci + co) {
                                    let positions = (r0 * geometry.wp, (r1 - r0) * geometry.wp);
                                    let stride = products::multiply(
                                        arithmetic,
                                        &a,
                                        panels.clone(),
                                        src,
                                        positions,
                                        out,
                                    );
                                    for c in 0..channels {
                                        let bias = b[first + c];
                                        for y in r0..r1 {
                                            simd::bias_relu_into(
                                                &mut y_part[c * hw + y * self.width..]
                                                    [..self.width],
                                                &out[c * stride + (y - r0) * geometry.wp..]
                                                    [..self.width],
                                                bias,
                                            );
                                        }
                                    }
                                }
                            });
                        });
                });
        };
        // SAFETY: the channel parts of every image cover all `co` rows, the row blocks all
        // `height` rows of each, and each row's `width` outputs are written by `bias_relu_into`.
        unsafe { vec_written_by(self.output_len(), fill) }
    }

    /// The gradients of [`forward_relu`](Self::forward_relu) given its input `x`, weight `w`,
    /// output `y` and the output's gradient `grad_y`; `∂L/∂x` only when `input_grad`. On
    /// [`Isa::active`]'s instruction set.
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
        self.backward_relu_on(Isa::active(), x, w, y, grad_y, input_grad)
    }

    /// [`backward_relu`](Self::backward_relu) in the arithmetic `arithmetic` (an [`Isa`] for
    /// `f32`).
    ///
    /// # Panics
    /// When a slice's length does not match the shape, or this CPU lacks the arithmetic.
    pub fn backward_relu_on(
        &self,
        arithmetic: impl Into<Arithmetic>,
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
        let arithmetic = arithmetic.into();
        assert!(
            arithmetic.available(),
            "conv3x3: this CPU lacks {arithmetic:?}"
        );
        let (hw, co, ci) = (self.positions(), self.out_channels, self.in_channels);
        let geometry = Padded::new(self.height, self.width);
        // grad_x = w' · col(dy): w' is `ci × co·9`, w'[i, (c, t)] = w[c, i, 8 - t].
        let flipped = input_grad.then(|| {
            Packed::new(arithmetic, &geometry, ci, co, |i, c, tap| {
                w[(c * ci + i) * 9 + 8 - tap]
            })
        });
        let context = Backward {
            shape: *self,
            arithmetic,
            geometry,
            x_offsets: geometry.offsets(ci),
            flipped: flipped.as_ref(),
        };
        self.sum_over_images(input_grad, |image, gx, gw, gb| {
            let at = |len: usize| image * len..(image + 1) * len;
            context.image(
                &x[at(ci * hw)],
                &y[at(co * hw)],
                &grad_y[at(co * hw)],
                gx,
                gw,
                gb,
            );
        })
    }

    /// The gradients of a backward pass that `image(n, grad_x, grad_w, grad_b)` computes image
    /// by image: it writes every element of image `n`'s input gradient into `grad_x` (given
    /// when `input_grad`) and adds its weight and bias gradients to `grad_w` and `grad_b`
    /// (in the layout it chooses, [`weight_len`](Self::weight_len) and `out` long). Images
    /// run in fixed groups on rayon's pool, each group's sums in image order, the groups'
    /// then added in order: the result does not depend on the number of threads.
    pub(crate) fn sum_over_images(
        &self,
        input_grad: bool,
        image: impl Fn(usize, Option<&mut [MaybeUninit<f32>]>, &mut [f32], &mut [f32]) + Sync,
    ) -> ConvGrads {
        let (hw, ci, co) = (self.positions(), self.in_channels, self.out_channels);
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
        let partials: Vec<(Vec<f32>, Vec<f32>)> = grad_x_groups
            .into_par_iter()
            .enumerate()
            .map(|(g, mut gx_group)| {
                let mut gw = vec![0.0; self.weight_len()];
                let mut gb = vec![0.0; co];
                for (i, n) in (bounds[g]..bounds[g + 1]).enumerate() {
                    let gx = gx_group
                        .as_deref_mut()
                        .map(|gx| &mut gx[i * ci * hw..][..ci * hw]);
                    image(n, gx, &mut gw, &mut gb);
                }
                (gw, gb)
            })
            .collect();
        let mut partials = partials.into_iter();
        let (mut weight, mut bias) = partials.next().unwrap_or_default();
        for (gw, gb) in partials {
            weight.iter_mut().zip(gw).for_each(|(a, b)| *a += b);
            bias.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
        }
        if weight.is_empty() {
            weight = vec![0.0; self.weight_len()];
            bias = vec![0.0; co];
        }
        ConvGrads {
            // SAFETY: every image's part was written by `image`: the groups cover all images.
            input: grad_x.map(|buffer| unsafe { assume_vec_written(buffer) }),
            weight,
            bias,
        }
    }
}

/// What the backward pass of every image shares.
struct Backward<'a> {
    shape: Conv3x3,
    arithmetic: Arithmetic,
    geometry: Padded,
    /// The column offsets into the padded input.
    x_offsets: Vec<usize>,
    /// The flipped, transposed weights, packed; `None` when no input gradient is asked.
    flipped: Option<&'a Packed>,
}

impl Backward<'_> {
    /// Adds one image's weight and bias gradients to `gw` and `gb` and writes its input
    /// gradient (every element) into `gx` when given.
    fn image(
        &self,
        x_img: &[f32],
        y_img: &[f32],
        gy_img: &[f32],
        gx: Option<&mut [MaybeUninit<f32>]>,
        gw: &mut [f32],
        gb: &mut [f32],
    ) {
        let (s, geometry, arithmetic) = (&self.shape, &self.geometry, self.arithmetic);
        let (ci, co, w, hw) = (s.in_channels, s.out_channels, s.width, s.positions());
        let (x_len, dy_len) = (geometry.len(ci), geometry.len(co));
        let stride = products::stride(arithmetic, s.block_rows(geometry, ci + co) * geometry.wp);
        let mr = arithmetic.tiles().conv_rows();
        let out_len = ci.div_ceil(mr) * mr * stride;
        let runs = arithmetic.runs_len(geometry, ci) + arithmetic.runs_len(geometry, co);
        let pairs = arithmetic.pairs_len(geometry, co);
        with_scratch(x_len + dy_len + runs + pairs + out_len, |scratch| {
            let (padded, rest) = scratch.split_at_mut(x_len);
            let (dy, rest) = rest.split_at_mut(dy_len);
            let (runs, rest) = rest.split_at_mut(runs);
            let (pairs, out) = rest.split_at_mut(pairs);
            geometry.pad(x_img, ci, padded);
            // dy = grad_y ⊙ (y > 0), zero-padded like the input; its sums are grad_b.
            geometry.zero_borders(co, dy);
            for (c, gb) in gb.iter_mut().enumerate() {
                for row in 0..s.height {
                    let at = c * hw + row * w;
                    *gb += simd::relu_grad_sum(
                        geometry.row_mut(dy, c, row),
                        &y_img[at..][..w],
                        &gy_img[at..][..w],
                    );
                }
            }
            // Past the last position `dy` reads zeros: whole vectors then, no scalar tail.
            let mut positions = geometry.positions();
            let vector = arithmetic.positions_per_vector();
            if geometry.zeros_after() >= vector {
                positions = positions.next_multiple_of(vector);
            }
            let wgrad = Wgrad::new(arithmetic, *geometry, &self.x_offsets, dy, padded, runs);
            for start in (0..positions).step_by(WGRAD_POSITIONS) {
                wgrad.add(start, WGRAD_POSITIONS.min(positions - start), gw);
            }
            let (Some(gx), Some(flipped)) = (gx, self.flipped) else {
                return;
            };
            let src = Source::new(arithmetic, geometry, co, dy, pairs);
            for (r0, r1) in s.row_blocks(geometry, ci + co) {
                let positions = (r0 * geometry.wp, (r1 - r0) * geometry.wp);
                let panels = 0..ci.div_ceil(mr);
                let stride = products::multiply(arithmetic, flipped, panels, src, positions, out);
                for c in 0..ci {
                    for row in r0..r1 {
                        let from = &out[c * stride + (row - r0) * geometry.wp..][..w];
                        for (to, &v) in gx[c * hw + row * w..][..w].iter_mut().zip(from) {
                            to.write(v);
                        }
                    }
                }
            }
        });
    }
}
