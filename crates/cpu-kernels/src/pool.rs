//! 2×2 max-pooling with stride 2 (no padding; an odd last row or column is dropped, as in
//! Keras's `MaxPooling2D` and burn's `MaxPool2d`), NCHW, and its backward pass.
//!
//! The backward pass sends each output's gradient to the first largest of its four inputs
//! (row-major order), recomputed from the input rather than stored.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::simd;
use crate::uninit::{vec_written_by, zeroed};

/// The shape of a 2×2 max-pool over `planes` (batch × channels) planes of `height × width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2x2 {
    /// Images × channels.
    pub planes: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
}

/// For each output of a 2×2 max-pool whose input is a ReLU's output, which input of its
/// window the gradient goes to — 0–3 in row-major order, the first largest — or that none
/// does, the largest not being positive (the ReLU's gradient is 0 there). Made by
/// [`MaxPool2x2::forward_winners`], one byte per output, for
/// [`Conv3x3::backward_relu_pool_on`](crate::Conv3x3::backward_relu_pool_on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Winners {
    pub(crate) codes: Vec<u8>,
}

impl Winners {
    /// Outputs of the pool it describes.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether it describes no output.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// Planes handled per parallel task.
const PLANES_PER_TASK: usize = 8;

impl MaxPool2x2 {
    /// Output height and width.
    pub fn output_size(&self) -> (usize, usize) {
        (self.height / 2, self.width / 2)
    }

    /// Values in the input.
    pub fn input_len(&self) -> usize {
        self.planes * self.height * self.width
    }

    /// Values in the output.
    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.output_size();
        self.planes * oh * ow
    }

    /// The pooled values.
    ///
    /// # Panics
    /// When `x` does not have [`input_len`](Self::input_len) values.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.forward_winners(x).0
    }

    /// The pooled values, and for each which input of its window won ([`Winners`]): all the
    /// backward pass of a ReLU + pool needs, instead of the ReLU's output.
    ///
    /// # Panics
    /// When `x` does not have [`input_len`](Self::input_len) values.
    pub fn forward_winners(&self, x: &[f32]) -> (Vec<f32>, Winners) {
        assert_eq!(
            x.len(),
            self.input_len(),
            "max_pool2x2: input length for {self:?}"
        );
        let (oh, ow) = self.output_size();
        let plane_in = self.height * self.width;
        let mut codes = vec![0u8; self.output_len()];
        let fill = |y: &mut [MaybeUninit<f32>]| {
            if y.is_empty() {
                return;
            }
            let plane_out = oh * ow;
            y.par_chunks_mut(plane_out * PLANES_PER_TASK)
                .zip(codes.par_chunks_mut(plane_out * PLANES_PER_TASK))
                .zip(x.par_chunks(plane_in * PLANES_PER_TASK))
                .for_each(|((y_planes, code_planes), x_planes)| {
                    let planes = y_planes
                        .chunks_mut(plane_out)
                        .zip(code_planes.chunks_mut(plane_out))
                        .zip(x_planes.chunks(plane_in));
                    for ((out, codes), plane) in planes {
                        for oy in 0..oh {
                            let (top, bottom) = plane[2 * oy * self.width..].split_at(self.width);
                            simd::pool_row_winners(
                                top,
                                bottom,
                                &mut out[oy * ow..][..ow],
                                &mut codes[oy * ow..][..ow],
                            );
                        }
                    }
                });
        };
        // SAFETY: the chunks cover every plane and every (row, column) of each is written.
        let pooled = unsafe { vec_written_by(self.output_len(), fill) };
        (pooled, Winners { codes })
    }

    /// The input's gradient given the input `x` and the output's gradient `grad_y`.
    ///
    /// # Panics
    /// When a slice's length does not match the shape.
    pub fn backward(&self, x: &[f32], grad_y: &[f32]) -> Vec<f32> {
        assert_eq!(
            x.len(),
            self.input_len(),
            "max_pool2x2: input length for {self:?}"
        );
        assert_eq!(
            grad_y.len(),
            self.output_len(),
            "max_pool2x2: gradient length for {self:?}"
        );
        let (oh, ow) = self.output_size();
        let plane_in = self.height * self.width;
        let (w, rows) = (self.width, 2 * oh);
        let fill = |grad_x: &mut [MaybeUninit<f32>]| {
            if grad_y.is_empty() {
                zeroed(grad_x);
                return;
            }
            grad_x
                .par_chunks_mut(plane_in * PLANES_PER_TASK)
                .zip(x.par_chunks(plane_in * PLANES_PER_TASK))
                .zip(grad_y.par_chunks(oh * ow * PLANES_PER_TASK))
                .for_each(|((gx_planes, x_planes), gy_planes)| {
                    let planes = gx_planes
                        .chunks_mut(plane_in)
                        .zip(x_planes.chunks(plane_in))
                        .zip(gy_planes.chunks(oh * ow));
                    for ((gx, plane), gy) in planes {
                        for oy in 0..oh {
                            let (top, bottom) = plane[2 * oy * w..].split_at(w);
                            let (gx_top, gx_bottom) = gx[2 * oy * w..][..2 * w].split_at_mut(w);
                            // The window rows' first 2·ow values, then an odd last column.
                            let (gx_top, top_rest) = gx_top.split_at_mut(2 * ow);
                            let (gx_bottom, bottom_rest) = gx_bottom.split_at_mut(2 * ow);
                            let gy = &gy[oy * ow..][..ow];
                            simd::pool_row_backward(top, bottom, gy, gx_top, gx_bottom);
                            zeroed(top_rest);
                            zeroed(bottom_rest);
                        }
                        // An odd last row is in no window.
                        zeroed(&mut gx[rows * w..]);
                    }
                });
        };
        // SAFETY: every chunk's planes are written whole: each window row pair by
        // `pool_row_backward` and zeros, an odd last row by zeros; the chunks (or the
        // empty-gradient branch) cover the whole buffer.
        unsafe { vec_written_by(self.input_len(), fill) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_and_routes_gradients_to_the_maximum() {
        // One 3×5 plane: the last row and column are dropped.
        let x = [
            1.0, 5.0, 2.0, 2.0, 9.0, //
            3.0, 4.0, 7.0, 2.0, 9.0, //
            9.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let pool = MaxPool2x2 {
            planes: 1,
            height: 3,
            width: 5,
        };
        assert_eq!(pool.forward(&x), [5.0, 7.0]);
        let gx = pool.backward(&x, &[10.0, 20.0]);
        let mut want = [0.0; 15];
        want[1] = 10.0;
        want[7] = 20.0;
        assert_eq!(gx, want);
        // Ties go to the first in row-major order.
        let tie = MaxPool2x2 {
            planes: 1,
            height: 2,
            width: 2,
        };
        assert_eq!(tie.backward(&[0.0; 4], &[1.0]), [1.0, 0.0, 0.0, 0.0]);
    }
}
