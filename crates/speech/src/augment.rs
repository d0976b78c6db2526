//! Training-time augmentation, drawn afresh for every (seed, epoch, utterance) so a resumed run
//! sees what an uninterrupted one would: speed perturbation (band-limited resampling, which moves
//! tempo and pitch together like SoX `speed` and Kaldi's speed perturbation), gain, additive white
//! noise at a random signal-to-noise ratio, and SpecAugment time and frequency masks (Park et al.
//! 2019) on the normalised features. Off unless a config has `[data.augment]`.

use crate::features::{spectrogram, Spectrogram, SpectrogramSpec};
use kernels::rng::{box_muller, CounterRng};
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// `[data.augment]`. Every part defaults to off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Speed factors drawn uniformly from [lo, hi] (> 1 is faster and shorter).
    #[serde(default = "unit_range")]
    pub speed: [f64; 2],
    /// Gain in dB drawn uniformly from [lo, hi].
    #[serde(default)]
    pub gain_db: [f64; 2],
    /// The probability that an utterance gets white noise, at an SNR (dB) drawn from
    /// `noise_snr_db`.
    #[serde(default)]
    pub noise_prob: f64,
    #[serde(default = "default_snr")]
    pub noise_snr_db: [f64; 2],
    /// Frequency masks per utterance, each up to `freq_mask_width` bins wide.
    #[serde(default)]
    pub freq_masks: usize,
    #[serde(default)]
    pub freq_mask_width: usize,
    /// Time masks per utterance, each up to `time_mask_width` frames and at most
    /// `time_mask_fraction` of the utterance wide.
    #[serde(default)]
    pub time_masks: usize,
    #[serde(default)]
    pub time_mask_width: usize,
    #[serde(default = "default_time_fraction")]
    pub time_mask_fraction: f64,
}

fn unit_range() -> [f64; 2] {
    [1.0, 1.0]
}
fn default_snr() -> [f64; 2] {
    [10.0, 30.0]
}
fn default_time_fraction() -> f64 {
    0.2
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            speed: unit_range(),
            gain_db: [0.0, 0.0],
            noise_prob: 0.0,
            noise_snr_db: default_snr(),
            freq_masks: 0,
            freq_mask_width: 0,
            time_masks: 0,
            time_mask_width: 0,
            time_mask_fraction: default_time_fraction(),
        }
    }
}

fn check_range(name: &str, r: [f64; 2], min: f64, max: f64) -> Result<(), String> {
    if !(r[0].is_finite() && r[1].is_finite() && r[0] <= r[1] && r[0] >= min && r[1] <= max) {
        return Err(format!(
            "[data.augment] {name} = [{}, {}]: needs lo ≤ hi within [{min}, {max}]",
            r[0], r[1]
        ));
    }
    Ok(())
}

impl AugmentConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_range("speed", self.speed, 0.5, 2.0)?;
        check_range("gain_db", self.gain_db, -40.0, 40.0)?;
        check_range("noise_snr_db", self.noise_snr_db, -20.0, 100.0)?;
        if !(0.0..=1.0).contains(&self.noise_prob) {
            return Err(format!(
                "[data.augment] noise_prob = {}: a probability in [0, 1]",
                self.noise_prob
            ));
        }
        if !(0.0..=1.0).contains(&self.time_mask_fraction) {
            return Err(format!(
                "[data.augment] time_mask_fraction = {}: must be in [0, 1]",
                self.time_mask_fraction
            ));
        }
        if (self.freq_masks > 0) != (self.freq_mask_width > 0) {
            return Err("[data.augment] freq_masks and freq_mask_width go together".into());
        }
        if (self.time_masks > 0) != (self.time_mask_width > 0) {
            return Err("[data.augment] time_masks and time_mask_width go together".into());
        }
        Ok(())
    }
}

/// Draws from one utterance's stream: each draw takes the next index, so none repeats.
struct Draws {
    rng: CounterRng,
    stream: u64,
    index: u64,
}

impl Draws {
    fn uniform(&mut self) -> f64 {
        self.index += 1;
        self.rng.uniform_f64(self.stream, self.index)
    }

    fn between(&mut self, r: [f64; 2]) -> f64 {
        r[0] + (r[1] - r[0]) * self.uniform()
    }

    /// An integer in [0, n] inclusive.
    fn up_to(&mut self, n: usize) -> usize {
        ((self.uniform() * (n + 1) as f64) as usize).min(n)
    }

    /// A standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let v = self.uniform();
        box_muller(u, v)
    }
}

/// `signal` played `factor` times faster: band-limited resampling to round(n / factor) samples
/// through the spectrum (scipy.signal.resample's method): bins above the shorter signal's
/// Nyquist frequency are dropped, a longer signal gets empty ones. The signal is treated as
/// periodic, which AN4's silent starts and ends make harmless.
pub fn resample(signal: &[f32], factor: f64) -> Vec<f32> {
    let n = signal.len();
    let m = ((n as f64 / factor).round() as usize).max(1);
    if m == n || n < 2 {
        return signal.to_vec();
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(m);
    let mut input: Vec<f64> = signal.iter().map(|&v| v as f64).collect();
    let mut spectrum = forward.make_output_vec();
    forward
        .process(&mut input, &mut spectrum)
        .expect("buffers come from the plan");
    let mut out_spectrum = inverse.make_input_vec();
    let keep = out_spectrum.len().min(spectrum.len());
    out_spectrum[..keep].copy_from_slice(&spectrum[..keep]);
    // scipy's treatment of the bin at half the shorter length when that length is even: going
    // down, it is the output's Nyquist bin and gathers +k and -k (twice the real part); going
    // up, the input's (real) Nyquist bin splits between +k and -k of the longer spectrum.
    let shorter = n.min(m);
    if shorter.is_multiple_of(2) {
        let k = shorter / 2;
        if m < n {
            out_spectrum[k].re *= 2.0;
        } else {
            out_spectrum[k].re *= 0.5;
        }
        out_spectrum[k].im = 0.0;
    }
    if m.is_multiple_of(2) {
        let last = out_spectrum.len() - 1;
        out_spectrum[last].im = 0.0;
    }
    out_spectrum[0].im = 0.0;
    let mut out = inverse.make_output_vec();
    inverse
        .process(&mut out_spectrum, &mut out)
        .expect("first and last bins are real");
    // realfft does not normalise: the round trip scales by n; the new length keeps amplitudes.
    let scale = 1.0 / n as f64;
    out.iter().map(|&v| (v * scale) as f32).collect()
}

/// Adds white Gaussian noise at `snr_db` below the signal's mean power, in place.
fn add_noise(signal: &mut [f32], snr_db: f64, draws: &mut Draws) {
    let power = signal.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / signal.len() as f64;
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    if sigma == 0.0 {
        return;
    }
    for v in signal.iter_mut() {
        *v += (sigma * draws.normal()) as f32;
    }
}

/// Zeroes (the normalised mean) `count` bands of up to `width` bins and up to `width`
/// frames (capped at `fraction` of the utterance) in time.
fn mask(spec: &mut Spectrogram, config: &AugmentConfig, draws: &mut Draws) {
    for _ in 0..config.freq_masks {
        let w = draws.up_to(config.freq_mask_width.min(spec.bins));
        let start = draws.up_to(spec.bins - w);
        for row in spec.values.chunks_exact_mut(spec.bins) {
            row[start..start + w].fill(0.0);
        }
    }
    let cap =
        ((spec.frames as f64 * config.time_mask_fraction) as usize).min(config.time_mask_width);
    for _ in 0..config.time_masks {
        let w = draws.up_to(cap);
        let start = draws.up_to(spec.frames - w);
        spec.values[start * spec.bins..(start + w) * spec.bins].fill(0.0);
    }
}

/// The features of `signal` under the augmentation drawn for (`seed`, `epoch`, `utterance`).
pub fn augmented_spectrogram(
    signal: &[f32],
    spec: SpectrogramSpec,
    config: &AugmentConfig,
    seed: u64,
    epoch: usize,
    utterance: usize,
) -> Result<Spectrogram, String> {
    let mut draws = Draws {
        rng: CounterRng::new(seed ^ 0xA06A_E47A_710E_5EED),
        stream: ((epoch as u64) << 32) | utterance as u64,
        index: 0,
    };
    let factor = draws.between(config.speed);
    let mut audio = resample(signal, factor);
    let gain = 10f64.powf(draws.between(config.gain_db) / 20.0) as f32;
    audio.iter_mut().for_each(|v| *v *= gain);
    if draws.uniform() < config.noise_prob {
        let snr = draws.between(config.noise_snr_db);
        add_noise(&mut audio, snr, &mut draws);
    }
    let mut features = spectrogram(&audio, spec)?;
    mask(&mut features, config, &mut draws);
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn max_diff(a: &[f32], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len(), "lengths differ");
        a.iter().zip(b).fold(0.0, |m, (&x, &y)| {
            let d = (x as f64 - y).abs();
            assert!(d.is_finite(), "non-finite value");
            m.max(d)
        })
    }

    /// `cycles` periods of a sine over `n` samples.
    fn sine(n: usize, cycles: f64) -> Vec<f64> {
        (0..n)
            .map(|j| (2.0 * PI * cycles * j as f64 / n as f64).sin())
            .collect()
    }

    #[test]
    fn resampling_a_periodic_band_limited_signal_samples_it_at_the_new_rate() {
        // 1000 cycles of a sine, plus 7000 for the slower signals: the ideal resampler samples
        // the same periodic waveform m times instead of n; a faster playback (fewer samples)
        // must drop what lies above its Nyquist frequency.
        for (n, factor) in [(16_000, 1.25), (16_000, 0.8), (15_999, 1.1), (9_001, 0.9)] {
            let low = sine(n, 1000.0);
            let x: Vec<f32> = low.iter().map(|&v| v as f32).collect();
            let y = resample(&x, factor);
            let m = (n as f64 / factor).round() as usize;
            assert!(1000 < m / 2);
            assert!(max_diff(&y, &sine(m, 1000.0)) < 1e-4, "n {n} x{factor}");
            if m < n {
                let high_cycles = (m / 2 + 500) as f64; // above the output's Nyquist
                let mixed: Vec<f32> = low
                    .iter()
                    .zip(sine(n, high_cycles))
                    .map(|(&a, b)| (a + b) as f32)
                    .collect();
                let y = resample(&mixed, factor);
                assert!(max_diff(&y, &sine(m, 1000.0)) < 1e-4, "aliasing at n {n}");
            }
        }
    }

    #[test]
    fn the_nyquist_bin_is_folded_the_way_scipy_does() {
        // Down: cos(πj/2) over 8 samples at half the rate is (-1)^j; up: the reverse.
        let x: Vec<f32> = (0..8).map(|j| (PI * j as f64 / 2.0).cos() as f32).collect();
        let alt: Vec<f64> = (0..4)
            .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert!(max_diff(&resample(&x, 2.0), &alt) < 1e-6);
        let up: Vec<f64> = (0..8).map(|j| (PI * j as f64 / 2.0).cos()).collect();
        let alt32: Vec<f32> = alt.iter().map(|&v| v as f32).collect();
        assert!(max_diff(&resample(&alt32, 0.5), &up) < 1e-6);
        assert_eq!(resample(&x, 1.0), x);
    }

    #[test]
    fn noise_lands_at_the_asked_signal_to_noise_ratio() {
        let clean: Vec<f32> = sine(200_000, 3000.0).iter().map(|&v| v as f32).collect();
        let mut noisy = clean.clone();
        let mut draws = Draws {
            rng: CounterRng::new(5),
            stream: 0,
            index: 0,
        };
        add_noise(&mut noisy, 10.0, &mut draws);
        let power = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>();
        let signal = power(&mut clean.iter().map(|&v| v as f64));
        let noise = power(&mut noisy.iter().zip(&clean).map(|(&a, &b)| (a - b) as f64));
        let snr = 10.0 * (signal / noise).log10();
        assert!((snr - 10.0).abs() < 0.1, "SNR {snr} dB");
    }

    fn speech_like() -> Vec<f32> {
        (0..12_000)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                ((2.0 * PI * 300.0 * t).sin() * (2.0 * PI * 3.0 * t).sin()
                    + 0.3 * (2.0 * PI * 2100.0 * t).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn no_augmentation_gives_the_plain_features_and_draws_are_reproducible() {
        let x = speech_like();
        let spec = SpectrogramSpec::deepspeech(16_000);
        let plain = spectrogram(&x, spec).unwrap();
        let none = augmented_spectrogram(&x, spec, &AugmentConfig::default(), 1, 0, 0).unwrap();
        assert_eq!(none, plain);
        let config = AugmentConfig {
            speed: [0.9, 1.1],
            gain_db: [-6.0, 8.0],
            noise_prob: 0.5,
            ..AugmentConfig::default()
        };
        let a = augmented_spectrogram(&x, spec, &config, 1, 3, 7).unwrap();
        assert_eq!(
            a,
            augmented_spectrogram(&x, spec, &config, 1, 3, 7).unwrap()
        );
        assert_ne!(
            a,
            augmented_spectrogram(&x, spec, &config, 1, 4, 7).unwrap()
        );
        assert_ne!(
            a,
            augmented_spectrogram(&x, spec, &config, 1, 3, 8).unwrap()
        );
        assert_ne!(
            a,
            augmented_spectrogram(&x, spec, &config, 2, 3, 7).unwrap()
        );
        let lengths: Vec<usize> = (0..20)
            .map(|u| {
                augmented_spectrogram(&x, spec, &config, 1, 0, u)
                    .unwrap()
                    .frames
            })
            .collect();
        assert!(
            lengths.iter().all(|&f| (68..=84).contains(&f)),
            "{lengths:?}"
        );
        assert!(lengths.iter().any(|&f| f != plain.frames), "{lengths:?}");
    }

    #[test]
    fn masks_zero_whole_bands_and_leave_the_rest_as_it_was() {
        let x = speech_like();
        let spec = SpectrogramSpec::deepspeech(16_000);
        let plain = spectrogram(&x, spec).unwrap();
        let config = AugmentConfig {
            freq_masks: 2,
            freq_mask_width: 15,
            time_masks: 2,
            time_mask_width: 10,
            time_mask_fraction: 0.1,
            ..AugmentConfig::default()
        };
        let mut masked_somewhere = false;
        for u in 0..10 {
            let a = augmented_spectrogram(&x, spec, &config, 1, 0, u).unwrap();
            assert_eq!((a.frames, a.bins), (plain.frames, plain.bins));
            let zero_col = |b: usize| (0..a.frames).all(|f| a.values[f * a.bins + b] == 0.0);
            let zero_row = |f: usize| {
                a.values[f * a.bins..(f + 1) * a.bins]
                    .iter()
                    .all(|&v| v == 0.0)
            };
            let cols = (0..a.bins).filter(|&b| zero_col(b)).count();
            let rows = (0..a.frames).filter(|&f| zero_row(f)).count();
            assert!(
                cols <= 30 && rows <= 2 * 7,
                "{cols} bins, {rows} frames masked"
            );
            for f in 0..a.frames {
                for b in 0..a.bins {
                    let (v, p) = (a.values[f * a.bins + b], plain.values[f * a.bins + b]);
                    assert!(v == p || (v == 0.0 && (zero_col(b) || zero_row(f))));
                }
            }
            masked_somewhere |= cols > 0 && rows > 0;
        }
        assert!(masked_somewhere);
    }

    #[test]
    fn bad_ranges_are_refused_naming_the_key() {
        let bad = [
            AugmentConfig {
                speed: [1.1, 0.9],
                ..Default::default()
            },
            AugmentConfig {
                speed: [0.1, 1.0],
                ..Default::default()
            },
            AugmentConfig {
                noise_prob: 1.5,
                ..Default::default()
            },
            AugmentConfig {
                gain_db: [f64::NAN, 0.0],
                ..Default::default()
            },
            AugmentConfig {
                freq_masks: 2,
                ..Default::default()
            },
        ];
        let keys = ["speed", "speed", "noise_prob", "gain_db", "freq_mask"];
        for (c, key) in bad.iter().zip(keys) {
            let e = c.validate().unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        assert!(AugmentConfig::default().validate().is_ok());
    }
}
