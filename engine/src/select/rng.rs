//! A tiny deterministic PRNG (SplitMix64) and string hash (FNV-1a), enough for seeded
//! random-k selection and for the simulation tests. Not for cryptography.
//!
//! Both are fixed algorithms with published constants, so a seed gives the same
//! numbers on every platform and in every release: `random-k` selections are
//! reproducible from the job's seed alone.

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit counter passed through a strong
/// bit mixer. Every seed, zero included, gives a full-period, well-mixed stream.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits (every value exactly representable).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`.
    pub(crate) fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is below 2^-40 for `n` below 2^24
    /// (the test sizes and the adapter's shuffles).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `true` with probability `p`.
    #[cfg(test)]
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// FNV-1a, 64-bit: folds a string (a pair or rule id) into a seed.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_rng_matches_the_reference_vectors() {
        // First outputs of the reference SplitMix64 for seed 1234567 (from the
        // public-domain C implementation by Vigna).
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        // FNV-1a test vectors.
        assert_eq!(fnv1a(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn select_rng_unit_interval_and_ranges() {
        let mut rng = SplitMix64::new(0);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            let y = rng.range(-0.5, 0.25);
            assert!((-0.5..0.25).contains(&y));
            assert!(rng.below(7) < 7);
        }
    }
}
