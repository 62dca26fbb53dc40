//! CPU kernels for shardfeed's seed CNN, on plain `f32` slices: no burn, no tensors.
//!
//! [`Conv3x3`] is the network's convolution (3×3, stride 1, `same` padding, NCHW) with its
//! bias and ReLU fused, forward and backward, as implicit GEMM (register-tiled kernels that
//! read the zero-padded image itself, no im2col matrix) over both cores, on the best
//! instruction set the CPU has ([`Isa`]: AVX-512, AVX2 + FMA or portable); [`MaxPool2x2`] is its 2×2 max-pool, and
//! [`Conv3x3::backward_relu_pool_on`] the backward pass of a convolution and the pool after
//! it together, from the pool's [`Winners`] alone, visiting only the positions each window's
//! gradient goes to. `shardfeed-model` plugs these kernels into burn as
//! a custom operation; this crate knows nothing of burn. [`BlockCache`] is the global
//! allocator that keeps large tensors' memory from being page-faulted in again every step.
//!
//! ```
//! use shardfeed_cpu_kernels::Conv3x3;
//!
//! let shape = Conv3x3 { batch: 1, in_channels: 1, out_channels: 1, height: 2, width: 2 };
//! let x = [1.0, 2.0, 3.0, 4.0];
//! let mut w = [0.0; 9];
//! w[4] = 1.0; // the centre tap: identity
//! let y = shape.forward_relu(&x, &w, &[-2.5]);
//! assert_eq!(y, [0.0, 0.0, 0.5, 1.5]);
//! ```

#![deny(missing_docs)]

mod alloc;
mod bf16;
mod conv;
mod implicit;
mod isa;
mod lanes;
mod layout;
mod pool;
mod pooled;
mod products;
mod scratch;
mod simd;
mod uninit;

pub use alloc::BlockCache;
pub use conv::{Conv3x3, ConvGrads};
pub use isa::Isa;
pub use pool::{MaxPool2x2, Winners};
pub use products::Arithmetic;
