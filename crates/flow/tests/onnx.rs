//! ONNX export: the written file decoded back with prost: inputs and outputs with their
//! symbolic shapes, the operators in order, every node input defined before use, and every
//! initializer equal to the model's tensor after the exporter's reordering (PyTorch's gate rows
//! i, f, g, o to ONNX's i, o, f, c; transposes), checked element by element against the model's
//! own indexing. The numerics under ONNX Runtime: tools/check_onnx.sh.

use flow::onnx::proto::{DimValue, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use flow::onnx::{export_onnx, IR_VERSION, OPSET};
use flow::FlowError;
use model::{LanguageModel, LmConfig};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-onnx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn model(config: LmConfig, seed: u64) -> LanguageModel<f32> {
    let mut m = LanguageModel::<f32>::new(config).unwrap();
    m.init_uniform(0.5, seed);
    m
}

/// Exports `m` to a file and decodes the file.
fn roundtrip(m: &LanguageModel<f32>, name: &str) -> ModelProto {
    let dir = tmpdir(name);
    let path = dir.join("model.onnx");
    export_onnx(m, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let proto = ModelProto::decode(&bytes[..]).expect("the file decodes as a ModelProto");
    assert_eq!(proto.ir_version, Some(IR_VERSION));
    assert_eq!(proto.opset_import.len(), 1);
    assert_eq!(proto.opset_import[0].domain.as_deref(), Some(""));
    assert_eq!(proto.opset_import[0].version, Some(OPSET));
    proto
}

/// (elem_type, dims as strings: "seq" for a symbolic one, "7" for a fixed one).
fn signature(v: &ValueInfoProto) -> (i32, Vec<String>) {
    let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
    let dims = t
        .shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            DimValue::DimValue(n) => n.to_string(),
            DimValue::DimParam(s) => s.clone(),
        });
    (t.elem_type.unwrap(), dims.collect())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Initializers by name: (dims, f32 values from raw_data).
fn initializers(g: &GraphProto) -> HashMap<String, (Vec<i64>, Vec<f32>)> {
    let f32s = |t: &TensorProto| -> Vec<f32> {
        match t.data_type {
            Some(1) => t
                .raw_data
                .as_ref()
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out = HashMap::new();
    for t in &g.initializer {
        let name = t.name.clone().unwrap();
        assert!(
            out.insert(name.clone(), (t.dims.clone(), f32s(t)))
                .is_none(),
            "{name} twice"
        );
        let n: i64 = t.dims.iter().product();
        let width = if t.data_type == Some(7) { 8 } else { 4 };
        assert_eq!(
            t.raw_data.as_ref().unwrap().len() as i64,
            n * width,
            "{name}: data vs dims"
        );
    }
    out
}

fn op_types(g: &GraphProto) -> Vec<&str> {
    g.node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect()
}

/// Every node input is a graph input, an initializer, an earlier node's output or (in a body)
/// a name of the enclosing graphs; every output is defined once; the graph's outputs exist.
fn check_defined(g: &GraphProto, outer: &HashSet<String>) {
    let mut known: HashSet<String> = outer.clone();
    known.extend(g.input.iter().map(|v| v.name.clone().unwrap()));
    known.extend(g.initializer.iter().map(|t| t.name.clone().unwrap()));
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            assert!(
                known.contains(i),
                "{:?} reads `{i}` before it exists",
                n.op_type
            );
        }
        for a in &n.attribute {
            if let Some(body) = &a.g {
                check_defined(body, &known);
            }
        }
        for o in &n.output {
            assert!(known.insert(o.clone()), "`{o}` defined twice");
        }
    }
    for o in &g.output {
        assert!(
            known.contains(o.name.as_ref().unwrap()),
            "output {:?} undefined",
            o.name
        );
    }
}

fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

fn check_io(g: &GraphProto, vocab: usize) {
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name.as_deref(), Some("tokens"));
    assert_eq!(signature(&g.input[0]), (7, strs(&["seq", "batch"])));
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name.as_deref(), Some("logits"));
    let v = vocab.to_string();
    assert_eq!(signature(&g.output[0]), (1, strs(&["seq", "batch", &v])));
    check_defined(g, &HashSet::new());
}

/// The embedding and decoder initializers against the model.
fn check_ends(m: &LanguageModel<f32>, inits: &HashMap<String, (Vec<i64>, Vec<f32>)>) {
    let (v, e, h) = (
        m.config.vocab,
        m.config.embedding_width(),
        m.config.top_hidden(),
    );
    let enc = &inits["encoder.weight"];
    assert_eq!(enc.0, vec![v as i64, e as i64]);
    assert_eq!(enc.1, m.named("encoder.weight").unwrap());
    let (dims, wt) = &inits["decoder.weight_t"];
    assert_eq!(dims, &vec![h as i64, v as i64]);
    let w = m.named("decoder.weight").unwrap();
    for r in 0..v {
        for c in 0..h {
            assert_eq!(wt[c * v + r], w[r * h + c], "decoder.weight[{r}][{c}]");
        }
    }
    assert_eq!(inits["decoder.bias"].1, m.named("decoder.bias").unwrap());
}

#[test]
fn lstm_layers_of_different_widths_export_reordered_weights() {
    let config = LmConfig {
        embedding: 5,
        hidden_sizes: vec![7, 4],
        ..LmConfig::lstm(11, 7, 2)
    };
    let m = model(config, 3);
    let proto = roundtrip(&m, "lstm");
    let g = proto.graph.as_ref().unwrap();
    check_io(g, 11);
    let ops = op_types(g);
    assert_eq!(
        ops,
        ["Gather", "LSTM", "Squeeze", "LSTM", "Squeeze", "MatMul", "Add"]
    );
    let inits = initializers(g);
    check_ends(&m, &inits);
    // ONNX gate block k (i, o, f, c) holds PyTorch's block PT[k] (i, f, g, o order).
    const PT: [usize; 4] = [0, 3, 1, 2];
    for (l, (i, h)) in [(5usize, 7usize), (7, 4)].into_iter().enumerate() {
        let lstm = g
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("LSTM"))
            .nth(l)
            .unwrap();
        assert_eq!(attr_i(lstm, "hidden_size"), Some(h as i64), "layer {l}");
        let name = |s: &str| format!("rnn.l{l}.{s}");
        assert_eq!(lstm.input[1..], [name("W"), name("R"), name("B")]);
        for (onnx, torch, width) in [("W", "weight_ih", i), ("R", "weight_hh", h)] {
            let (dims, got) = &inits[&name(onnx)];
            assert_eq!(dims, &vec![1, 4 * h as i64, width as i64], "{onnx} l{l}");
            let want = m.named(&format!("rnn.{torch}_l{l}")).unwrap();
            for k in 0..4 {
                for r in 0..h {
                    for c in 0..width {
                        assert_eq!(
                            got[(k * h + r) * width + c],
                            want[(PT[k] * h + r) * width + c],
                            "{onnx} l{l} gate {k} [{r}][{c}]"
                        );
                    }
                }
            }
        }
        let (dims, b) = &inits[&name("B")];
        assert_eq!(dims, &vec![1, 8 * h as i64]);
        for (half, torch) in ["bias_ih", "bias_hh"].iter().enumerate() {
            let want = m.named(&format!("rnn.{torch}_l{l}")).unwrap();
            for k in 0..4 {
                for r in 0..h {
                    assert_eq!(
                        b[half * 4 * h + k * h + r],
                        want[PT[k] * h + r],
                        "{torch} l{l}"
                    );
                }
            }
        }
    }
    // The second layer reads the first's squeezed output; the decoder reads the second's.
    assert_eq!(g.node[3].input[0], g.node[2].output[0]);
    assert_eq!(g.node[5].input[0], g.node[4].output[0]);
}

#[test]
fn hlstm_layer_exports_a_scan_over_its_gate_mlps() {
    let config = LmConfig {
        embedding: 5,
        gate_hidden: 3,
        ..LmConfig::lstm(9, 6, 1)
    };
    let (e, h, m4) = (5usize, 6usize, 12usize);
    let m = model(config, 4);
    let proto = roundtrip(&m, "hlstm");
    let g = proto.graph.as_ref().unwrap();
    check_io(g, 9);
    let inits = initializers(g);
    check_ends(&m, &inits);
    let scan = g
        .node
        .iter()
        .find(|n| n.op_type.as_deref() == Some("Scan"))
        .expect("a Scan node");
    assert_eq!(attr_i(scan, "num_scan_inputs"), Some(1));
    assert_eq!((scan.input.len(), scan.output.len()), (3, 3));
    let body = scan
        .attribute
        .iter()
        .find_map(|a| a.g.as_ref())
        .expect("a body graph");
    assert_eq!((body.input.len(), body.output.len()), (3, 3));
    assert_eq!(signature(&body.input[0]), (1, strs(&["batch", "6"])));
    assert_eq!(signature(&body.input[2]), (1, strs(&["batch", "12"])));
    let body_ops = op_types(body);
    for op in ["MatMul", "Relu", "Split", "Sigmoid", "Tanh", "Mul"] {
        assert!(body_ops.contains(&op), "{op} missing from {body_ops:?}");
    }
    assert_eq!(body_ops.iter().filter(|&&o| o == "Sigmoid").count(), 3);
    // First layers, transposed: (I, 4M) and (H, 4M).
    for (onnx, torch, width) in [("W1x_t", "weight_ih1", e), ("W1h_t", "weight_hh1", h)] {
        let (dims, got) = &inits[&format!("rnn.l0.{onnx}")];
        assert_eq!(dims, &vec![width as i64, m4 as i64]);
        let want = m.named(&format!("rnn.{torch}_l0")).unwrap();
        for r in 0..m4 {
            for c in 0..width {
                assert_eq!(got[c * m4 + r], want[r * width + c], "{onnx}[{c}][{r}]");
            }
        }
    }
    assert_eq!(inits["rnn.l0.b1"].1, m.named("rnn.bias1_l0").unwrap());
    // Second layers: weight2 (4, H, M) → (4, M, H); bias2 (4H) → (4, 1, H).
    let (dims, w2t) = &inits["rnn.l0.W2_t"];
    assert_eq!(dims, &vec![4, 3, h as i64]);
    let w2 = m.named("rnn.weight2_l0").unwrap();
    for k in 0..4 {
        for r in 0..h {
            for c in 0..3 {
                assert_eq!(
                    w2t[(k * 3 + c) * h + r],
                    w2[(k * h + r) * 3 + c],
                    "w2[{k}][{r}][{c}]"
                );
            }
        }
    }
    assert_eq!(inits["rnn.l0.b2"].0, vec![4, 1, h as i64]);
    assert_eq!(inits["rnn.l0.b2"].1, m.named("rnn.bias2_l0").unwrap());
    // Decoder reads the Scan's stacked hidden states.
    let dec = g
        .node
        .iter()
        .find(|n| n.input.iter().any(|i| i == "decoder.weight_t"))
        .unwrap();
    assert_eq!(dec.input[0], scan.output[2]);
}

#[test]
fn errors_name_the_file_and_never_panic() {
    let m = model(LmConfig::lstm(7, 4, 1), 1);
    let dir = tmpdir("errors");
    let missing = dir.join("no/such/folder/model.onnx");
    let err = export_onnx(&m, &missing).unwrap_err();
    assert!(matches!(err, FlowError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().contains("no/such/folder/model.onnx"),
        "{err}"
    );
    // A config that no longer matches the tensors (an H-LSTM config over LSTM weights).
    let mut bad = m.clone();
    bad.config.gate_hidden = 2;
    let path = dir.join("bad.onnx");
    let err = export_onnx(&bad, &path).unwrap_err().to_string();
    assert!(
        err.contains("bad.onnx") && err.contains("rnn.weight_ih1_l0"),
        "{err}"
    );
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
