//! Writes small random word language models as safetensors for the ONNX export check
//! (`tools/check_onnx.sh`): `lstm.safetensors` (plain LSTM, 3 layers of different widths, an
//! embedding narrower than the first layer, a pruned matrix) and `hlstm.safetensors` (H-LSTM,
//! 2 layers of different widths).
//!
//! cargo run --release -p symbiont-flow --example tiny_model -- OUT_DIR [SEED]

use model::{LanguageModel, LmConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: tiny_model OUT_DIR [SEED]");
        return ExitCode::from(2);
    };
    let seed: u64 = match args.next().map(|s| s.parse()) {
        None => 7,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("SEED: {e}");
            return ExitCode::from(2);
        }
    };
    let lstm = LmConfig {
        embedding: 12,
        hidden_sizes: vec![24, 16, 20],
        ..LmConfig::lstm(50, 24, 3)
    };
    let hlstm = LmConfig {
        embedding: 10,
        hidden_sizes: vec![14, 9],
        gate_hidden: 6,
        ..LmConfig::lstm(40, 14, 2)
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("{}: {e}", out.display());
        return ExitCode::from(2);
    }
    for (name, config) in [("lstm", lstm), ("hlstm", hlstm)] {
        let path = out.join(format!("{name}.safetensors"));
        let written = LanguageModel::<f32>::new(config).and_then(|mut m| {
            m.init_uniform(0.5, seed);
            // Pruned weights stay in the file as zeros: zero every third recurrent weight.
            let first = if m.config.gate_hidden > 0 {
                "rnn.weight_hh1_l0"
            } else {
                "rnn.weight_hh_l0"
            };
            if let Some(w) = m.named_mut(first) {
                w.iter_mut().step_by(3).for_each(|v| *v = 0.0);
            }
            m.save(&path, HashMap::new())
        });
        if let Err(e) = written {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}
