//! The backward pass of a convolution + ReLU whose output goes straight into a 2×2 max-pool,
//! computed from the pool's gradient without ever forming the convolution's.
//!
//! The pool hands each window's gradient to one of its four inputs (the first largest:
//! [`simd::window_winner`]) and the ReLU keeps it only where that input is positive, so the
//! convolution's output gradient is zero in at least three positions of every four. The
//! dense backward pass multiplies all those zeros; this one visits only the positions that
//! won their window, one list of `(position, gradient)` per output channel and band of rows:
//!
//! - weight gradient: `grad_w[o, ·] += g · patch(position)`, the input's 3×3 patch around the
//!   position, read from the input stored channels-last and zero-padded (HWC), where a patch
//!   row is `3·in` consecutive floats; register accumulators hold `grad_w[o, ·]` while the
//!   positions of `o` go by;
//! - input gradient: `grad_x[patch(position)] += g · w[o, ·]`, scattered into a channels-last
//!   buffer with `w[o, ·]` in registers, then copied back to NCHW;
//! - bias gradient: the sum of the kept gradients.
//!
//! A quarter of the multiply-adds (fewer where the ReLU is zero), as vectors of input
//! channels, when the channel count is a multiple of the vector length; otherwise (and for
//! [`Arithmetic::Bf16Reference`]) the pool's gradient is expanded and the dense pass runs.
//! In bf16 the operands (input, weights, gradients) are rounded to bf16 as `vdpbf16ps`
//! rounds them and multiplied in `f32`, where their products are exact: the instruction's
//! arithmetic with the sums in another order. Sums run in an order fixed by the shape and
//! the data, never by the threads.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use crate::bf16;
use crate::conv::{Conv3x3, ConvGrads};
use crate::isa::Isa;
#[cfg(target_arch = "x86_64")]
use crate::lanes::{Avx2, Avx512};
use crate::lanes::{Lanes, Portable};
use crate::layout;
use crate::pool::{MaxPool2x2, Winners};
use crate::products::Arithmetic;
use crate::scratch::with_scratch;
use crate::simd;

/// Vectors of a patch row kept in registers at once: a 3×3 patch of 16 channels in AVX-512.
const CHUNK: usize = 9;
/// Bytes of the channels-last input rows one band of windows reads: they stay in L2 (32 KiB
/// to 512 KiB measured alike on Zen 4's 1 MiB).
const BAND_BYTES: usize = 512 << 10;

/// The positions that won their window: where each one's patch starts in the channels-last
/// padded buffer, and its gradient (with room for one vector's worth more).
#[derive(Default)]
struct Kept {
    at: Vec<u32>,
    grad: Vec<f32>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

impl Conv3x3 {
    /// The 2×2 max-pool over the shape's output.
    fn pool(&self) -> MaxPool2x2 {
        MaxPool2x2 {
            planes: self.batch * self.out_channels,
            height: self.height,
            width: self.width,
        }
    }

    /// `max_pool2x2(max(0, conv(x, w) + b))`, and which input of each window won (all the
    /// backward pass needs of the convolution's output, which is then dropped).
    ///
    /// # Panics
    /// When a slice's length does not match the shape, or this CPU lacks the arithmetic.
    pub fn forward_relu_pool_on(
        &self,
        arithmetic: impl Into<Arithmetic>,
        x: &[f32],
        w: &[f32],
        b: &[f32],
    ) -> (Vec<f32>, Winners) {
        let y = self.forward_relu_on(arithmetic, x, w, b);
        self.pool().forward_winners(&y)
    }

    /// The gradients of [`forward_relu_pool_on`](Self::forward_relu_pool_on) given `x`, `w`,
    /// its winners and the pool's output gradient `grad_p` (`batch × out × ⌊height/2⌋ ×
    /// ⌊width/2⌋`): what [`MaxPool2x2::backward`] followed by
    /// [`backward_relu_on`](Self::backward_relu_on) computes, up to the order of the sums.
    ///
    /// # Panics
    /// When a slice's length does not match the shape, or this CPU lacks the arithmetic.
    pub fn backward_relu_pool_on(
        &self,
        arithmetic: impl Into<Arithmetic>,
        x: &[f32],
        w: &[f32],
        winners: &Winners,
        grad_p: &[f32],
        input_grad: bool,
    ) -> ConvGrads {
        let arithmetic = arithmetic.into();
        let pool = self.pool();
        assert_eq!(
            grad_p.len(),
            pool.output_len(),
            "conv3x3 + pool: gradient length for {self:?}"
        );
        assert_eq!(
            winners.len(),
            pool.output_len(),
            "conv3x3 + pool: winners for {self:?}"
        );
        // bf16: the operands rounded to bf16 and multiplied in `f32`, where such products
        // are exact: the arithmetic of `vdpbf16ps` with the sums in another order.
        let (isa, bf16) = match arithmetic {
            Arithmetic::F32(isa) => (Some(isa), false),
            Arithmetic::Bf16 => (Some(Isa::active()), true),
            Arithmetic::Bf16Reference => (None, true),
        };
        let lanes = match isa {
            Some(Isa::Avx512) => 16,
            Some(_) => 8,
            None => 0,
        };
        let (ci, co) = (self.in_channels, self.out_channels);
        let padded = (self.height + 2) * (self.width + 2) * ci;
        if lanes == 0 || ci % lanes != 0 || pool.output_len() == 0 || padded > u32::MAX as usize {
            let (kept, grad_y) = self.expand(winners, grad_p);
            return self.backward_relu_on(arithmetic, x, w, &kept, &grad_y, input_grad);
        }
        self.check(x, w);
        assert!(
            arithmetic.available(),
            "conv3x3: this CPU lacks {arithmetic:?}"
        );
        let isa = isa.expect("lanes come from an instruction set");
        let sparse = Sparse::new(*self, lanes, w, bf16);
        let (hw, windows) = (self.height * self.width, pool.output_len() / self.batch);
        let grads = self.sum_over_images(input_grad, |n, gx, gw, gb| {
            let image = Image {
                x: &x[n * ci * hw..][..ci * hw],
                codes: &winners.codes[n * windows..][..windows],
                grad_p: &grad_p[n * windows..][..windows],
            };
            sparse.image(isa, &image, gx, gw, gb);
        });
        // The weight gradient was summed in a patch's layout: back to burn's.
        let mut weight = vec![0.0; grads.weight.len()];
        for_each_tap(co, ci, |burns, patch| weight[burns] = grads.weight[patch]);
        ConvGrads { weight, ..grads }
    }

    /// The convolution's output gradient, for the dense pass: each window's gradient at its
    /// winner, zeros elsewhere, and in place of the ReLU's output a mask that is positive
    /// exactly there.
    fn expand(&self, winners: &Winners, grad_p: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut kept, mut grad_y) = (vec![0.0; self.output_len()], vec![0.0; self.output_len()]);
        let (h, w) = (self.height, self.width);
        let (oh, ow) = (h / 2, w / 2);
        for (i, (&code, &g)) in winners.codes.iter().zip(grad_p).enumerate() {
            if code == simd::NO_WINNER {
                continue;
            }
            let (plane, wy, wx) = (i / (oh * ow), i / ow % oh, i % ow);
            let at = plane * h * w
                + (2 * wy + usize::from(code / 2)) * w
                + 2 * wx
                + usize::from(code % 2);
            kept[at] = 1.0;
            grad_y[at] = g;
        }
        (kept, grad_y)
    }
}

/// Calls `f(burns, patch)` for every weight of `out × in` 3×3 kernels with its index in burn's
/// layout, `[out, in, ky, kx]`, and in a patch's, `[out, ky, kx, in]` (the channels-last
/// input's order, in which the sparse kernels read and sum them).
fn for_each_tap(out: usize, ci: usize, mut f: impl FnMut(usize, usize)) {
    for o in 0..out {
        for c in 0..ci {
            for tap in 0..9 {
                f((o * ci + c) * 9 + tap, (o * 9 + tap) * ci + c);
            }
        }
    }
}

/// `v` rounded to bf16 when `bf16`, as the instruction rounds its operands.
#[inline(always)]
fn round(bf16: bool, v: f32) -> f32 {
    if bf16 { bf16::round(v) } else { v }
}

/// One image's slices.
struct Image<'a> {
    x: &'a [f32],
    /// The pool's winners, one per window.
    codes: &'a [u8],
    grad_p: &'a [f32],
}

/// What every image's pass shares.
struct Sparse {
    shape: Conv3x3,
    /// Whether the products' operands are rounded to bf16.
    bf16: bool,
    /// The weights as `[out, ky, kx, in]`: a patch's layout.
    taps: Vec<f32>,
    /// Where each vector of a patch starts, from its top-left corner, in the channels-last
    /// padded buffer: `9·in / lanes` of them, chunk after chunk.
    offsets: Vec<usize>,
    /// Window rows per band.
    band: usize,
}

impl Sparse {
    fn new(shape: Conv3x3, lanes: usize, w: &[f32], bf16: bool) -> Sparse {
        let (ci, co) = (shape.in_channels, shape.out_channels);
        let mut taps = vec![0.0; w.len()];
        for_each_tap(co, ci, |burns, patch| taps[patch] = round(bf16, w[burns]));
        let row = (shape.width + 2) * ci;
        let offsets = (0..9 * ci / lanes)
            .map(|v| {
                let flat = v * lanes;
                flat / (3 * ci) * row + flat % (3 * ci)
            })
            .collect();
        let band = (BAND_BYTES / (4 * row)).saturating_sub(2) / 2;
        Sparse {
            shape,
            bf16,
            taps,
            offsets,
            band: band.max(1),
        }
    }

    /// One input image, for its channels-last copies.
    fn layout(&self) -> layout::Image {
        layout::Image {
            channels: self.shape.in_channels,
            height: self.shape.height,
            width: self.shape.width,
        }
    }

    /// Adds one image's weight gradient (as `[out, ky, kx, in]`) and bias gradient to `gw`
    /// and `gb`; writes its input gradient into `gx` when given.
    fn image(
        &self,
        isa: Isa,
        image: &Image<'_>,
        gx: Option<&mut [MaybeUninit<f32>]>,
        gw: &mut [f32],
        gb: &mut [f32],
    ) {
        // Each buffer starts on a cache line: a vector never straddles two.
        let len = self.layout().padded_len().next_multiple_of(16);
        let scratch = if gx.is_some() { 2 * len } else { len };
        let mut kept = KEPT.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
        with_scratch(scratch + 16, |scratch| {
            let skew = scratch.as_ptr().align_offset(64).min(16);
            let (xt, dxt) = scratch[skew..].split_at_mut(len);
            let starts = self.keep(isa, image, &mut kept, gb);
            // The products' operand, once (the bias gradient above summed them unrounded).
            if self.bf16 {
                let count = starts.last().copied().unwrap_or(0);
                kept.grad[..count]
                    .iter_mut()
                    .for_each(|g| *g = bf16::round(*g));
            }
            let pass = Pass {
                sparse: self,
                kept: &kept,
                starts: &starts,
            };
            self.layout()
                .write_channels_last(isa, image.x, self.bf16, xt);
            // SAFETY: `offsets` and every kept position stay inside a padded image (`new`,
            // `keep`), which `xt` and `dxt` hold; the CPU has `isa`.
            unsafe { pass.run(isa, xt, gw, false) };
            if let Some(gx) = gx {
                let dxt = &mut dxt[..len];
                dxt.fill(0.0);
                // SAFETY: as above.
                unsafe { pass.run(isa, dxt, gw, true) };
                self.layout().write_channels_first(isa, dxt, gx);
            }
        });
        KEPT.with(|slot| *slot.borrow_mut() = kept);
    }

    /// Lists the positions that won their window with a positive output, band by band and
    /// in each band channel by channel (`starts[band · out + o]` is where each list begins,
    /// one more at the end); adds their gradients to `gb`.
    fn keep(&self, isa: Isa, image: &Image<'_>, kept: &mut Kept, gb: &mut [f32]) -> Vec<usize> {
        let s = &self.shape;
        let (w, co) = (s.width, s.out_channels);
        let (oh, ow) = (s.height / 2, s.width / 2);
        let room = co * oh * ow + 16;
        kept.at.resize(room, 0);
        kept.grad.resize(room, 0.0);
        let bands = oh.div_ceil(self.band);
        let mut starts = Vec::with_capacity(bands * co + 1);
        let mut count = 0;
        for band in 0..bands {
            let rows = band * self.band..((band + 1) * self.band).min(oh);
            for (o, gb) in gb.iter_mut().enumerate() {
                starts.push(count);
                for wy in rows.clone() {
                    let windows = (o * oh + wy) * ow..(o * oh + wy + 1) * ow;
                    let row = Row {
                        codes: &image.codes[windows.clone()],
                        grads: &image.grad_p[windows],
                        at: (2 * wy * (w + 2) * s.in_channels) as u32,
                        next_row: ((w + 2) * s.in_channels) as u32,
                        channels: s.in_channels as u32,
                    };
                    count = row.keep(isa, kept, count, gb);
                }
            }
        }
        starts.push(count);
        starts
    }
}

/// One row of windows of one output channel.
struct Row<'a> {
    /// The pool's winner of each window ([`Winners`]).
    codes: &'a [u8],
    /// The pool's gradient for each window.
    grads: &'a [f32],
    /// The channels-last offset of the top row's first pixel.
    at: u32,
    /// The channels-last distance from one row to the next.
    next_row: u32,
    /// Channels per pixel (channels-last).
    channels: u32,
}

impl Row<'_> {
    /// Appends the row's kept positions to `kept` from `count` on (even windows before odd
    /// ones: consecutive patches then never overlap, so the input gradient's additions do not
    /// wait on each other's stores) and adds their gradients to `gb`; returns the new count.
    fn keep(&self, isa: Isa, kept: &mut Kept, mut count: usize, gb: &mut f32) -> usize {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // SAFETY: the CPU has AVX-512F (`isa`); `kept` has room for every window of the
            // channel and 16 more.
            (done, count) = unsafe { self.keep_avx512(kept, count, gb) };
        }
        let _ = isa;
        let ow = self.grads.len();
        for wx in (done..ow).step_by(2).chain((done + 1..ow).step_by(2)) {
            let code = self.codes[wx];
            let (dy, dx) = (u32::from(code / 2), 2 * wx as u32 + u32::from(code % 2));
            // Written always, counted only when some input won.
            kept.at[count] = self.at + dy * self.next_row + dx * self.channels;
            kept.grad[count] = self.grads[wx];
            if code != simd::NO_WINNER {
                *gb += self.grads[wx];
                count += 1;
            }
        }
        count
    }

    /// [`Row::keep`] for the first `16·⌊windows/16⌋` windows, 16 at a time (even lanes
    /// before odd ones in each); returns how many windows, and the new count.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `kept` must have room for 16 past the last window.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn keep_avx512(
        &self,
        kept: &mut Kept,
        mut count: usize,
        gb: &mut f32,
    ) -> (usize, usize) {
        use std::arch::x86_64::*;
        const EVEN_FIRST: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15];
        let whole = self.grads.len() / 16 * 16;
        assert!(kept.at.len() >= count + whole + 16 && kept.grad.len() == kept.at.len());
        // SAFETY: every load reads 16 codes or gradients of `windows`; every store lands
        // below `count + 16` ≤ the room asserted above.
        unsafe {
            let order = _mm512_loadu_epi32(EVEN_FIRST.as_ptr());
            let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let none = _mm512_set1_epi32(i32::from(simd::NO_WINNER));
            let mut sum = _mm512_setzero_ps();
            for wx in (0..whole).step_by(16) {
                let code =
                    _mm512_cvtepu8_epi32(_mm_loadu_si128(self.codes.as_ptr().add(wx).cast()));
                let down = _mm512_srli_epi32::<1>(code);
                let right = _mm512_and_si512(code, _mm512_set1_epi32(1));
                let column = _mm512_add_epi32(
                    _mm512_slli_epi32::<1>(_mm512_add_epi32(_mm512_set1_epi32(wx as i32), lane)),
                    right,
                );
                let at = _mm512_add_epi32(
                    _mm512_set1_epi32(self.at as i32),
                    _mm512_add_epi32(
                        _mm512_mullo_epi32(down, _mm512_set1_epi32(self.next_row as i32)),
                        _mm512_mullo_epi32(column, _mm512_set1_epi32(self.channels as i32)),
                    ),
                );
                let grad = _mm512_loadu_ps(self.grads.as_ptr().add(wx));
                let (at, grad, code) = (
                    _mm512_permutexvar_epi32(order, at),
                    _mm512_permutexvar_ps(order, grad),
                    _mm512_permutexvar_epi32(order, code),
                );
                let keep = _mm512_cmpneq_epi32_mask(code, none);
                _mm512_storeu_epi32(
                    kept.at.as_mut_ptr().add(count).cast(),
                    _mm512_maskz_compress_epi32(keep, at),
                );
                _mm512_storeu_ps(
                    kept.grad.as_mut_ptr().add(count),
                    _mm512_maskz_compress_ps(keep, grad),
                );
                sum = _mm512_mask_add_ps(sum, keep, sum, grad);
                count += keep.count_ones() as usize;
            }
            let mut lanes = [0.0f32; 16];
            _mm512_storeu_ps(lanes.as_mut_ptr(), sum);
            *gb += lanes.iter().sum::<f32>();
        }
        (whole, count)
    }
}

/// The kept positions of one image, ready for the two products.
struct Pass<'a> {
    sparse: &'a Sparse,
    kept: &'a Kept,
    starts: &'a [usize],
}

impl Pass<'_> {
    /// The weight gradient (`scatter` false: `buffer` is the padded input) or the input
    /// gradient (`scatter` true: `buffer` is the padded input gradient, added to).
    ///
    /// # Safety
    /// Every kept position plus every offset, plus a vector, must lie inside `buffer`; the
    /// CPU must have `isa`.
    unsafe fn run(&self, isa: Isa, buffer: &mut [f32], gw: &mut [f32], scatter: bool) {
        // SAFETY: the caller's contract.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => run_avx512(self, buffer, gw, scatter),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => run_avx2(self, buffer, gw, scatter),
                #[cfg(not(target_arch = "x86_64"))]
                Isa::Avx512 | Isa::Avx2Fma => unreachable!("no x86 kernels on this target"),
                Isa::Portable => self.lanes::<Portable>(buffer, gw, scatter),
            }
        }
    }

    /// [`Pass::run`] over vectors `V`, chunk by chunk of [`CHUNK`] vectors of a patch.
    #[inline(always)]
    unsafe fn lanes<V: Lanes<Elem = f32, In = V>>(
        &self,
        buffer: &mut [f32],
        gw: &mut [f32],
        scatter: bool,
    ) {
        let s = &self.sparse;
        let (patch, co) = (9 * s.shape.in_channels, s.shape.out_channels);
        let bands = (self.starts.len() - 1) / co;
        let base = buffer.as_mut_ptr();
        for band in 0..bands {
            for (chunk, offsets) in s.offsets.chunks_exact(CHUNK).enumerate() {
                let offsets: &[usize; CHUNK] = offsets.try_into().expect("whole chunks");
                for o in 0..co {
                    let kept = self.starts[band * co + o]..self.starts[band * co + o + 1];
                    let (places, grads) = (&self.kept.at[kept.clone()], &self.kept.grad[kept]);
                    let at = o * patch + chunk * CHUNK * V::L;
                    if scatter {
                        let taps = &s.taps[at..][..CHUNK * V::L];
                        // SAFETY: `taps` holds `CHUNK` vectors; the caller's contract.
                        unsafe {
                            // (A loop, not `array::from_fn`: see `lanes::unwrap16`.)
                            let mut w = [V::zero(); CHUNK];
                            for (j, w) in w.iter_mut().enumerate() {
                                *w = V::load(taps.as_ptr().add(j * V::L));
                            }
                            for (&at, g) in places.iter().zip(grads) {
                                let g = V::splat(g);
                                let p = base.add(at as usize);
                                for j in 0..CHUNK {
                                    let q = p.add(offsets[j]);
                                    V::load(q).mac(g, w[j]).store(q);
                                }
                            }
                        }
                    } else {
                        let mut acc = [V::zero(); CHUNK];
                        // SAFETY: the caller's contract.
                        unsafe {
                            for (&at, g) in places.iter().zip(grads) {
                                let g = V::splat(g);
                                let p = base.add(at as usize);
                                for j in 0..CHUNK {
                                    acc[j] = acc[j].mac(g, V::load(p.add(offsets[j])));
                                }
                            }
                        }
                        let g = &mut gw[at..][..CHUNK * V::L];
                        let mut sums = [0.0f32; 16];
                        for (j, acc) in acc.iter().enumerate() {
                            // SAFETY: `sums` holds 16 ≥ `L` floats.
                            unsafe { acc.store(sums.as_mut_ptr()) };
                            for (g, s) in g[j * V::L..][..V::L].iter_mut().zip(&sums) {
                                *g += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(pass: &Pass<'_>, buffer: &mut [f32], gw: &mut [f32], scatter: bool) {
    // SAFETY: the caller's contract.
    unsafe { pass.lanes::<Avx512>(buffer, gw, scatter) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(pass: &Pass<'_>, buffer: &mut [f32], gw: &mut [f32], scatter: bool) {
    // SAFETY: the caller's contract.
    unsafe { pass.lanes::<Avx2>(buffer, gw, scatter) }
}
