//! Counter-based random numbers: value = hash(seed, stream, index).
//!
//! Dropout masks and initial weights depend only on (seed, stream, index), never on how many
//! numbers were drawn before or on thread scheduling. That is what makes `--resume` reproduce an
//! uninterrupted run exactly without saving any generator state.

/// A stateless generator: every draw is a pure function of its coordinates.
#[derive(Clone, Copy, Debug)]
pub struct CounterRng {
    seed: u64,
}

/// SplitMix64's finalizer: a bijective 64-bit mix with good avalanche.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl CounterRng {
    pub fn new(seed: u64) -> Self {
        Self { seed: mix(seed) }
    }

    /// 64 random bits at (stream, index).
    #[inline(always)]
    pub fn bits(&self, stream: u64, index: u64) -> u64 {
        mix(self.seed ^ mix(stream ^ mix(index)))
    }

    /// Uniform in [0, 1) with 24 bits of resolution (exact in f32).
    #[inline(always)]
    pub fn uniform(&self, stream: u64, index: u64) -> f32 {
        (self.bits(stream, index) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 bits of resolution.
    #[inline(always)]
    pub fn uniform_f64(&self, stream: u64, index: u64) -> f64 {
        (self.bits(stream, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A standard normal from two uniforms (Box–Muller): `u` in (0, 1] (so its log is finite),
/// `v` in [0, 1).
#[inline]
pub fn box_muller(u: f64, v: f64) -> f64 {
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let rng = CounterRng::new(42);
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = rng.uniform(3, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_400..10_600).contains(&b), "bucket {b}");
        }
    }

    #[test]
    fn streams_and_seeds_differ() {
        let a = CounterRng::new(1);
        let b = CounterRng::new(2);
        assert_ne!(a.bits(0, 0), b.bits(0, 0));
        assert_ne!(a.bits(0, 0), a.bits(1, 0));
        assert_ne!(a.bits(0, 0), a.bits(0, 1));
        assert_eq!(a.bits(5, 9), CounterRng::new(1).bits(5, 9));
    }

    #[test]
    fn box_muller_gives_unit_normal_moments() {
        let rng = CounterRng::new(7);
        let n = 200_000u64;
        let xs: Vec<f64> = (0..n)
            .map(|i| box_muller(1.0 - rng.uniform_f64(0, i), rng.uniform_f64(1, i)))
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let within_1 = xs.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!((within_1 - 0.6827).abs() < 0.005, "{within_1}");
        assert_eq!(box_muller(1.0, 0.3), 0.0);
    }
}
