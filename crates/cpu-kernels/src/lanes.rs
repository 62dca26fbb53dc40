//! One vector of `f32` lanes, as the convolution kernels see it: AVX-512 (16 lanes), AVX2 +
//! FMA (8) and a portable array of 8 that any target compiles (and, in [`crate::bf16`],
//! accumulators fed pairs of bfloat16). The kernels in
//! [`crate::implicit`] are written once, generic over [`Lanes`], and instantiated inside
//! functions compiled for each instruction set (`#[target_feature]`), so every method here
//! is `#[inline(always)]`: it must melt into that function's code.

/// A vector of [`Lanes::L`] `f32` accumulators and the operands it multiplies: `f32` lanes
/// themselves, or pairs of bfloat16 ([`crate::bf16`]).
pub(crate) trait Lanes: Copy {
    /// What operands are stored as in memory.
    type Elem: Copy;
    /// One operand vector.
    type In: Copy;
    /// Accumulators per vector.
    const L: usize;
    /// Elements one operand load covers: `L`, or `2·L` when each accumulator takes a pair of
    /// consecutive elements.
    const STEP: usize;
    /// All zeros.
    fn zero() -> Self;
    /// [`Lanes::STEP`] elements from `p`, any alignment.
    ///
    /// # Safety
    /// `p` must be valid for reads of `STEP` elements.
    unsafe fn load(p: *const Self::Elem) -> Self::In;
    /// `*p` for every accumulator.
    ///
    /// # Safety
    /// `p` must be valid for a read.
    unsafe fn splat(p: *const Self::Elem) -> Self::In;
    /// `self + a · b`, lane by lane (for pairs: both products, the second element's first).
    fn mac(self, a: Self::In, b: Self::In) -> Self;
    /// Writes the `L` accumulators to `p`, any alignment.
    ///
    /// # Safety
    /// `p` must be valid for writes of `L` floats.
    unsafe fn store(self, p: *mut f32);
    /// The lane sums of 16 vectors: `out[i]` = the sum of `v[i]`'s lanes, in an order fixed
    /// per instruction set (lane 0 first for 8 lanes; AVX-512 adds them as a tree, about a
    /// tenth of the instructions of 16 separate sums).
    fn sums16(v: [Self; 16]) -> [f32; 16];
}

/// An operand element: its value as `f32`.
pub(crate) trait Element: Copy {
    fn value(self) -> f32;
}

impl Element for f32 {
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
}

/// Eight lanes as a plain array: the fallback for CPUs without AVX2 + FMA (and for other
/// architectures). No fused multiply-add: `a · b + c` rounded twice.
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; 8]);

impl Lanes for Portable {
    type Elem = f32;
    type In = Self;
    const L: usize = 8;
    const STEP: usize = 8;
    #[inline(always)]
    fn zero() -> Self {
        Portable([0.0; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract; `read_unaligned` allows any alignment.
        Portable(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        // SAFETY: the caller's contract.
        Portable([unsafe { *p }; 8])
    }
    #[inline(always)]
    fn mac(self, a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] * b.0[i] + self.0[i]))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    fn sums16(v: [Self; 16]) -> [f32; 16] {
        v.map(|v| v.0.iter().sum())
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512, tree16, unwrap16};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Lanes;

    /// Sixteen lanes in a `zmm` register. Only used inside functions compiled with
    /// `#[target_feature(enable = "avx512f")]`, called once the CPU is known to have it.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    /// Eight lanes in a `ymm` register. Only used inside functions compiled with
    /// `#[target_feature(enable = "avx2,fma")]`, called once the CPU is known to have them.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256);

    // SAFETY (every block below): the vector types are only ever constructed inside functions
    // compiled for their instruction set and reached only on a CPU that has it (see
    // `crate::isa::Isa`); the pointer contracts are the callers'.
    impl Lanes for Avx512 {
        type Elem = f32;
        type In = Self;
        const L: usize = 16;
        const STEP: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            Avx512(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            Avx512(unsafe { _mm512_set1_ps(*p) })
        }
        #[inline(always)]
        fn mac(self, a: Self, b: Self) -> Self {
            Avx512(unsafe { _mm512_fmadd_ps(a.0, b.0, self.0) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn sums16(v: [Self; 16]) -> [f32; 16] {
            tree16(unwrap16(&v, |v| v.0))
        }
    }

    /// The registers of 16 vectors, by a loop (see [`tree16`] on `map`).
    #[inline(always)]
    pub(crate) fn unwrap16<T>(v: &[T; 16], register: impl Fn(&T) -> __m512) -> [__m512; 16] {
        // SAFETY: AVX-512F is the caller's (see the types' contracts).
        let mut out = [unsafe { _mm512_setzero_ps() }; 16];
        for (out, v) in out.iter_mut().zip(v) {
            *out = register(v);
        }
        out
    }

    /// The lane sums of 16 vectors, as a tree (see [`Lanes::sums16`]): lane `l` of input `i`
    /// adds in as `((e0 + e2) + (e1 + e3))` with `ej = (l[j] + l[8 + j]) + (l[4 + j] +
    /// l[12 + j])`.
    #[inline(always)]
    pub(crate) fn tree16(v: [__m512; 16]) -> [f32; 16] {
        // Halve, pair by pair, until each 128-bit quarter of one vector holds the 4
        // partial sums of one input: quarters of 4 floats are q0..q3.
        unsafe {
            // [a.q0 + a.q2, a.q1 + a.q3, b.q0 + b.q2, b.q1 + b.q3] for pairs (a, b).
            // (Loops over arrays, not `array::from_fn` or `map`: those may stay out of line,
            // compiled without AVX-512, and copy the vectors through memory.)
            let mut halves = [_mm512_setzero_ps(); 8];
            for (i, half) in halves.iter_mut().enumerate() {
                let (a, b) = (v[2 * i], v[2 * i + 1]);
                *half = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
                );
            }
            // Quarter j of quarters[i] holds input 4i + j's four partial sums.
            let mut quarters = [_mm512_setzero_ps(); 4];
            for (i, quarter) in quarters.iter_mut().enumerate() {
                let (s, t) = (halves[2 * i], halves[2 * i + 1]);
                *quarter = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b10_00_10_00>(s, t),
                    _mm512_shuffle_f32x4::<0b11_01_11_01>(s, t),
                );
            }
            // Within each quarter j: [in(j), in(4 + j)] pairs, then all four.
            let (q0, q1, q2, q3) = (quarters[0], quarters[1], quarters[2], quarters[3]);
            let u0 = _mm512_add_ps(_mm512_unpacklo_ps(q0, q1), _mm512_unpackhi_ps(q0, q1));
            let u1 = _mm512_add_ps(_mm512_unpacklo_ps(q2, q3), _mm512_unpackhi_ps(q2, q3));
            let r = _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(u0, u1),
                _mm512_shuffle_ps::<0b11_10_11_10>(u0, u1),
            );
            // Lane 4j + t of `r` is the sum of input 4t + j.
            let mut lanes = [0.0f32; 16];
            _mm512_storeu_ps(lanes.as_mut_ptr(), r);
            std::array::from_fn(|i| lanes[4 * (i % 4) + i / 4])
        }
    }

    impl Lanes for Avx2 {
        type Elem = f32;
        type In = Self;
        const L: usize = 8;
        const STEP: usize = 8;
        #[inline(always)]
        fn zero() -> Self {
            Avx2(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            Avx2(unsafe { _mm256_broadcast_ss(&*p) })
        }
        #[inline(always)]
        fn mac(self, a: Self, b: Self) -> Self {
            Avx2(unsafe { _mm256_fmadd_ps(a.0, b.0, self.0) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn sums16(v: [Self; 16]) -> [f32; 16] {
            let mut sums = [0.0f32; 16];
            for (sum, v) in sums.iter_mut().zip(&v) {
                let mut lanes = [0.0f32; 8];
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v.0) };
                *sum = lanes.iter().sum();
            }
            sums
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sums16` puts each vector's lane sum at its index, on every instruction set here
    /// (small integers: every order of addition gives the same, exact sums).
    fn check<V: Lanes<Elem = f32, In = V>>() {
        let vectors: [V; 16] = std::array::from_fn(|i| {
            let lanes: Vec<f32> = (0..V::L).map(|l| (i * 100 + l) as f32).collect();
            // SAFETY: `L` floats.
            unsafe { V::load(lanes.as_ptr()) }
        });
        let want: [f32; 16] =
            std::array::from_fn(|i| (0..V::L).map(|l| (i * 100 + l) as f32).sum());
        assert_eq!(V::sums16(vectors), want);
    }

    #[test]
    fn lane_sums_land_at_their_vectors_index() {
        check::<Portable>();
        #[cfg(target_arch = "x86_64")]
        {
            if crate::Isa::Avx512.available() {
                check::<Avx512>();
            } else {
                eprintln!("NOT TESTED: AVX-512 lane sums (this CPU lacks AVX-512F)");
            }
            if crate::Isa::Avx2Fma.available() {
                check::<Avx2>();
            } else {
                eprintln!("NOT TESTED: AVX2 lane sums (this CPU lacks AVX2 + FMA)");
            }
        }
    }
}
