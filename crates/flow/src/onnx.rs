//! ONNX export of a word language model: [`export_onnx`] writes an ONNX file (IR version 8,
//! opset 17) that computes the same logits as symbiont's own inference from a zero LSTM state.
//!
//! Graph: input `tokens` int64 (seq, batch) → `Gather` on `encoder.weight` → per layer either
//! the ONNX `LSTM` operator (plain layers; PyTorch's gate rows i, f, g, o reordered to ONNX's
//! i, o, f, c) or a `Scan` over one H-LSTM step (gate MLPs as MatMul / Add / Relu, exactly as
//! `model::hlstm` computes them) → `MatMul` + `Add` decoder → output `logits` float
//! (seq, batch, vocab). Pruned weights are written dense, zeros included. The protobuf messages
//! live in [`proto`] (`onnx_proto.rs`).

#[path = "onnx_proto.rs"]
pub mod proto;

use crate::FlowError;
use model::LanguageModel;
use proto::{
    data_type, AttributeProto, AttributeType, DimValue, Dimension, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};
use std::path::Path;

/// IR version written (ONNX 1.10's, read by every current runtime).
pub const IR_VERSION: i64 = 8;
/// Default-domain operator set written.
pub const OPSET: i64 = 17;
/// protobuf's hard limit on one message; larger models would need ONNX external data.
const MAX_PROTO_BYTES: usize = (1 << 31) - 1;

/// Writes `model` as an ONNX file at `path`: input `tokens` int64 (seq, batch), output `logits`
/// float (seq, batch, vocab), from a zero LSTM state, dropout off. Errors (a layout the exporter
/// does not know, a model over protobuf's 2 GiB, I/O) name the file.
pub fn export_onnx(model: &LanguageModel<f32>, path: &Path) -> Result<(), FlowError> {
    let file = path.display();
    let proto = onnx_model(model).map_err(|e| FlowError::Invalid(format!("{file}: {e}")))?;
    let bytes = prost::Message::encode_to_vec(&proto);
    if bytes.len() > MAX_PROTO_BYTES {
        return Err(FlowError::Invalid(format!(
            "{file}: the model takes {} bytes, over protobuf's 2 GiB limit (ONNX external data \
             is not supported)",
            bytes.len()
        )));
    }
    model::checkpoint::write_atomic(path, &bytes)
        .map_err(|e| FlowError::Invalid(format!("{file}: cannot write the ONNX model: {e}")))
}

/// The ONNX model of `model` (what [`export_onnx`] encodes). Errors are messages without the
/// file name.
pub fn onnx_model(model: &LanguageModel<f32>) -> Result<ModelProto, String> {
    let c = &model.config;
    c.validate().map_err(|e| e.to_string())?;
    let mut g = Graph::default();
    let (v, e) = (c.vocab, c.embedding_width());
    g.init_f32(
        "encoder.weight",
        &[v, e],
        tensor(model, "encoder.weight", v * e)?,
    );
    g.node(
        "Gather",
        &["encoder.weight", "tokens"],
        &["embedded"],
        vec![],
    );
    let mut x = "embedded".to_string();
    for l in 0..c.layers {
        x = if c.gate_hidden > 0 {
            hlstm_layer(&mut g, model, l, &x)?
        } else {
            lstm_layer(&mut g, model, l, &x)?
        };
    }
    let h = c.top_hidden();
    let w = tensor(model, "decoder.weight", v * h)?;
    g.init_f32("decoder.weight_t", &[h, v], &transpose(w, v, h));
    g.init_f32("decoder.bias", &[v], tensor(model, "decoder.bias", v)?);
    g.node("MatMul", &[&x, "decoder.weight_t"], &["decoded"], vec![]);
    g.node("Add", &["decoded", "decoder.bias"], &["logits"], vec![]);
    let tokens = value_info("tokens", data_type::INT64, &[Sym("seq"), Sym("batch")]);
    let logits = value_info(
        "logits",
        data_type::FLOAT,
        &[Sym("seq"), Sym("batch"), Fixed(v)],
    );
    let graph = g.finish("symbiont_lm", vec![tokens], vec![logits]);
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("symbiont".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "word language model: vocab {v}, embedding {e}, hidden {:?}, gate width {}; logits \
             from a zero state",
            (0..c.layers).map(|l| c.hidden_of(l)).collect::<Vec<_>>(),
            c.gate_hidden
        )),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
    })
}

/// A plain LSTM layer as the ONNX `LSTM` operator; returns the name of its (seq, batch, H) output.
fn lstm_layer(
    g: &mut Graph,
    model: &LanguageModel<f32>,
    l: usize,
    x: &str,
) -> Result<String, String> {
    let (i, h) = (model.config.input_of(l), model.config.hidden_of(l));
    let w_ih = tensor(model, &format!("rnn.weight_ih_l{l}"), 4 * h * i)?;
    let w_hh = tensor(model, &format!("rnn.weight_hh_l{l}"), 4 * h * h)?;
    let b_ih = tensor(model, &format!("rnn.bias_ih_l{l}"), 4 * h)?;
    let b_hh = tensor(model, &format!("rnn.bias_hh_l{l}"), 4 * h)?;
    let p = format!("rnn.l{l}.");
    let mut bias = ifgo_to_iofc(b_ih, h, 1);
    bias.extend(ifgo_to_iofc(b_hh, h, 1));
    g.init_f32(&format!("{p}W"), &[1, 4 * h, i], &ifgo_to_iofc(w_ih, h, i));
    g.init_f32(&format!("{p}R"), &[1, 4 * h, h], &ifgo_to_iofc(w_hh, h, h));
    g.init_f32(&format!("{p}B"), &[1, 8 * h], &bias);
    let (y4, y) = (format!("{p}y4"), format!("{p}out"));
    g.node(
        "LSTM",
        &[x, &format!("{p}W"), &format!("{p}R"), &format!("{p}B")],
        &[&y4],
        vec![
            attr_int("hidden_size", h as i64),
            attr_str("direction", "forward"),
        ],
    );
    // Y is (seq, num_directions = 1, batch, H).
    g.shared_i64("axes_1", &[1]);
    g.node("Squeeze", &[&y4, "axes_1"], &[&y], vec![]);
    Ok(y)
}

/// An H-LSTM layer: the x part of the gates' first layers for all steps at once, then a `Scan`
/// over [`hlstm_step`] from zero (batch, H) states; returns the name of its (seq, batch, H) output.
fn hlstm_layer(
    g: &mut Graph,
    model: &LanguageModel<f32>,
    l: usize,
    x: &str,
) -> Result<String, String> {
    let c = &model.config;
    let (i, h, m) = (c.input_of(l), c.hidden_of(l), c.gate_hidden);
    let w_ih1 = tensor(model, &format!("rnn.weight_ih1_l{l}"), 4 * m * i)?;
    let w_hh1 = tensor(model, &format!("rnn.weight_hh1_l{l}"), 4 * m * h)?;
    let b1 = tensor(model, &format!("rnn.bias1_l{l}"), 4 * m)?;
    let w2 = tensor(model, &format!("rnn.weight2_l{l}"), 4 * h * m)?;
    let b2 = tensor(model, &format!("rnn.bias2_l{l}"), 4 * h)?;
    let p = format!("rnn.l{l}.");
    let n = |s: &str| format!("{p}{s}");
    g.init_f32(&n("W1x_t"), &[i, 4 * m], &transpose(w_ih1, 4 * m, i));
    g.init_f32(&n("W1h_t"), &[h, 4 * m], &transpose(w_hh1, 4 * m, h));
    g.init_f32(&n("b1"), &[4 * m], b1);
    // Gate k's second layer (H, M) transposed to (M, H), stacked: (4, M, H); its bias (4, 1, H).
    let w2_t: Vec<f32> = w2
        .chunks_exact(h * m)
        .flat_map(|wk| transpose(wk, h, m))
        .collect();
    g.init_f32(&n("W2_t"), &[4, m, h], &w2_t);
    g.init_f32(&n("b2"), &[4, 1, h], b2);
    g.init_i64(&n("gates_shape"), &[3], &[0, 4, m as i64]);
    g.init_i64(&n("hidden"), &[1], &[h as i64]);
    g.node("MatMul", &[x, &n("W1x_t")], &[&n("xw")], vec![]);
    g.node("Add", &[&n("xw"), &n("b1")], &[&n("xp")], vec![]);
    // Zero initial state (batch, H), the batch read from the tokens' shape.
    if !g.has("batch_dim") {
        g.shared_i64("batch_index", &[1]);
        g.node("Shape", &["tokens"], &["tokens_shape"], vec![]);
        g.node(
            "Gather",
            &["tokens_shape", "batch_index"],
            &["batch_dim"],
            vec![],
        );
    }
    g.node(
        "Concat",
        &["batch_dim", &n("hidden")],
        &[&n("state_shape")],
        vec![attr_int("axis", 0)],
    );
    let zero = TensorProto {
        dims: vec![1],
        data_type: Some(data_type::FLOAT),
        raw_data: Some(0f32.to_le_bytes().to_vec()),
        ..Default::default()
    };
    g.node(
        "ConstantOfShape",
        &[&n("state_shape")],
        &[&n("zeros")],
        vec![attr_tensor("value", zero)],
    );
    g.shared_i64("axes_0", &[0]);
    let body = hlstm_step(&p, h, m);
    let y = n("out");
    g.node(
        "Scan",
        &[&n("zeros"), &n("zeros"), &n("xp")],
        &[&n("h_last"), &n("c_last"), &y],
        vec![attr_graph("body", body), attr_int("num_scan_inputs", 1)],
    );
    Ok(y)
}

/// The `Scan` body of one H-LSTM step (names prefixed `p`; weights from the outer graph):
/// state (h, c) (batch, H), scan input the step's x part of the first layers (batch, 4M).
/// `first = xp + h W1h^T`, `a = ReLU(first)`, gate k's pre-activation `a_k W2_k^T + b2_k`,
/// then σ, σ, tanh, σ, `c = f c + i g`, `h = o tanh(c)`.
fn hlstm_step(p: &str, h: usize, m: usize) -> GraphProto {
    let n = |s: &str| format!("{p}{s}");
    let mut b = Graph::default();
    b.node("MatMul", &[&n("h_prev"), &n("W1h_t")], &[&n("hw")], vec![]);
    b.node("Add", &[&n("xp_t"), &n("hw")], &[&n("first")], vec![]);
    b.node("Relu", &[&n("first")], &[&n("a")], vec![]);
    // (batch, 4M) → (batch, 4, M) → (4, batch, M): one batched product with (4, M, H).
    b.node(
        "Reshape",
        &[&n("a"), &n("gates_shape")],
        &[&n("a3")],
        vec![],
    );
    b.node(
        "Transpose",
        &[&n("a3")],
        &[&n("a_t")],
        vec![attr_ints("perm", &[1, 0, 2])],
    );
    b.node("MatMul", &[&n("a_t"), &n("W2_t")], &[&n("pre0")], vec![]);
    b.node("Add", &[&n("pre0"), &n("b2")], &[&n("pre")], vec![]);
    let pre = ["pi", "pf", "pg", "po"].map(n);
    b.node(
        "Split",
        &[&n("pre")],
        &[&pre[0], &pre[1], &pre[2], &pre[3]],
        vec![attr_int("axis", 0)],
    );
    let act = ["gi", "gf", "gg", "go"].map(n);
    for (k, op) in ["Sigmoid", "Sigmoid", "Tanh", "Sigmoid"].iter().enumerate() {
        b.node(op, &[&pre[k]], &[&act[k]], vec![]);
    }
    // Gates are (1, batch, H); c_prev broadcasts to them.
    b.node("Mul", &[&act[1], &n("c_prev")], &[&n("fc")], vec![]);
    b.node("Mul", &[&act[0], &act[2]], &[&n("ig")], vec![]);
    b.node("Add", &[&n("fc"), &n("ig")], &[&n("c1")], vec![]);
    b.node("Tanh", &[&n("c1")], &[&n("tc")], vec![]);
    b.node("Mul", &[&act[3], &n("tc")], &[&n("h1")], vec![]);
    b.node("Squeeze", &[&n("c1"), "axes_0"], &[&n("c")], vec![]);
    b.node("Squeeze", &[&n("h1"), "axes_0"], &[&n("h")], vec![]);
    b.node("Identity", &[&n("h")], &[&n("y")], vec![]);
    let f = data_type::FLOAT;
    let (bh, bm) = ([Sym("batch"), Fixed(h)], [Sym("batch"), Fixed(4 * m)]);
    b.finish(
        &n("step"),
        vec![
            value_info(&n("h_prev"), f, &bh),
            value_info(&n("c_prev"), f, &bh),
            value_info(&n("xp_t"), f, &bm),
        ],
        vec![
            value_info(&n("h"), f, &bh),
            value_info(&n("c"), f, &bh),
            value_info(&n("y"), f, &bh),
        ],
    )
}

/// Nodes and initializers of a graph under construction.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Names produced so far (node outputs and initializers).
    names: std::collections::HashSet<String>,
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        self.names.extend(outputs.iter().map(|s| s.to_string()));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: Some(format!("{op}_{}", self.nodes.len())),
            op_type: Some(op.into()),
            attribute,
            domain: None,
        });
    }

    fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name, dims, data_type::FLOAT, raw);
    }

    fn init_i64(&mut self, name: &str, dims: &[usize], values: &[i64]) {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name, dims, data_type::INT64, raw);
    }

    /// A 1-D int64 constant shared by layers: added on first use.
    fn shared_i64(&mut self, name: &str, values: &[i64]) {
        if !self.has(name) {
            self.init_i64(name, &[values.len()], values);
        }
    }

    fn init(&mut self, name: &str, dims: &[usize], dtype: i32, raw: Vec<u8>) {
        self.names.insert(name.into());
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(dtype),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    fn finish(
        self,
        name: &str,
        input: Vec<ValueInfoProto>,
        output: Vec<ValueInfoProto>,
    ) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: Some(name.into()),
            initializer: self.inits,
            doc_string: None,
            input,
            output,
        }
    }
}

/// One dimension of a declared shape.
#[derive(Clone, Copy)]
enum Dim {
    Fixed(usize),
    Sym(&'static str),
}
use Dim::{Fixed, Sym};

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match *d {
                Fixed(n) => DimValue::DimValue(n as i64),
                Sym(s) => DimValue::DimParam(s.into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        i: Some(i),
        ..attr(name, AttributeType::Int)
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: ints.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn attr_str(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        s: Some(s.as_bytes().to_vec()),
        ..attr(name, AttributeType::String)
    }
}

fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}

fn attr_graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(g),
        ..attr(name, AttributeType::Graph)
    }
}

/// A model tensor by name, checked to hold `len` values.
fn tensor<'a>(model: &'a LanguageModel<f32>, name: &str, len: usize) -> Result<&'a [f32], String> {
    match model.named(name) {
        Some(t) if t.len() == len => Ok(t),
        Some(t) => Err(format!(
            "tensor `{name}` has {} values, the layout wants {len}: unsupported layout",
            t.len()
        )),
        None => Err(format!("no tensor `{name}`: unsupported layout")),
    }
}

/// (rows, cols) row-major → (cols, rows).
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// Gate blocks of `h` rows of `width` values from PyTorch's order i, f, g, o to ONNX's
/// i, o, f, c (= g).
pub fn ifgo_to_iofc(a: &[f32], h: usize, width: usize) -> Vec<f32> {
    let block = h * width;
    [0, 3, 1, 2]
        .iter()
        .flat_map(|&k| &a[k * block..(k + 1) * block])
        .copied()
        .collect()
}
