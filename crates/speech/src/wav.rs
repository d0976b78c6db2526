//! 16-bit PCM WAV input through `hound`: mono at the expected rate, as f32 in [-1, 1).

use crate::SpeechError;
use std::path::Path;

/// The samples of a mono 16-bit PCM WAV file recorded at `rate` Hz. A wrong rate, more than one
/// channel, another sample format, a truncated or a non-WAV file is an error naming the file.
pub fn read_wav(path: &Path, rate: u32) -> Result<Vec<f32>, SpeechError> {
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(io) => SpeechError::io(path, io),
        other => SpeechError::invalid(path, format!("not a readable WAV file: {other}")),
    })?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(SpeechError::invalid(
            path,
            format!("{} channels; mono audio is expected", spec.channels),
        ));
    }
    if spec.sample_rate != rate {
        return Err(SpeechError::invalid(
            path,
            format!("sampled at {} Hz; {rate} Hz is expected", spec.sample_rate),
        ));
    }
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(SpeechError::invalid(
            path,
            format!(
                "{}-bit {:?} samples; 16-bit PCM is expected",
                spec.bits_per_sample, spec.sample_format
            ),
        ));
    }
    let expected = reader.len() as usize;
    let samples: Vec<f32> = reader
        .into_samples::<i16>()
        .map(|s| s.map(|v| v as f32 / 32768.0))
        .collect::<Result<_, _>>()
        .map_err(|e| SpeechError::invalid(path, format!("truncated or corrupt audio: {e}")))?;
    if samples.len() != expected {
        return Err(SpeechError::invalid(
            path,
            format!("holds {} of its {expected} samples", samples.len()),
        ));
    }
    if samples.is_empty() {
        return Err(SpeechError::invalid(path, "holds no audio"));
    }
    Ok(samples)
}
