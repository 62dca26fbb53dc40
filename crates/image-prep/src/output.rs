//! The one copy of a transformed image into the caller's buffer: `u8` → the element type
//! through a per-channel lookup table that holds `Normalize` (`(v / 255 − mean) / std`), the
//! horizontal flip done by reading rows backwards, HWC or CHW. No second pass over the pixels.

use std::mem::MaybeUninit;

use crate::{Preprocessing, RgbImage};

/// torchvision's `Normalize(mean, std)` on values scaled to [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Per-channel mean (R, G, B).
    pub mean: [f32; 3],
    /// Per-channel standard deviation (R, G, B), each > 0.
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet's (torchvision's reference scripts').
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Checks every std is a positive finite number and every mean finite.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(format!(
                "Normalize needs finite means and positive stds, not mean={:?} std={:?}",
                self.mean, self.std
            ));
        }
        Ok(())
    }
}

/// The element type written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// `f32`.
    F32,
    /// IEEE half (`f16` bits in a `u16`).
    F16,
    /// bfloat16 (the top half of an `f32`, rounded to nearest even, in a `u16`).
    Bf16,
    /// The bytes (no scaling; `Normalize` cannot apply).
    U8,
}

/// The order of the written axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axes {
    /// Rows, columns, channels.
    Hwc,
    /// Channels, rows, columns.
    Chw,
}

/// Writes images as one element type, layout and normalisation: built once per read, used by
/// every worker.
#[derive(Debug, Clone)]
pub struct PixelWriter {
    axes: Axes,
    /// `f32` values: `(v × scale − mean) / std` per channel (the tables hold the same).
    scale: f32,
    normalize: Normalize,
    f32_table: [[f32; 256]; 3],
    u16_table: [[u16; 256]; 3],
    /// The identity, for `u8` output.
    u8_table: [[u8; 256]; 3],
    element: Element,
}

impl PixelWriter {
    /// A writer of `element`s in `axes`, normalised by `normalize` (none: values / 255, the
    /// one scale [`Preprocessing`] defines). `Normalize` with `U8` is refused.
    pub fn new(
        element: Element,
        axes: Axes,
        normalize: Option<Normalize>,
    ) -> std::result::Result<Self, String> {
        if let Some(n) = &normalize {
            n.check()?;
            if element == Element::U8 {
                return Err(
                    "Normalize needs a float output (float32, float16 or bfloat16), not uint8"
                        .into(),
                );
            }
        }
        let scale = Preprocessing::default();
        let mut f32_table = [[0f32; 256]; 3];
        let mut u16_table = [[0u16; 256]; 3];
        for c in 0..3 {
            for v in 0..256 {
                let mut x = Vec::with_capacity(1);
                scale.extend_f32(&[v as u8], &mut x);
                let x = match &normalize {
                    Some(n) => (x[0] - n.mean[c]) / n.std[c],
                    None => x[0],
                };
                f32_table[c][v] = x;
                u16_table[c][v] = match element {
                    Element::Bf16 => half::bf16::from_f32(x).to_bits(),
                    _ => half::f16::from_f32(x).to_bits(),
                };
            }
        }
        Ok(PixelWriter {
            axes,
            scale: scale.scale(),
            // The identity: (x − 0) / 1 is x, bit for bit.
            normalize: normalize.unwrap_or(Normalize {
                mean: [0.0; 3],
                std: [1.0; 3],
            }),
            f32_table,
            u16_table,
            u8_table: [std::array::from_fn(|v| v as u8); 3],
            element,
        })
    }

    /// The element type written.
    pub fn element(&self) -> Element {
        self.element
    }

    /// The axes written.
    pub fn axes(&self) -> Axes {
        self.axes
    }

    /// `f32` values: CHW through the vectorised conversion, HWC through the tables (the same
    /// values, bit for bit: tested).
    fn fill_f32(&self, image: &RgbImage, flip: bool, out: &mut [MaybeUninit<f32>]) {
        match self.axes {
            Axes::Chw => self.fill_f32_chw(image, flip, out),
            Axes::Hwc => self.fill(image, flip, &self.f32_table, out),
        }
    }

    /// CHW `f32`: `(v × scale − mean) / std`, the tables' own operations. Where the CPU has
    /// AVX2 (detected at run time) each row's pixels are split into their channels (mirrored
    /// there) and converted 8 at a time in registers; otherwise each row is split into its
    /// three channels, then each channel converted by a loop the compiler vectorises (SSE2).
    fn fill_f32_chw(&self, image: &RgbImage, flip: bool, out: &mut [MaybeUninit<f32>]) {
        let w = image.width as usize;
        let plane = w * image.height as usize;
        assert_eq!(out.len(), plane * 3, "the output holds one image");
        let n = self.normalize;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let lanes = Normalized {
                scale: self.scale,
                mean: n.mean,
                std: n.std,
            };
            // SAFETY: the CPU has AVX2 (checked at run time, cached by std).
            unsafe { chw_avx2(image, flip, out, &lanes) };
            return;
        }
        let mut channels = vec![0u8; w * 3];
        for (y, row) in image.pixels.chunks_exact(w * 3).enumerate() {
            let (r, rest) = channels.split_at_mut(w);
            let (g, b) = rest.split_at_mut(w);
            let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
            if flip {
                split_channels(row.chunks_exact(3).rev(), planes);
            } else {
                split_channels(row.chunks_exact(3), planes);
            }
            for (c, values) in channels.chunks_exact(w).enumerate() {
                let dst = &mut out[c * plane + y * w..c * plane + (y + 1) * w];
                convert(values, dst, self.scale, n.mean[c], n.std[c]);
            }
        }
    }

    /// `image` (mirrored left to right when `flip`) as `f32` into memory not yet initialised
    /// (a batch buffer's slot): every element of `out` is written (its length is checked:
    /// one image).
    pub fn write_f32_uninit(&self, image: &RgbImage, flip: bool, out: &mut [MaybeUninit<f32>]) {
        self.fill_f32(image, flip, out);
    }

    /// [`PixelWriter::write_f32_uninit`] as `f16`/`bf16` bits (the writer's [`Element`]).
    pub fn write_u16_uninit(&self, image: &RgbImage, flip: bool, out: &mut [MaybeUninit<u16>]) {
        self.fill(image, flip, &self.u16_table, out);
    }

    /// [`PixelWriter::write_f32_uninit`] as the bytes (CHW, where the CPU has AVX2: split
    /// into channels 8 pixels at a time by byte shuffles, as the `f32` copy).
    pub fn write_u8_uninit(&self, image: &RgbImage, flip: bool, out: &mut [MaybeUninit<u8>]) {
        #[cfg(target_arch = "x86_64")]
        if self.axes == Axes::Chw && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked at run time, cached by std).
            unsafe { chw_avx2(image, flip, out, &Bytes) };
            return;
        }
        self.fill(image, flip, &self.u8_table, out);
    }

    /// A batch of `count` `images` (each of `per` elements: width × height × 3, mirrored
    /// where its flag says) as one `f32` buffer, written once (never zeroed first).
    pub fn batch_f32<'a>(
        &self,
        images: impl Iterator<Item = (&'a RgbImage, bool)>,
        count: usize,
        per: usize,
    ) -> Vec<f32> {
        self.batch(images, count, per, |image, flip, chunk| {
            self.write_f32_uninit(image, flip, chunk)
        })
    }

    /// [`PixelWriter::batch_f32`] as `f16`/`bf16` bits.
    pub fn batch_u16<'a>(
        &self,
        images: impl Iterator<Item = (&'a RgbImage, bool)>,
        count: usize,
        per: usize,
    ) -> Vec<u16> {
        self.batch(images, count, per, |image, flip, chunk| {
            self.write_u16_uninit(image, flip, chunk)
        })
    }

    /// [`PixelWriter::batch_f32`] as bytes.
    pub fn batch_u8<'a>(
        &self,
        images: impl Iterator<Item = (&'a RgbImage, bool)>,
        count: usize,
        per: usize,
    ) -> Vec<u8> {
        self.batch(images, count, per, |image, flip, chunk| {
            self.write_u8_uninit(image, flip, chunk)
        })
    }

    /// `count` images written by `fill` (which must write its whole chunk, as `fill` and
    /// `fill_f32_chw` assert) into one buffer never zeroed first.
    fn batch<'a, T: Copy>(
        &self,
        images: impl Iterator<Item = (&'a RgbImage, bool)>,
        count: usize,
        per: usize,
        fill: impl Fn(&RgbImage, bool, &mut [MaybeUninit<T>]),
    ) -> Vec<T> {
        let len = count * per;
        let mut out: Vec<T> = Vec::with_capacity(len);
        let mut written = 0;
        if per > 0 {
            for ((image, flip), chunk) in
                images.zip(out.spare_capacity_mut()[..len].chunks_exact_mut(per))
            {
                fill(image, flip, chunk);
                written += 1;
            }
        }
        assert_eq!(written * per, len, "every image of the batch is written");
        // SAFETY: the capacity is `len`, and its `count` chunks of `per` elements were each
        // written whole by `fill` (which checks the image fills its chunk exactly).
        unsafe { out.set_len(len) };
        out
    }

    /// Writes every element of `out` (its length is checked: one image).
    fn fill<T: Copy>(
        &self,
        image: &RgbImage,
        flip: bool,
        table: &[[T; 256]; 3],
        out: &mut [MaybeUninit<T>],
    ) {
        let w = image.width as usize;
        let plane = w * image.height as usize;
        assert_eq!(out.len(), plane * 3, "the output holds one image");
        for (y, row) in image.pixels.chunks_exact(w * 3).enumerate() {
            match self.axes {
                Axes::Hwc => {
                    let out_row = &mut out[y * w * 3..(y + 1) * w * 3];
                    for (x, o) in out_row.chunks_exact_mut(3).enumerate() {
                        let sx = if flip { w - 1 - x } else { x };
                        let px = &row[sx * 3..sx * 3 + 3];
                        o[0] = MaybeUninit::new(table[0][px[0] as usize]);
                        o[1] = MaybeUninit::new(table[1][px[1] as usize]);
                        o[2] = MaybeUninit::new(table[2][px[2] as usize]);
                    }
                }
                Axes::Chw => {
                    let (r, rest) = out.split_at_mut(plane);
                    let (g, b) = rest.split_at_mut(plane);
                    let span = y * w..(y + 1) * w;
                    let (r, g, b) = (&mut r[span.clone()], &mut g[span.clone()], &mut b[span]);
                    for x in 0..w {
                        let sx = if flip { w - 1 - x } else { x };
                        let px = &row[sx * 3..sx * 3 + 3];
                        r[x] = MaybeUninit::new(table[0][px[0] as usize]);
                        g[x] = MaybeUninit::new(table[1][px[1] as usize]);
                        b[x] = MaybeUninit::new(table[2][px[2] as usize]);
                    }
                }
            }
        }
    }
}

/// Each pixel's three bytes into the three planes (no index checks: iterators throughout).
fn split_channels<'a, 'b>(
    pixels: impl Iterator<Item = &'a [u8]>,
    planes: impl Iterator<Item = ((&'b mut u8, &'b mut u8), &'b mut u8)>,
) {
    for (px, ((r, g), b)) in pixels.zip(planes) {
        *r = px[0];
        *g = px[1];
        *b = px[2];
    }
}

/// `dst[i] = (values[i] × scale − mean) / std`: the portable loop (SSE2 vectorised).
fn convert(values: &[u8], dst: &mut [MaybeUninit<f32>], scale: f32, mean: f32, std: f32) {
    for (d, &v) in dst.iter_mut().zip(values) {
        d.write((f32::from(v) * scale - mean) / std);
    }
}

/// The byte shuffles that gather channel `c`'s 8 bytes from 8 RGB pixels loaded as two
/// overlapping 16-byte halves (bytes 0..16 and 8..24): lane `j` is source pixel `j` (`7 − j`
/// mirrored), byte `3s + c`, from the low half or the high one; -1 (0x80) gives zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn channel_masks(flip: bool) -> [(std::arch::x86_64::__m128i, std::arch::x86_64::__m128i); 3] {
    use std::arch::x86_64::_mm_loadu_si128;
    let mask = |c: usize, high: bool| {
        let mut m = [-1i8; 16];
        for (j, lane) in m.iter_mut().take(8).enumerate() {
            let byte = 3 * if flip { 7 - j } else { j } + c;
            match (byte < 16, high) {
                (true, false) => *lane = byte as i8,
                (false, true) => *lane = (byte - 8) as i8,
                _ => {}
            }
        }
        // SAFETY: 16 bytes into a 16-byte vector (an unaligned load).
        unsafe { _mm_loadu_si128(m.as_ptr().cast()) }
    };
    std::array::from_fn(|c| (mask(c, false), mask(c, true)))
}

/// Channel `c`'s bytes (in the low 8 lanes) of pixels `first..first + 8` of an RGB `row`.
///
/// # Safety
/// `first + 8` pixels lie in `row`; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather8(
    row: &[u8],
    first: usize,
    masks: &[(std::arch::x86_64::__m128i, std::arch::x86_64::__m128i); 3],
) -> [std::arch::x86_64::__m128i; 3] {
    use std::arch::x86_64::*;
    debug_assert!((first + 8) * 3 <= row.len());
    // SAFETY: bytes 3·first .. 3·first + 24 lie in the row (the caller's promise).
    let (lo, hi) = unsafe {
        let p = row.as_ptr().add(first * 3);
        (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(8).cast()))
    };
    masks.map(|(mlo, mhi)| _mm_or_si128(_mm_shuffle_epi8(lo, mlo), _mm_shuffle_epi8(hi, mhi)))
}

/// What a CHW copy writes for a channel: eight lanes from their bytes, or one value.
#[cfg(target_arch = "x86_64")]
trait ChwLanes<T> {
    /// Writes the 8 values of channel `c`'s bytes (the low 8 lanes of `bytes`) at `dst`.
    ///
    /// # Safety
    /// The CPU has AVX2 (called inside [`chw_avx2`]); `dst` has 8 writable elements.
    unsafe fn eight(&self, c: usize, bytes: std::arch::x86_64::__m128i, dst: *mut T);
    /// The value of channel `c`'s byte.
    fn one(&self, c: usize, byte: u8) -> T;
}

/// `(v × scale − mean[c]) / std[c]` as `f32`: [`convert`]'s operations, unfused, so the
/// tables' bits.
#[cfg(target_arch = "x86_64")]
struct Normalized {
    scale: f32,
    mean: [f32; 3],
    std: [f32; 3],
}

#[cfg(target_arch = "x86_64")]
impl ChwLanes<f32> for Normalized {
    #[inline(always)]
    unsafe fn eight(&self, c: usize, bytes: std::arch::x86_64::__m128i, dst: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 and 8 writable lanes (the caller's promise).
        unsafe {
            let v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
            let v = _mm256_mul_ps(v, _mm256_set1_ps(self.scale));
            let v = _mm256_sub_ps(v, _mm256_set1_ps(self.mean[c]));
            _mm256_storeu_ps(dst, _mm256_div_ps(v, _mm256_set1_ps(self.std[c])));
        }
    }

    #[inline(always)]
    fn one(&self, c: usize, byte: u8) -> f32 {
        (f32::from(byte) * self.scale - self.mean[c]) / self.std[c]
    }
}

/// The bytes as they are.
#[cfg(target_arch = "x86_64")]
struct Bytes;

#[cfg(target_arch = "x86_64")]
impl ChwLanes<u8> for Bytes {
    #[inline(always)]
    unsafe fn eight(&self, _: usize, bytes: std::arch::x86_64::__m128i, dst: *mut u8) {
        // SAFETY: AVX2 and 8 writable bytes (the caller's promise).
        unsafe { std::arch::x86_64::_mm_storel_epi64(dst.cast(), bytes) }
    }

    #[inline(always)]
    fn one(&self, _: usize, byte: u8) -> u8 {
        byte
    }
}

/// `image` (each row mirrored when `flip`) into its three CHW planes `out` through `lanes`,
/// eight pixels at a time ([`gather8`]), the row's last `width % 8` one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chw_avx2<T, L: ChwLanes<T>>(
    image: &RgbImage,
    flip: bool,
    out: &mut [MaybeUninit<T>],
    lanes: &L,
) {
    let w = image.width as usize;
    let plane = w * image.height as usize;
    assert_eq!(out.len(), plane * 3, "the output holds one image");
    let masks = channel_masks(flip);
    for (y, row) in image.pixels.chunks_exact(w * 3).enumerate() {
        let mut x = 0;
        while x + 8 <= w {
            let first = if flip { w - x - 8 } else { x };
            // SAFETY: pixels first..first + 8 lie in the row; lanes y·w + x .. + 8 of each
            // plane lie in `out` (its length checked above).
            unsafe {
                let channels = gather8(row, first, &masks);
                for (c, &bytes) in channels.iter().enumerate() {
                    let dst = out.as_mut_ptr().add(c * plane + y * w + x);
                    lanes.eight(c, bytes, dst.cast());
                }
            }
            x += 8;
        }
        for x in x..w {
            let s = if flip { w - 1 - x } else { x };
            for c in 0..3 {
                out[c * plane + y * w + x].write(lanes.one(c, row[s * 3 + c]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::iter::once;

    fn image() -> RgbImage {
        // 2×1: (10, 20, 30), (40, 50, 60)
        RgbImage::new(2, 1, vec![10, 20, 30, 40, 50, 60]).unwrap()
    }

    #[test]
    fn normalize_flip_and_layouts_in_one_copy() {
        let n = Normalize {
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 2.0],
        };
        let w = PixelWriter::new(Element::F32, Axes::Chw, Some(n)).unwrap();
        let v = w.batch_f32(once((&image(), true)), 1, 6);
        let f = |v: f32, c: usize| (v / 255.0 - n.mean[c]) / n.std[c];
        let expected = [
            f(40.0, 0),
            f(10.0, 0),
            f(50.0, 1),
            f(20.0, 1),
            f(60.0, 2),
            f(30.0, 2),
        ];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?} vs {expected:?}");
        }
        let w = PixelWriter::new(Element::U8, Axes::Hwc, None).unwrap();
        assert_eq!(
            w.batch_u8(once((&image(), true)), 1, 6),
            vec![40, 50, 60, 10, 20, 30]
        );
        assert_eq!(
            PixelWriter::new(Element::U8, Axes::Chw, None)
                .unwrap()
                .batch_u8(once((&image(), false)), 1, 6),
            vec![10, 40, 20, 50, 30, 60]
        );
    }

    /// The vectorised CHW conversion gives the tables' bits for every value, channel and flip.
    #[test]
    fn the_vectorised_conversion_equals_the_tables() {
        // Every value in every channel (113 and the 3-byte stride are prime to 256); widths
        // of whole 8-pixel blocks, with a tail, and below one block.
        for width in [37, 16, 5] {
            let len = width * 7 * 3;
            let pixels: Vec<u8> = (0..len).map(|i| (i * 113 % 256) as u8).collect();
            let image = RgbImage::new(width as u32, 7, pixels).unwrap();
            for normalize in [None, Some(Normalize::IMAGENET)] {
                let chw = PixelWriter::new(Element::F32, Axes::Chw, normalize).unwrap();
                for flip in [false, true] {
                    let fast = chw.batch_f32(once((&image, flip)), 1, len);
                    let mut tables = vec![MaybeUninit::new(0f32); len];
                    chw.fill(&image, flip, &chw.f32_table, &mut tables);
                    let tables: Vec<u32> = tables
                        .iter()
                        .map(|v| unsafe { v.assume_init() }.to_bits())
                        .collect();
                    let fast: Vec<u32> = fast.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(
                        fast, tables,
                        "width {width}, normalize {normalize:?}, flip {flip}"
                    );
                }
            }
        }
        // And the portable loop against the tables, all 256 values.
        let writer = PixelWriter::new(Element::F32, Axes::Chw, Some(Normalize::IMAGENET)).unwrap();
        let values: Vec<u8> = (0..=255).collect();
        for c in 0..3 {
            let mut out = vec![MaybeUninit::new(0f32); 256];
            let n = writer.normalize;
            convert(&values, &mut out, writer.scale, n.mean[c], n.std[c]);
            for (v, got) in out.iter().enumerate() {
                assert_eq!(
                    unsafe { got.assume_init() }.to_bits(),
                    writer.f32_table[c][v].to_bits()
                );
            }
        }
    }

    /// The CHW byte copy (AVX2 where the CPU has it) against the tables, every value, widths
    /// with and without a tail and below one 8-pixel group, flipped and not.
    #[test]
    fn the_chw_byte_copy_equals_the_tables() {
        for width in [37, 16, 5] {
            let len = width * 7 * 3;
            let pixels: Vec<u8> = (0..len).map(|i| (i * 113 % 256) as u8).collect();
            let image = RgbImage::new(width as u32, 7, pixels).unwrap();
            let chw = PixelWriter::new(Element::U8, Axes::Chw, None).unwrap();
            for flip in [false, true] {
                let fast = chw.batch_u8(once((&image, flip)), 1, len);
                let mut tables = vec![MaybeUninit::new(0u8); len];
                chw.fill(&image, flip, &chw.u8_table, &mut tables);
                let tables: Vec<u8> = tables.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_eq!(fast, tables, "width {width}, flip {flip}");
            }
        }
    }

    #[test]
    fn half_types_round_to_nearest() {
        let w = PixelWriter::new(Element::Bf16, Axes::Hwc, None).unwrap();
        let v = w.batch_u16(once((&image(), false)), 1, 6);
        // 10/255 = 0.039215688 (0x3d20a0a1) → bf16 0x3d21 (rounded up).
        assert_eq!(v[0], 0x3d21);
        let w = PixelWriter::new(Element::F16, Axes::Hwc, None).unwrap();
        let v = w.batch_u16(once((&image(), false)), 1, 6);
        assert_eq!(v[0], half::f16::from_f32(10.0 / 255.0).to_bits());
        assert!(PixelWriter::new(Element::U8, Axes::Hwc, Some(Normalize::IMAGENET)).is_err());
    }
}
