//! DeepSpeech2's input features, as deepspeech.pytorch computes them (librosa's STFT of 2018):
//! frames of `window` samples every `hop` samples, the signal first padded by `n_fft / 2` on each
//! side by reflection (librosa's `center = True`), a symmetric Hamming window (scipy's
//! `hamming(N)`), |rFFT| over `n_fft` points, log(1 + |X|), then normalised over the utterance
//! to zero mean and unit (unbiased) standard deviation. At 16 kHz with 20 ms windows and a 10 ms
//! hop: 320-sample windows, 160-sample hop, 161 frequency bins.

use realfft::RealFftPlanner;

/// The spectrogram settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectrogramSpec {
    /// Window and FFT length in samples.
    pub window: usize,
    /// Hop between frames in samples.
    pub hop: usize,
}

impl SpectrogramSpec {
    /// 20 ms windows every 10 ms at `rate` Hz.
    pub fn deepspeech(rate: u32) -> Self {
        let window = (rate as usize * 20) / 1000;
        Self {
            window,
            hop: window / 2,
        }
    }

    /// Frequency bins per frame: window / 2 + 1.
    pub fn bins(&self) -> usize {
        self.window / 2 + 1
    }

    /// Frames of a signal of `n` samples: 1 + n / hop.
    pub fn frames(&self, n: usize) -> usize {
        1 + n / self.hop
    }
}

/// Features of one utterance: (frames, bins), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrogram {
    pub frames: usize,
    pub bins: usize,
    pub values: Vec<f32>,
}

/// The symmetric Hamming window of length `n`: 0.54 − 0.46 cos(2πk / (n − 1)).
pub fn hamming(n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![1.0];
    }
    (0..n)
        .map(|k| 0.54 - 0.46 * (2.0 * std::f64::consts::PI * k as f64 / (n - 1) as f64).cos())
        .collect()
}

/// The normalised log-magnitude spectrogram of `signal`. Errors when the signal is shorter than
/// the reflection padding needs (n_fft / 2 + 1 samples).
pub fn spectrogram(signal: &[f32], spec: SpectrogramSpec) -> Result<Spectrogram, String> {
    let (n_fft, hop) = (spec.window, spec.hop);
    if n_fft < 2 || hop == 0 {
        return Err(format!("window {n_fft} and hop {hop} must be ≥ 2 and ≥ 1"));
    }
    let pad = n_fft / 2;
    if signal.len() <= pad {
        return Err(format!(
            "{} samples are too few for a {n_fft}-sample window (at least {} needed)",
            signal.len(),
            pad + 1
        ));
    }
    // Reflection without repeating the edge sample (numpy's mode = "reflect").
    let n = signal.len();
    let at = |i: isize| -> f32 {
        let j = if i < 0 {
            -i
        } else if i >= n as isize {
            2 * (n as isize - 1) - i
        } else {
            i
        };
        signal[j as usize]
    };
    let window = hamming(n_fft);
    let frames = spec.frames(n);
    let bins = spec.bins();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let (mut input, mut output) = (fft.make_input_vec(), fft.make_output_vec());
    let mut values = Vec::with_capacity(frames * bins);
    for f in 0..frames {
        let start = (f * hop) as isize - pad as isize;
        for (k, x) in input.iter_mut().enumerate() {
            *x = at(start + k as isize) as f64 * window[k];
        }
        fft.process(&mut input, &mut output)
            .map_err(|e| format!("FFT failed: {e}"))?;
        values.extend(output.iter().map(|c| c.norm().ln_1p()));
    }
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (count - 1.0).max(1.0);
    let std = var.sqrt();
    // A constant signal has no spread: leave it centred rather than divide by zero.
    let scale = if std > 0.0 { 1.0 / std } else { 1.0 };
    Ok(Spectrogram {
        frames,
        bins,
        values: values.iter().map(|v| ((v - mean) * scale) as f32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepspeech_sizes_at_16_khz() {
        let s = SpectrogramSpec::deepspeech(16_000);
        assert_eq!((s.window, s.hop, s.bins()), (320, 160, 161));
        assert_eq!(s.frames(16_000), 101);
    }

    #[test]
    fn a_pure_tone_peaks_in_its_bin_and_the_result_is_normalised() {
        let spec = SpectrogramSpec::deepspeech(16_000);
        // 1 kHz at 16 kHz: bin 1000 / (16000 / 320) = 20.
        let x: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let s = spectrogram(&x, spec).unwrap();
        assert_eq!((s.frames, s.bins), (51, 161));
        let row = &s.values[25 * 161..26 * 161];
        let peak = (0..161).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(peak, 20);
        let n = s.values.len() as f64;
        let mean = s.values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = s
            .values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }

    #[test]
    fn too_short_signals_are_refused() {
        let spec = SpectrogramSpec::deepspeech(16_000);
        assert!(spectrogram(&[0.1; 160], spec)
            .unwrap_err()
            .contains("too few"));
        assert!(spectrogram(&[0.1; 161], spec).is_ok());
    }
}
