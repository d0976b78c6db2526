//! `cpu-speech`, the profiler's engine for speech models: a DeepSpeech2-style model of the point's
//! width and depth (LSTM, or H-LSTM with `gate_width`), its recurrent matrices pruned at random to
//! the point's density, timed through its deployment plan ([`SpeechPlan`]: folded BatchNorms, the
//! convolutions, the bidirectional layers on infer's kernels, the output layer) on `seq` frames
//! (10 ms each) of normalised-feature-like input, `batch` utterances at a time. A latency table
//! over hidden sizes then covers what a speech deployment runs, front end included.
//!
//! The point's `input` is not used (the front end fixes the first layer's input width).

use crate::deepspeech::{DeepSpeech, DeepSpeechConfig, SpeechPlan, BINS};
use crate::features::Spectrogram;
use infer::{Dtype, FormatChoice, PlanOptions};
use kernels::packed::Format;
use kernels::rng::CounterRng;
use profile::{Engine, EngineInfo, Point, Prepared, ProfileError};

/// The engine's name on the command line and in tables.
pub const NAME: &str = "cpu-speech";

/// Output channels of both convolutions, DeepSpeech2's 32 by default.
pub struct SpeechEngine {
    pub conv_channels: usize,
}

impl Default for SpeechEngine {
    fn default() -> Self {
        SpeechEngine { conv_channels: 32 }
    }
}

/// A deterministic stand-in for normalised features (zero mean, unit variance order): `frames`
/// frames of [`BINS`] values; `seed` shifts the pattern.
pub fn synthetic_spectrogram(frames: usize, seed: u64) -> Spectrogram {
    Spectrogram {
        frames,
        bins: BINS,
        values: (0..frames * BINS)
            .map(|i| ((i as f64 * 0.618_034 + seed as f64).fract() * 3.4 - 1.7) as f32)
            .collect(),
    }
}

/// Sets each weight of every recurrent matrix to zero with probability `1 − density`.
pub fn prune_recurrent_at_random(model: &mut DeepSpeech, density: f64, seed: u64) {
    let rng = CounterRng::new(seed);
    for t in model.layout.tensors().to_vec() {
        if t.name.contains(".rnn.") && t.name.contains("weight") {
            for i in t.range() {
                if rng.uniform_f64(0, i as u64) >= density {
                    model.params[i] = 0.0;
                }
            }
        }
    }
}

struct SpeechRun {
    plan: SpeechPlan,
    spec: Spectrogram,
    batch: usize,
    pool: rayon::ThreadPool,
}

impl Engine for SpeechEngine {
    fn info(&self) -> EngineInfo {
        let mut info = EngineInfo::new(NAME, format!("symbiont {}", env!("CARGO_PKG_VERSION")));
        info.details
            .insert("conv_channels".into(), self.conv_channels.to_string());
        info.details
            .insert("seq".into(), "input frames, 10 ms each".into());
        info
    }

    fn prepare(&mut self, p: &Point) -> Result<Box<dyn Prepared>, ProfileError> {
        let err = |e: String| ProfileError::Engine(e);
        if !(p.density > 0.0 && p.density <= 1.0) {
            return Err(err(format!("density {} is not in (0, 1]", p.density)));
        }
        let dtype: Dtype = p.dtype.parse().map_err(err)?;
        // Formats as for `bench --model`: the one asked for; `auto` times the candidates per
        // matrix (dense only, when nothing is pruned).
        let format = match p.format.as_str() {
            "" | "auto" if p.density == 1.0 => FormatChoice::Fixed(Format::Dense),
            "" | "auto" => FormatChoice::Auto,
            f => f.parse().map_err(err)?,
        };
        let config = DeepSpeechConfig {
            hidden: p.hidden,
            layers: p.layers,
            conv_channels: self.conv_channels,
            gate_hidden: p.gate_width,
        };
        let mut model = DeepSpeech::new(config, 1).map_err(err)?;
        if p.density < 1.0 {
            prune_recurrent_at_random(&mut model, p.density, 2);
        }
        let out_frames = model.config.output_frames(p.seq);
        if out_frames == 0 || p.batch == 0 {
            return Err(err(format!(
                "seq {} (input frames) is too short for the convolutions, or batch is 0",
                p.seq
            )));
        }
        let threads = p.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| err(format!("cannot start {threads} threads: {e}")))?;
        let opts = PlanOptions {
            dtype,
            format,
            threads,
            batch: p.batch,
            seq: out_frames,
            ..PlanOptions::default()
        };
        let plan = pool
            .install(|| SpeechPlan::new(&model, &opts))
            .map_err(|e| err(e.to_string()))?;
        Ok(Box::new(SpeechRun {
            plan,
            spec: synthetic_spectrogram(p.seq, 0),
            batch: p.batch,
            pool,
        }))
    }
}

impl Prepared for SpeechRun {
    fn run(&mut self) -> Result<Vec<f64>, ProfileError> {
        let SpeechRun {
            plan,
            spec,
            batch,
            pool,
        } = self;
        let specs = vec![&*spec; *batch];
        pool.install(|| {
            let start = std::time::Instant::now();
            plan.run(&specs)
                .map_err(|e| ProfileError::Engine(e.to_string()))?;
            Ok(vec![start.elapsed().as_secs_f64() * 1e3])
        })
    }
}
