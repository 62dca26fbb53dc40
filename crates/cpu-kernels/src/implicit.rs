//! Implicit GEMM for the 3×3 `same` convolution: the products read the zero-padded image
//! itself instead of an im2col matrix.
//!
//! An image's channels are stored padded ([`Padded`]): rows `wp = width + 1` apart, each
//! row's one zero column serving as the right pad of the row before and the left pad of its
//! own, a zero row above and below. In that layout the input pixel under output position
//! `(oy, ox)` and kernel tap `(ky, kx)` of channel `c` sits at `c·plane + q + ky·wp + kx`,
//! where `q = oy·wp + ox`: for a fixed tap, consecutive `q` read consecutive floats. So the
//! column matrix of im2col is never built: its row `(c, tap)` is the padded image read from
//! offset `c·plane + ky·wp + kx` ([`Padded::offsets`]), and a kernel loads its vectors
//! straight from there. Positions `q` with `ox = width` (one per row) are computed too and
//! thrown away: 0.6 % more work at 160 px, 5 % at 20.
//!
//! Two kernels, each written once over [`Lanes`] and compiled for AVX-512, AVX2 + FMA and
//! plain Rust ([`Isa`]):
//!
//! - [`conv_block`]: `out[m × q] = a[m × k] · col[k × q]`, register tiles of `MR` rows ×
//!   `NR` vectors of positions, `a` packed in panels of `MR` rows ([`pack`]). The forward
//!   pass (`a` = the weights, `col` from the input) and the input gradient (`a` = the
//!   weights transposed and the kernel flipped, `col` from the padded output gradient).
//! - [`wgrad_block`]: `g[m × k] += dy[m × q] · col[k × q]ᵀ`, the weight gradient, summed in
//!   lanes over the positions, tiles of `MC` rows × 3 taps (a kernel row: `kx` = 0, 1, 2).
//!
//! Every sum runs in an order fixed by the shape alone, so results never depend on threads.

use crate::isa::Isa;
#[cfg(target_arch = "x86_64")]
use crate::lanes::{Avx2, Avx512};
use crate::lanes::{Element, Lanes, Portable};

/// Floats after the last padded channel that a kernel may read (and that are zero): the
/// widest tile of positions, 48, plus the last tap's 2, rounded up.
const SLACK: usize = 64;
/// Bytes of packed `a` that [`conv_block`] keeps in the L1 cache: 24 KiB of a 32 KiB L1.
const A_IN_L1: usize = 24 << 10;

/// The padded geometry of one image's channels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Padded {
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// The distance between rows, `w + 1`: one zero column per row.
    pub wp: usize,
    /// Floats per padded channel: `h + 2` rows and the last row's right pad.
    pub plane: usize,
}

impl Padded {
    pub fn new(h: usize, w: usize) -> Self {
        Padded {
            h,
            w,
            wp: w + 1,
            plane: (h + 2) * (w + 1) + 1,
        }
    }

    /// Positions computed per channel: `h` rows of `wp` (the last of each thrown away).
    pub fn positions(&self) -> usize {
        self.h * self.wp
    }

    /// Floats of a buffer holding `channels` padded channels, slack included.
    pub fn len(&self, channels: usize) -> usize {
        channels * self.plane + SLACK
    }

    /// Where row `(c, tap)` of the implicit column matrix starts, for `channels` channels.
    pub fn offsets(&self, channels: usize) -> Vec<usize> {
        (0..channels * 9)
            .map(|row| {
                let (c, tap) = (row / 9, row % 9);
                c * self.plane + tap / 3 * self.wp + tap % 3
            })
            .collect()
    }

    /// How many zeros follow the last position of each channel in a buffer written by
    /// [`Padded::zero_borders`], read from [`Padded::origin`] on: the bottom row's and the
    /// next channel's top row (or the slack).
    pub fn zeros_after(&self) -> usize {
        2 * self.wp
    }

    /// The offset of pixel `(0, 0)` of a channel inside its padded plane.
    pub fn origin(&self) -> usize {
        self.wp + 1
    }

    /// Zeroes everything of `channels` padded channels in `dst` but their `h × w` interiors:
    /// the border of each and the slack.
    pub fn zero_borders(&self, channels: usize, dst: &mut [f32]) {
        let (h, wp) = (self.h, self.wp);
        assert!(dst.len() >= self.len(channels));
        for c in 0..channels {
            let plane = &mut dst[c * self.plane..][..self.plane];
            // The top row, then the zero column of each row, then the bottom row and the
            // last row's right pad.
            plane[..wp].fill(0.0);
            for y in 1..=h {
                plane[y * wp] = 0.0;
            }
            plane[(h + 1) * wp..].fill(0.0);
        }
        dst[channels * self.plane..self.len(channels)].fill(0.0);
    }

    /// The interior row `y` of padded channel `c`.
    pub fn row_mut<'a>(&self, dst: &'a mut [f32], c: usize, y: usize) -> &'a mut [f32] {
        &mut dst[c * self.plane + (y + 1) * self.wp + 1..][..self.w]
    }

    /// Writes `channels` channels of `h × w` from `x` into `dst` padded: zeros around each
    /// and in the slack.
    pub fn pad(&self, x: &[f32], channels: usize, dst: &mut [f32]) {
        let (h, w) = (self.h, self.w);
        assert!(x.len() >= channels * h * w);
        self.zero_borders(channels, dst);
        for c in 0..channels {
            for y in 0..h {
                self.row_mut(dst, c, y)
                    .copy_from_slice(&x[(c * h + y) * w..][..w]);
            }
        }
    }
}

impl Isa {
    /// Rows per register tile of [`conv_block`].
    pub(crate) fn conv_rows(self) -> usize {
        match self {
            Isa::Avx512 => 8,
            Isa::Avx2Fma | Isa::Portable => 4,
        }
    }
}

/// `a` (`m × k`, read through `get(row, col)`) in panels of `mr` rows: panel `p` holds, for
/// each column, rows `p·mr .. p·mr + mr` (zeros past `m`).
pub(crate) fn pack<E: Copy + Default>(
    m: usize,
    k: usize,
    mr: usize,
    get: impl Fn(usize, usize) -> E,
) -> Vec<E> {
    let panels = m.div_ceil(mr);
    let mut packed = vec![E::default(); panels * k * mr];
    for (p, panel) in packed.chunks_exact_mut(k * mr).enumerate() {
        for (col, column) in panel.chunks_exact_mut(mr).enumerate() {
            for (r, v) in column.iter_mut().enumerate() {
                let row = p * mr + r;
                if row < m {
                    *v = get(row, col);
                }
            }
        }
    }
    packed
}

/// One multiplication of [`conv_block`]: which rows, columns and positions; `E` is what the
/// operands are stored as (`f32`, or pairs of bfloat16 in a `u32`: [`crate::bf16`]).
pub(crate) struct ConvBlock<'a, E = f32> {
    /// `a` packed by [`pack`] with [`Isa::conv_rows`] rows per panel.
    pub a: &'a [E],
    /// Where each row of the column matrix starts in `src` ([`Padded::offsets`]).
    pub offsets: &'a [usize],
    /// The padded channels the column matrix is read from.
    pub src: &'a [E],
    /// The first position.
    pub start: usize,
    /// Positions to compute (rounded up to a whole tile; the extra ones are thrown away).
    pub count: usize,
}

impl<E> ConvBlock<'_, E> {
    /// Positions computed per row of the output: [`block_stride`] of `count`.
    pub fn stride(&self, isa: Isa) -> usize {
        block_stride(isa, self.count)
    }

    /// Checks the block against `out` for tiles of `mr` rows; returns the number of panels,
    /// or `None` (with the output zeroed) when there is nothing to multiply.
    ///
    /// # Panics
    /// When `out`, `src` or `a` is too short for the block.
    pub(crate) fn check(&self, mr: usize, stride: usize, out: &mut [f32]) -> Option<usize> {
        let k = self.offsets.len();
        let panels = if k == 0 { 0 } else { self.a.len() / (k * mr) };
        assert_eq!(self.a.len(), panels * k * mr, "conv_block: packed a");
        assert!(
            out.len() >= panels * mr * stride,
            "conv_block: out too short"
        );
        let last = self
            .offsets
            .iter()
            .max()
            .map_or(0, |o| o + self.start + stride);
        assert!(last <= self.src.len(), "conv_block: src too short");
        if k == 0 {
            out[..panels * mr * stride].fill(0.0);
            return None;
        }
        Some(panels)
    }
}

/// `count` positions rounded up to whole register tiles of [`conv_block`]: the distance
/// between its output rows.
pub(crate) fn block_stride(isa: Isa, count: usize) -> usize {
    let tile = match isa {
        Isa::Avx512 => 3 * 16,
        Isa::Avx2Fma => 2 * 8,
        Isa::Portable => 2 * 8,
    };
    count.div_ceil(tile) * tile
}

/// `out[row · stride + i] = Σ_j a[row, j] · src[offsets[j] + start + i]` for every row of
/// the packed `a` (padding rows included) and `i < stride` ([`ConvBlock::stride`]).
///
/// # Panics
/// When `out`, `src` or `a` is too short for the block.
pub(crate) fn conv_block(isa: Isa, block: &ConvBlock<'_>, out: &mut [f32]) {
    let stride = block.stride(isa);
    if block.check(isa.conv_rows(), stride, out).is_none() {
        return;
    }
    // SAFETY: the asserts above bound every read and write of the tiles; the CPU has the
    // instruction set (`Isa` values are only chosen when available).
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => conv_avx512(block, out, stride),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => conv_avx2(block, out, stride),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2Fma => unreachable!("no x86 kernels on this target"),
            Isa::Portable => conv::<Portable, 4, 2>(block, out, stride),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn conv_avx512(block: &ConvBlock<'_>, out: &mut [f32], stride: usize) {
    // SAFETY: the caller's contract.
    unsafe { conv::<Avx512, 8, 3>(block, out, stride) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_avx2(block: &ConvBlock<'_>, out: &mut [f32], stride: usize) {
    // SAFETY: the caller's contract.
    unsafe { conv::<Avx2, 4, 2>(block, out, stride) }
}

/// # Safety
/// As [`ConvBlock::check`] checks; `V`'s instruction set must be available.
#[inline(always)]
pub(crate) unsafe fn conv<V: Lanes, const MR: usize, const NR: usize>(
    block: &ConvBlock<'_, V::Elem>,
    out: &mut [f32],
    stride: usize,
) {
    let k = block.offsets.len();
    let tile = NR * V::L;
    let panels = block.a.len() / (k * MR);
    let src = block.src.as_ptr().wrapping_add(block.start);
    // Panels in groups whose packed `a` stays in the L1 cache while every tile of positions
    // runs through the group: the tile's columns are then read once per group.
    let group = (A_IN_L1 / (k * MR * size_of::<V::Elem>())).max(1);
    for first in (0..panels).step_by(group) {
        for t in (0..stride).step_by(tile) {
            for p in first..(first + group).min(panels) {
                // SAFETY: the caller's contract.
                unsafe {
                    let a = block.a.as_ptr().add(p * k * MR);
                    let out = out.as_mut_ptr().add(p * MR * stride + t);
                    conv_tile::<V, MR, NR>(a, block.offsets, src.add(t), out, stride);
                }
            }
        }
    }
}

/// One `MR × (NR·L)` tile: `out[r · stride + i] = Σ_j a[j · MR + r] · src[offsets[j] + i]`.
///
/// # Safety
/// Every read and write must be in bounds; `V`'s instruction set must be available.
#[inline(always)]
unsafe fn conv_tile<V: Lanes, const MR: usize, const NR: usize>(
    a: *const V::Elem,
    offsets: &[usize],
    src: *const V::Elem,
    out: *mut f32,
    stride: usize,
) {
    let mut acc = [[V::zero(); NR]; MR];
    for (j, &offset) in offsets.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe {
            let b = src.add(offset);
            let bv: [V::In; NR] = std::array::from_fn(|v| V::load(b.add(v * V::STEP)));
            let aj = a.add(j * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = V::splat(aj.add(r));
                for (sum, &bv) in row.iter_mut().zip(&bv) {
                    *sum = sum.mac(av, bv);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, sum) in row.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { sum.store(out.add(r * stride + v * V::L)) };
        }
    }
}

/// One weight-gradient product of [`wgrad_block`]; `E` as in [`ConvBlock`].
pub(crate) struct WgradBlock<'a, E = f32> {
    /// The output gradient, `m` rows `dy_stride` apart, read at `start .. start + count`.
    pub dy: &'a [E],
    pub dy_stride: usize,
    /// Where each row of the column matrix starts in `src` ([`Padded::offsets`]); a
    /// multiple of 3 long (whole kernel rows).
    pub offsets: &'a [usize],
    /// The padded input channels.
    pub src: &'a [E],
    pub start: usize,
    pub count: usize,
}

impl<E: Element> WgradBlock<'_, E> {
    /// Checks the block against `g`; false when there is nothing to add.
    ///
    /// # Panics
    /// When a slice is too short or `offsets` is not a multiple of 3 long.
    pub(crate) fn check(&self, g: &[f32]) -> bool {
        let k = self.offsets.len();
        assert_eq!(k % 3, 0, "wgrad_block: whole kernel rows");
        if k == 0 || self.count == 0 {
            return false;
        }
        let m = g.len() / k;
        assert_eq!(g.len(), m * k, "wgrad_block: g");
        let end = self.start + self.count;
        if m > 0 {
            assert!(
                (m - 1) * self.dy_stride + end <= self.dy.len(),
                "wgrad_block: dy too short"
            );
        }
        let last = self.offsets.iter().max().map_or(0, |o| o + end);
        assert!(last <= self.src.len(), "wgrad_block: src too short");
        true
    }

    /// Adds the products of the positions after the first `done`, one by one in order.
    pub(crate) fn tail(&self, done: usize, g: &mut [f32]) {
        if done >= self.count {
            return;
        }
        let (k, end) = (self.offsets.len(), self.start + self.count);
        for (i, g_row) in g.chunks_exact_mut(k).enumerate() {
            let dy = &self.dy[i * self.dy_stride..][self.start + done..end];
            for (gj, &offset) in g_row.iter_mut().zip(self.offsets) {
                let src = &self.src[offset + self.start + done..offset + end];
                for (d, s) in dy.iter().zip(src) {
                    *gj += d.value() * s.value();
                }
            }
        }
    }
}

/// `g[i · k + j] += Σ_q dy[i · dy_stride + q] · src[offsets[j] + q]` over positions
/// `q ∈ start .. start + count`, for `m = g.len() / k` rows: summed in vector lanes over
/// whole vectors, each lane sum then added up in a fixed order, the last positions after.
///
/// # Panics
/// When a slice is too short or `offsets` is not a multiple of 3 long.
pub(crate) fn wgrad_block(isa: Isa, block: &WgradBlock<'_>, g: &mut [f32]) {
    if !block.check(g) {
        return;
    }
    // SAFETY: the asserts above bound every read and write; the CPU has the instruction set.
    let vectorised = unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => wgrad_avx512(block, g),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => wgrad_avx2(block, g),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2Fma => unreachable!("no x86 kernels on this target"),
            Isa::Portable => wgrad::<Portable, 2>(block, g),
        }
    };
    block.tail(vectorised, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wgrad_avx512(block: &WgradBlock<'_>, g: &mut [f32]) -> usize {
    // SAFETY: the caller's contract.
    unsafe { wgrad::<Avx512, 8>(block, g) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn wgrad_avx2(block: &WgradBlock<'_>, g: &mut [f32]) -> usize {
    // SAFETY: the caller's contract.
    unsafe { wgrad::<Avx2, 2>(block, g) }
}

/// The whole vectors of [`wgrad_block`]; returns how many positions they covered.
///
/// # Safety
/// As [`WgradBlock::check`] checks; `V`'s instruction set must be available.
#[inline(always)]
pub(crate) unsafe fn wgrad<V: Lanes, const MC: usize>(
    block: &WgradBlock<'_, V::Elem>,
    g: &mut [f32],
) -> usize {
    let k = block.offsets.len();
    let m = g.len() / k;
    let vectors = block.count / V::STEP;
    let dy = block.dy.as_ptr().wrapping_add(block.start);
    let src = block.src.as_ptr().wrapping_add(block.start);
    let g = g.as_mut_ptr();
    let mut i = 0;
    while i < m {
        let rows = MC.min(m - i);
        for j in (0..k).step_by(3) {
            // SAFETY: the caller's contract; rows `i .. i + rows` and columns `j .. j + 3`
            // of `g` exist.
            unsafe {
                let dy = dy.add(i * block.dy_stride);
                let g = g.add(i * k + j);
                let offsets = &block.offsets[j..j + 3];
                if rows == MC {
                    wgrad_tile::<V, MC>(dy, block.dy_stride, offsets, src, vectors, g, k);
                } else {
                    for r in 0..rows {
                        let (dy, g) = (dy.add(r * block.dy_stride), g.add(r * k));
                        wgrad_tile::<V, 1>(dy, block.dy_stride, offsets, src, vectors, g, k);
                    }
                }
            }
        }
        i += rows;
    }
    vectors * V::STEP
}

/// `g[r · g_stride + t] += Σ over `vectors` vectors of dy[r · dy_stride + q] ·
/// src[offsets[t] + q]`, `MC` rows × 3 taps.
///
/// # Safety
/// Every read and write must be in bounds; `V`'s instruction set must be available.
#[inline(always)]
unsafe fn wgrad_tile<V: Lanes, const MC: usize>(
    dy: *const V::Elem,
    dy_stride: usize,
    offsets: &[usize],
    src: *const V::Elem,
    vectors: usize,
    g: *mut f32,
    g_stride: usize,
) {
    let mut acc = [[V::zero(); 3]; MC];
    // SAFETY: the caller's contract.
    let taps: [*const V::Elem; 3] = std::array::from_fn(|t| unsafe { src.add(offsets[t]) });
    for v in 0..vectors {
        let q = v * V::STEP;
        // SAFETY: the caller's contract.
        unsafe {
            let d: [V::In; MC] = std::array::from_fn(|r| V::load(dy.add(r * dy_stride + q)));
            for (t, &tap) in taps.iter().enumerate() {
                let b = V::load(tap.add(q));
                for (row, &d) in acc.iter_mut().zip(&d) {
                    row[t] = row[t].mac(d, b);
                }
            }
        }
    }
    // The lane sums, 16 vectors at a time (zeros after the last); entry `n` of the flat
    // order is row `n / 3`, tap `n % 3`.
    let flat = acc.iter().flatten();
    let total = MC * 3;
    let mut sixteen = [V::zero(); 16];
    for (n, &v) in flat.enumerate() {
        sixteen[n % 16] = v;
        if n % 16 == 15 || n == total - 1 {
            let first = n / 16 * 16;
            let sums = V::sums16(sixteen);
            for (at, &sum) in (first..=n).zip(&sums) {
                // SAFETY: the caller's contract.
                unsafe { *g.add(at / 3 * g_stride + at % 3) += sum };
            }
            sixteen = [V::zero(); 16];
        }
    }
}
