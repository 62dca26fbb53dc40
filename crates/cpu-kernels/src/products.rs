//! The convolution's products in the arithmetic asked for ([`Arithmetic`]): the weights packed
//! and the padded channels laid out as that arithmetic reads them, and the two products
//! dispatched to [`crate::implicit`] (`f32`) or [`crate::bf16`].

use crate::bf16;
use crate::implicit::{ConvBlock, Padded, WgradBlock, block_stride, conv_block, pack, wgrad_block};
use crate::isa::Isa;

/// The arithmetic of a convolution's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// `f32` products and sums on this instruction set.
    F32(Isa),
    /// bfloat16 products (inputs, weights and output gradients rounded to nearest even),
    /// `f32` sums: AVX512-BF16's `vdpbf16ps`. Only on a CPU with it ([`Arithmetic::available`]).
    Bf16,
    /// [`Arithmetic::Bf16`] computed lane by lane in plain Rust, rounding exactly as the
    /// instruction does, on any CPU: the reference the tests compare the instruction with.
    /// Slow; never a fallback.
    Bf16Reference,
}

impl From<Isa> for Arithmetic {
    fn from(isa: Isa) -> Self {
        Arithmetic::F32(isa)
    }
}

impl Arithmetic {
    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        match self {
            Arithmetic::F32(isa) => isa.available(),
            Arithmetic::Bf16 => bf16::available(),
            Arithmetic::Bf16Reference => true,
        }
    }

    /// The instruction set whose register tiles the products use.
    pub(crate) fn tiles(self) -> Isa {
        match self {
            Arithmetic::F32(isa) => isa,
            Arithmetic::Bf16 | Arithmetic::Bf16Reference => Isa::Avx512,
        }
    }

    /// Positions one weight-gradient vector covers.
    pub(crate) fn positions_per_vector(self) -> usize {
        match self {
            Arithmetic::F32(Isa::Avx512) => 16,
            Arithmetic::F32(_) => 8,
            Arithmetic::Bf16 | Arithmetic::Bf16Reference => 32,
        }
    }

    fn is_bf16(self) -> bool {
        !matches!(self, Arithmetic::F32(_))
    }

    /// Floats of scratch the bf16 pairs of `channels` padded channels take ([`Source::new`]):
    /// none for `f32`.
    pub(crate) fn pairs_len(self, geometry: &Padded, channels: usize) -> usize {
        if self.is_bf16() {
            geometry.len(channels.div_ceil(2))
        } else {
            0
        }
    }

    /// Floats of scratch the bf16 runs of `channels` padded channels take ([`Wgrad::new`]):
    /// none for `f32`.
    pub(crate) fn runs_len(self, geometry: &Padded, channels: usize) -> usize {
        if self.is_bf16() {
            geometry.len(channels).div_ceil(2)
        } else {
            0
        }
    }
}

/// Weights packed for [`multiply`]: `m` rows of `(channel, tap)` columns, in panels of the
/// tile's rows; for bf16, channels `2p` and `2p + 1` of a tap paired in one `u32`.
pub(crate) struct Packed {
    values: Values,
    /// Columns per row (pairs of columns for bf16).
    columns: usize,
    /// Where each column starts in the padded source.
    pub offsets: Vec<usize>,
    rows_per_panel: usize,
}

enum Values {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

impl Packed {
    /// `a[row, (channel, tap)] = get(row, channel, tap)` for `channels` channels of the
    /// padded `geometry`.
    pub fn new(
        arithmetic: Arithmetic,
        geometry: &Padded,
        m: usize,
        channels: usize,
        get: impl Fn(usize, usize, usize) -> f32,
    ) -> Self {
        let mr = arithmetic.tiles().conv_rows();
        if arithmetic.is_bf16() {
            let pairs = channels.div_ceil(2);
            let values = pack(m, pairs * 9, mr, |row, col| {
                let (p, tap) = (col / 9, col % 9);
                let odd = if 2 * p + 1 < channels {
                    get(row, 2 * p + 1, tap)
                } else {
                    0.0
                };
                bf16::pair(get(row, 2 * p, tap), odd)
            });
            Packed {
                values: Values::Bf16(values),
                columns: pairs * 9,
                offsets: geometry.offsets(pairs),
                rows_per_panel: mr,
            }
        } else {
            Packed {
                values: Values::F32(pack(m, channels * 9, mr, |row, col| {
                    get(row, col / 9, col % 9)
                })),
                columns: channels * 9,
                offsets: geometry.offsets(channels),
                rows_per_panel: mr,
            }
        }
    }

    /// Rows per panel.
    pub fn rows_per_panel(&self) -> usize {
        self.rows_per_panel
    }

    /// The product of `values` (panels of these weights) with `src` over `positions`.
    fn block<'b, E>(
        &'b self,
        values: &'b [E],
        src: &'b [E],
        (start, count): (usize, usize),
    ) -> ConvBlock<'b, E> {
        ConvBlock {
            a: values,
            offsets: &self.offsets,
            src,
            start,
            count,
        }
    }
}

/// Padded channels as a product reads them: `f32`, or bf16 pairs of channels.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    F32(&'a [f32]),
    Pairs(&'a [u32]),
}

impl<'a> Source<'a> {
    /// `padded` (`channels` padded channels) as `arithmetic` reads it; the bf16 pairs are
    /// written into `scratch` (at least [`Arithmetic::pairs_len`]).
    pub fn new(
        arithmetic: Arithmetic,
        geometry: &Padded,
        channels: usize,
        padded: &'a [f32],
        scratch: &'a mut [f32],
    ) -> Self {
        if !arithmetic.is_bf16() {
            return Source::F32(padded);
        }
        let len = arithmetic.pairs_len(geometry, channels);
        let pairs = &mut words(scratch)[..len];
        bf16::pad_pairs(padded, channels, geometry.plane, pairs);
        Source::Pairs(pairs)
    }
}

/// `out = a · col(src)` over panels `panels` of `a` and positions `start .. start + count`;
/// returns the distance between `out`'s rows.
pub(crate) fn multiply(
    arithmetic: Arithmetic,
    a: &Packed,
    panels: std::ops::Range<usize>,
    src: Source<'_>,
    (start, count): (usize, usize),
    out: &mut [f32],
) -> usize {
    let panel = a.columns * a.rows_per_panel;
    let range = panels.start * panel..panels.end * panel;
    match (&a.values, src) {
        (Values::F32(values), Source::F32(src)) => {
            let Arithmetic::F32(isa) = arithmetic else {
                unreachable!("f32 weights come from f32 arithmetic")
            };
            let block = a.block(&values[range], src, (start, count));
            conv_block(isa, &block, out);
            block.stride(isa)
        }
        (Values::Bf16(values), Source::Pairs(src)) => {
            let block = a.block(&values[range], src, (start, count));
            bf16::conv_block(arithmetic == Arithmetic::Bf16, &block, out);
            block.stride(Isa::Avx512)
        }
        _ => unreachable!("weights and source packed for one arithmetic"),
    }
}

/// The distance between the rows of [`multiply`]'s output for `count` positions.
pub(crate) fn stride(arithmetic: Arithmetic, count: usize) -> usize {
    block_stride(arithmetic.tiles(), count)
}

/// `g += dy · col(x)ᵀ` over positions `start .. start + count` (`dy` and `x` padded, `dy`
/// read from [`Padded::origin`]); for bf16 both are first rounded into `scratch` (at least
/// [`Arithmetic::runs_len`] of `dy`'s and of `x`'s channels).
pub(crate) struct Wgrad<'a> {
    arithmetic: Arithmetic,
    geometry: Padded,
    offsets: &'a [usize],
    operands: Operands<'a>,
}

enum Operands<'a> {
    F32 { dy: &'a [f32], x: &'a [f32] },
    Bf16 { dy: &'a [u16], x: &'a [u16] },
}

impl<'a> Wgrad<'a> {
    pub fn new(
        arithmetic: Arithmetic,
        geometry: Padded,
        offsets: &'a [usize],
        dy: &'a [f32],
        x: &'a [f32],
        scratch: &'a mut [f32],
    ) -> Self {
        let operands = if arithmetic.is_bf16() {
            let halves = halves(scratch);
            let (dy_runs, rest) = halves.split_at_mut(dy.len());
            let x_runs = &mut rest[..x.len()];
            bf16::to_bf16_slice(dy, dy_runs);
            bf16::to_bf16_slice(x, x_runs);
            Operands::Bf16 {
                dy: dy_runs,
                x: x_runs,
            }
        } else {
            Operands::F32 { dy, x }
        };
        Wgrad {
            arithmetic,
            geometry,
            offsets,
            operands,
        }
    }

    /// Adds positions `start .. start + count` to `g`.
    pub fn add(&self, start: usize, count: usize, g: &mut [f32]) {
        match (&self.operands, self.arithmetic) {
            (Operands::F32 { dy, x }, Arithmetic::F32(isa)) => {
                wgrad_block(isa, &self.block(dy, x, start, count), g);
            }
            (Operands::Bf16 { dy, x }, arithmetic) => {
                let block = self.block(dy, x, start, count);
                bf16::wgrad_block(arithmetic == Arithmetic::Bf16, &block, g);
            }
            _ => unreachable!("operands rounded for one arithmetic"),
        }
    }

    /// The product of `dy` (read from [`Padded::origin`]) and `x` over the positions.
    fn block<'b, E>(
        &'b self,
        dy: &'b [E],
        x: &'b [E],
        start: usize,
        count: usize,
    ) -> WgradBlock<'b, E> {
        WgradBlock {
            dy: &dy[self.geometry.origin()..],
            dy_stride: self.geometry.plane,
            offsets: self.offsets,
            src: x,
            start,
            count,
        }
    }
}

/// `floats` seen as `u32`s (the same bytes).
fn words(floats: &mut [f32]) -> &mut [u32] {
    // SAFETY: `u32` has `f32`'s size and alignment and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts_mut(floats.as_mut_ptr().cast(), floats.len()) }
}

/// `floats` seen as twice as many `u16`s (the same bytes).
fn halves(floats: &mut [f32]) -> &mut [u16] {
    // SAFETY: `u16`'s alignment divides `f32`'s, two fill one exactly, any bits are valid.
    unsafe { std::slice::from_raw_parts_mut(floats.as_mut_ptr().cast(), 2 * floats.len()) }
}
