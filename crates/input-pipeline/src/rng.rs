//! The seeded random numbers of the pipeline.
//!
//! A small SplitMix64 generator written here rather than a `rand` generator, so that the
//! orders a seed produces are fixed by this file and never change with a dependency's
//! version: a resume state written today must replay the same order next year.

/// A seeded SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one purpose (`stream`) of one epoch under a user seed; distinct
    /// purposes and epochs get unrelated sequences.
    pub fn for_epoch(seed: u64, epoch: u64, stream: u64) -> Self {
        let mut rng = Rng(seed);
        let a = rng.next_u64() ^ epoch.wrapping_mul(0xd1b5_4a32_d192_ed03);
        let b = Rng(a).next_u64() ^ stream.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7);
        Rng(Rng(b).next_u64())
    }

    /// The generator of one record's random draws (a training-time crop and flip) in one
    /// epoch: keyed by (seed, epoch, file, record) alone, so the draws never depend on which
    /// thread, rank or process makes them, nor on what was drawn before.
    pub fn for_record(seed: u64, epoch: u64, source: u32, index: u64) -> Self {
        const RECORD_DRAWS: u64 = 0x6a09_e667_f3bc_c909;
        Rng::for_epoch(
            seed ^ RECORD_DRAWS,
            epoch,
            (u64::from(source) << 40) ^ index,
        )
    }

    /// A uniform `f64` in [0, 1) (the top 53 bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (Lemire's multiply-shift with rejection), `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            let low = product as u64;
            if low >= n.wrapping_neg() % n {
                return (product >> 64) as u64;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_draws_are_keyed_by_the_record_alone() {
        let draws = |seed, epoch, source, index| {
            let mut rng = Rng::for_record(seed, epoch, source, index);
            [rng.next_f64(), rng.next_f64()]
        };
        assert_eq!(draws(1, 2, 3, 4), draws(1, 2, 3, 4));
        let base = draws(1, 2, 3, 4);
        for other in [
            draws(9, 2, 3, 4),
            draws(1, 9, 3, 4),
            draws(1, 2, 9, 4),
            draws(1, 2, 3, 9),
        ] {
            assert_ne!(base, other);
        }
        assert!(base.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = Rng::for_epoch(1, 0, 0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[rng.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn epochs_and_streams_differ() {
        let first = |seed, epoch, stream| Rng::for_epoch(seed, epoch, stream).next_u64();
        assert_ne!(first(1, 0, 0), first(1, 1, 0));
        assert_ne!(first(1, 0, 0), first(1, 0, 1));
        assert_ne!(first(1, 0, 0), first(2, 0, 0));
        assert_eq!(first(1, 0, 0), first(1, 0, 0));
    }
}
