//! The profiler's `cpu-speech` engine: it builds and times the deployment plan of the point's
//! model (LSTM and H-LSTM, dense and pruned), prunes only recurrent weights and to the density
//! asked, and refuses points it cannot run with a message naming the field.

use profile::{Engine, Point};
use speech::deepspeech::{DeepSpeech, DeepSpeechConfig};
use speech::engine::{prune_recurrent_at_random, SpeechEngine};

fn point(hidden: usize, gate_width: usize, density: f64, format: &str, seq: usize) -> Point {
    Point {
        hidden,
        input: hidden,
        gate_width,
        layers: 2,
        batch: 1,
        seq,
        threads: 1,
        dtype: "f32".into(),
        density,
        format: format.into(),
    }
}

#[test]
fn every_kind_of_point_prepares_and_times() {
    let mut engine = SpeechEngine { conv_channels: 4 };
    assert_eq!(engine.info().name, "cpu-speech");
    for (gate_width, density, format) in [
        (0, 1.0, "dense"),
        (0, 0.3, "auto"),
        (0, 0.3, "csr"),
        (6, 1.0, "dense"),
        (6, 0.5, "bsr"),
    ] {
        let p = point(16, gate_width, density, format, 60);
        let mut run = engine.prepare(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let samples = run.run().unwrap();
        assert_eq!(samples.len(), 1);
        assert!(samples[0].is_finite() && samples[0] > 0.0, "{samples:?}");
    }
}

#[test]
fn pruning_keeps_the_density_and_touches_recurrent_weights_only() {
    let config = DeepSpeechConfig {
        hidden: 32,
        layers: 2,
        conv_channels: 4,
        gate_hidden: 0,
    };
    let before = DeepSpeech::new(config, 1).unwrap();
    let mut after = before.clone();
    prune_recurrent_at_random(&mut after, 0.25, 2);
    let (mut kept, mut total) = (0usize, 0usize);
    for t in before.layout.tensors() {
        let (a, b) = (&before.params[t.range()], &after.params[t.range()]);
        if t.name.contains(".rnn.") && t.name.contains("weight") {
            total += a.len();
            kept += b.iter().filter(|v| **v != 0.0).count();
            // What stays is unchanged.
            assert!(
                a.iter().zip(b).all(|(x, y)| *y == 0.0 || x == y),
                "{}",
                t.name
            );
        } else {
            assert_eq!(a, b, "{} must not be pruned", t.name);
        }
    }
    let density = kept as f64 / total as f64;
    assert!((density - 0.25).abs() < 0.02, "density {density}");
}

#[test]
fn points_it_cannot_run_are_refused_naming_the_field() {
    let mut engine = SpeechEngine::default();
    let e = engine
        .prepare(&point(16, 0, 1.0, "dense", 5))
        .err()
        .unwrap();
    assert!(e.to_string().contains("seq 5"), "{e}");
    let e = engine
        .prepare(&point(16, 0, 0.0, "auto", 60))
        .err()
        .unwrap();
    assert!(e.to_string().contains("density"), "{e}");
    let e = engine.prepare(&point(16, 0, 1.0, "coo", 60)).err().unwrap();
    assert!(e.to_string().contains("coo"), "{e}");
}
