//! symbiont-speech: what speech recognition needs around the recurrent layers — the AN4 corpus
//! (file lists, transcriptions, 16 kHz WAV), DeepSpeech2's spectrogram features, the CTC loss with
//! its gradient, greedy CTC decoding, and WER / CER as deepspeech.pytorch and the papers report
//! them. Everything here is host code over plain slices, tested against independent references.

pub mod an4;
pub mod augment;
pub mod batchnorm;
pub mod beam;
pub mod bidirectional;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod ctc;
pub mod data;
pub mod deepspeech;
pub mod engine;
pub mod error;
pub mod features;
pub mod hardtanh;
pub mod labels;
pub mod metrics;
pub mod training;
pub mod wav;

pub use error::SpeechError;
