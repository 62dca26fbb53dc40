//! A bounds-checked front to the `gemm` crate's SGEMM.

use std::mem::MaybeUninit;

use gemm::Parallelism;

/// A matrix stored in a slice with a row stride and a column stride (in elements).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strided<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], row_stride: usize) -> Self {
        Strided {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `row_stride` apart.
    pub fn transposed(data: &'a [f32], row_stride: usize) -> Self {
        Strided {
            data,
            row_stride: 1,
            col_stride: row_stride,
        }
    }
}

/// The last index a `rows × cols` matrix with these strides touches, plus one.
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

/// `dst[m × n] (+)= a[m × k] · b[k × n]`, `dst` row-major with rows `dst_row_stride` apart;
/// adds to `dst` when `accumulate`, overwrites it otherwise.
///
/// # Panics
/// When a matrix does not fit in its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    a: Strided<'_>,
    b: Strided<'_>,
    parallelism: Parallelism,
) {
    sgemm_strided(
        m,
        n,
        k,
        dst,
        (dst_row_stride, 1),
        accumulate,
        a,
        b,
        parallelism,
    );
}

/// `dst (+)= a[m × k] · b[k × n]` where `dst` holds the `m × n` result transposed: row-major
/// `n × m` with rows `dst_row_stride` apart. (The `gemm` crate is column-major at heart: a
/// product whose natural layout is the transpose of the one wanted runs up to 1.5x faster
/// written this way, e.g. the convolutions' weight gradients.)
///
/// # Panics
/// When a matrix does not fit in its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_transposed_dst(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    a: Strided<'_>,
    b: Strided<'_>,
    parallelism: Parallelism,
) {
    sgemm_strided(
        m,
        n,
        k,
        dst,
        (1, dst_row_stride),
        accumulate,
        a,
        b,
        parallelism,
    );
}

/// [`sgemm`] with the destination's (row, column) strides given.
#[allow(clippy::too_many_arguments)]
fn sgemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    a: Strided<'_>,
    b: Strided<'_>,
    parallelism: Parallelism,
) {
    let len = dst.len();
    // SAFETY: `dst` is `len` initialised floats, borrowed mutably (so it aliases neither
    // input); reading it when accumulating is fine.
    unsafe {
        sgemm_raw(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            len,
            dst_strides,
            accumulate,
            a,
            b,
            parallelism,
        )
    }
}

/// `dst[m × n] = a[m × k] · b[k × n]` into memory not yet written: every element of the
/// `m × n` matrix (rows `dst_row_stride` apart) is initialised afterwards, nothing is read.
///
/// # Panics
/// When a matrix does not fit in its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_uninit(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    parallelism: Parallelism,
) {
    let len = dst.len();
    // SAFETY: `dst` is `len` writable floats, borrowed mutably; with `accumulate` false
    // `gemm` never reads the destination (its alpha is zeroed), it only writes it.
    unsafe {
        sgemm_raw(
            m,
            n,
            k,
            dst.as_mut_ptr().cast(),
            len,
            (dst_row_stride, 1),
            false,
            a,
            b,
            parallelism,
        )
    }
}

/// # Safety
/// `dst` must be valid for writes of `dst_len` floats, and for reads of them when
/// `accumulate`, and alias neither `a` nor `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_len: usize,
    (dst_row_stride, dst_col_stride): (usize, usize),
    accumulate: bool,
    a: Strided<'_>,
    b: Strided<'_>,
    parallelism: Parallelism,
) {
    assert!(
        extent(m, n, dst_row_stride, dst_col_stride) <= dst_len,
        "sgemm: dst too short"
    );
    assert!(
        extent(m, k, a.row_stride, a.col_stride) <= a.data.len(),
        "sgemm: a too short"
    );
    assert!(
        extent(k, n, b.row_stride, b.col_stride) <= b.data.len(),
        "sgemm: b too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                for col in 0..n {
                    // SAFETY: inside `dst` by the first assert.
                    unsafe {
                        dst.add(row * dst_row_stride + col * dst_col_stride)
                            .write(0.0)
                    };
                }
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every element the three matrices address inside its
    // buffer; the caller guarantees `dst` is writable (readable when accumulating) and
    // aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_col_stride as isize,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_a_naive_product_plain_transposed_and_accumulated() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 1.5).collect();
        let want = naive(m, n, k, &a, &b);

        let mut c = vec![9.0; m * n];
        sgemm(
            m,
            n,
            k,
            &mut c,
            n,
            false,
            Strided::rows(&a, k),
            Strided::rows(&b, n),
            Parallelism::None,
        );
        assert_eq!(c, want);

        // aᵀ stored: at[k × m]; b stored transposed: bt[n × k].
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        sgemm(
            m,
            n,
            k,
            &mut c,
            n,
            true,
            Strided::transposed(&at, m),
            Strided::transposed(&bt, k),
            Parallelism::None,
        );
        let twice: Vec<f32> = want.iter().map(|v| v * 2.0).collect();
        assert_eq!(c, twice);

        // The result stored transposed (n × m, rows m + 2 apart), overwritten then added to.
        let mut ct = vec![9.0; n * (m + 2)];
        for accumulate in [false, true] {
            sgemm_transposed_dst(
                m,
                n,
                k,
                &mut ct,
                m + 2,
                accumulate,
                Strided::rows(&a, k),
                Strided::rows(&b, n),
                Parallelism::None,
            );
        }
        for i in 0..m {
            for j in 0..n {
                assert_eq!(ct[j * (m + 2) + i], twice[i * n + j]);
            }
            assert_eq!(ct[i * (m + 2) + m..][..2], [9.0, 9.0]);
        }
    }

    #[test]
    fn writes_every_element_of_an_unwritten_strided_destination() {
        let (m, n, k) = (3, 37, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 11) as f32 * 0.25).collect();
        let want = naive(m, n, k, &a, &b);
        // Rows 40 apart; the gaps between them stay untouched.
        let mut dst = vec![MaybeUninit::new(-1.0f32); 2 * 40 + n];
        sgemm_uninit(
            m,
            n,
            k,
            &mut dst,
            40,
            Strided::rows(&a, k),
            Strided::rows(&b, n),
            Parallelism::None,
        );
        // SAFETY: initialised by `vec!` and then by the SGEMM.
        let dst: Vec<f32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
        for row in 0..m {
            assert_eq!(dst[row * 40..][..n], want[row * n..][..n]);
        }
        assert!(dst[n..40].iter().all(|&v| v == -1.0));
    }

    #[test]
    #[should_panic(expected = "b too short")]
    fn a_short_slice_is_refused() {
        let mut c = vec![0.0; 4];
        sgemm(
            2,
            2,
            2,
            &mut c,
            2,
            false,
            Strided::rows(&[1.0; 4], 2),
            Strided::rows(&[1.0; 3], 2),
            Parallelism::None,
        );
    }
}
