//! The dropout generator's key for the GPU: `kernels::rng::CounterRng` keeps its mixed seed
//! private, and its draws are `mix(key ^ mix(stream ^ mix(index)))`, so one draw and the inverse
//! of `mix` give the key, from which `kernels.cu` draws the same numbers.

use kernels::rng::CounterRng;

/// The mixed seed of a [`CounterRng`] (its `bits(s, i)` is `mix(key ^ mix(s ^ mix(i)))`),
/// recovered by inverting `mix` once: the GPU draws from the key directly.
pub fn rng_key(rng: &CounterRng) -> u64 {
    unmix(rng.bits(0, 0)) ^ mix(mix(0))
}

/// SplitMix64's finalizer, as `kernels::rng`'s.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The inverse of [`mix`] (each step of it is a bijection of u64).
fn unmix(mut z: u64) -> u64 {
    /// The inverse of `x ^ (x >> s)`.
    fn unshift(y: u64, s: u32) -> u64 {
        let mut x = y;
        for _ in 0..64 / s + 1 {
            x = y ^ (x >> s);
        }
        x
    }
    /// The inverse of an odd `c` modulo 2^64 (Newton's iteration doubles the correct bits).
    fn inverse(c: u64) -> u64 {
        let mut x = c;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
        }
        x
    }
    z = unshift(z, 31);
    z = z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB));
    z = unshift(z, 27);
    z = z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9));
    z = unshift(z, 30);
    z.wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_key_reproduces_every_draw() {
        for seed in [0u64, 1, 42, u64::MAX, 0x1234_5678_9abc_def0] {
            let rng = CounterRng::new(seed);
            let key = rng_key(&rng);
            for (s, i) in [(0u64, 0u64), (3, 7), (1 << 40, 12345), (u64::MAX, u64::MAX)] {
                assert_eq!(mix(key ^ mix(s ^ mix(i))), rng.bits(s, i), "seed {seed}");
            }
        }
    }

    #[test]
    fn unmix_inverts_mix() {
        for z in [0u64, 1, 2, 0xdead_beef, u64::MAX, 1 << 63] {
            assert_eq!(unmix(mix(z)), z);
            assert_eq!(mix(unmix(z)), z);
        }
    }
}
