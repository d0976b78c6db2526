//! A featurized AN4 split held in memory, and its batches: utterances sorted by length and cut
//! into consecutive batches, so padding stays small; the first epoch visits them in that order
//! (SortaGrad, Amodei et al. 2016) and later epochs in a seeded shuffle of the batches.

use crate::an4::{load_split, Split, Utterance};
use crate::augment::{augmented_spectrogram, AugmentConfig};
use crate::features::{spectrogram, Spectrogram, SpectrogramSpec};
use crate::labels::encode;
use crate::wav::read_wav;
use crate::SpeechError;
use kernels::rng::CounterRng;
use rayon::prelude::*;
use std::path::Path;

/// AN4's sample rate.
pub const RATE: u32 = 16_000;

/// What to do with an utterance whose audio cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFiles {
    /// Stop with the error naming the file.
    Fail,
    /// Leave it out and report it in [`Dataset::skipped`].
    Skip,
}

/// Utterances with their features and label sequences.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub utterances: Vec<Utterance>,
    pub features: Vec<Spectrogram>,
    pub targets: Vec<Vec<u32>>,
    /// The errors of the files left out under [`BadFiles::Skip`].
    pub skipped: Vec<String>,
}

/// The spectrogram of one WAV file at AN4's rate.
pub fn featurize(path: &Path) -> Result<Spectrogram, SpeechError> {
    let samples = read_wav(path, RATE)?;
    spectrogram(&samples, SpectrogramSpec::deepspeech(RATE))
        .map_err(|reason| SpeechError::invalid(path, reason))
}

impl Dataset {
    /// Reads and featurizes a split of the corpus at `dir` (laid out like ../shared/data/an4),
    /// on all threads.
    pub fn load(dir: &Path, split: Split, bad: BadFiles) -> Result<Self, SpeechError> {
        let utterances = load_split(dir, split)?;
        let results: Vec<Result<Spectrogram, SpeechError>> =
            utterances.par_iter().map(|u| featurize(&u.wav)).collect();
        let mut out = Dataset {
            utterances: Vec::new(),
            features: Vec::new(),
            targets: Vec::new(),
            skipped: Vec::new(),
        };
        for (u, r) in utterances.into_iter().zip(results) {
            match (r, bad) {
                (Ok(spec), _) => {
                    let target = encode(&u.text).expect("load_split checked the transcription");
                    out.targets.push(target);
                    out.features.push(spec);
                    out.utterances.push(u);
                }
                (Err(e), BadFiles::Fail) => return Err(e),
                (Err(e), BadFiles::Skip) => out.skipped.push(e.to_string()),
            }
        }
        if out.utterances.is_empty() {
            return Err(SpeechError::invalid(
                dir,
                "no readable utterance in the split",
            ));
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.utterances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.utterances.is_empty()
    }

    /// Seconds of audio in the split (10 ms frames).
    pub fn seconds(&self) -> f64 {
        self.features.iter().map(|f| f.frames as f64 / 100.0).sum()
    }

    /// The features of `epoch` under `augment`: every utterance re-read and featurized with its
    /// own draw of (`seed`, `epoch`, index), on all threads. The same arguments give the same
    /// features, so a resumed run trains on what the uninterrupted one would have.
    pub fn augmented_features(
        &self,
        augment: &AugmentConfig,
        seed: u64,
        epoch: usize,
    ) -> Result<Vec<Spectrogram>, SpeechError> {
        self.utterances
            .par_iter()
            .enumerate()
            .map(|(i, u)| {
                let samples = read_wav(&u.wav, RATE)?;
                let spec = SpectrogramSpec::deepspeech(RATE);
                augmented_spectrogram(&samples, spec, augment, seed, epoch, i)
                    .map_err(|reason| SpeechError::invalid(&u.wav, reason))
            })
            .collect()
    }

    /// Utterance indices sorted by length (ties by index), cut into batches of `size`.
    pub fn length_batches(&self, size: usize) -> Vec<Vec<usize>> {
        assert!(size > 0, "batch size must be positive");
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| (self.features[i].frames, i));
        order.chunks(size).map(|c| c.to_vec()).collect()
    }
}

/// The batch order of 0-based `epoch`: as given in epoch 0 when `sortagrad`, else a
/// Fisher–Yates shuffle drawn from (`seed`, `epoch`).
pub fn epoch_order(batches: usize, epoch: usize, seed: u64, sortagrad: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..batches).collect();
    if sortagrad && epoch == 0 {
        return order;
    }
    let rng = CounterRng::new(seed ^ 0x0005_EED0_FBA7_C4E5);
    for i in (1..batches).rev() {
        let j = (rng.bits(epoch as u64, i as u64) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortagrad_keeps_the_first_epoch_sorted_and_later_epochs_are_permutations() {
        assert_eq!(epoch_order(5, 0, 1, true), vec![0, 1, 2, 3, 4]);
        let later = epoch_order(50, 1, 1, true);
        let mut sorted = later.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(later, sorted, "a 50-batch shuffle that is the identity");
        assert_ne!(epoch_order(50, 2, 1, true), later, "epochs share a shuffle");
        assert_ne!(epoch_order(50, 0, 1, false), sorted);
    }
}
