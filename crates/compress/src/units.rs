//! Structured pruning and growth of hidden units of a stacked LSTM or H-LSTM language model.
//!
//! Hidden unit j of layer l (width H) touches three groups of weights:
//! - its gate rows, the rows that produce its four gate pre-activations: row g·H + j (g = i, f,
//!   g, o) of every gate-major tensor of the layer. LSTM: `weight_ih_l`, `weight_hh_l`,
//!   `bias_ih_l`, `bias_hh_l`. H-LSTM: only the gates' second layer, `weight2_l` (4, H, M) read
//!   as (4H, M), and `bias2_l` (4H); the first layers (`weight_ih1_l`, `weight_hh1_l`,
//!   `bias1_l`, 4M rows) are shared by all units and belong to none;
//! - its recurrent input, column j of `weight_hh_l` (LSTM) or `weight_hh1_l` (H-LSTM);
//! - its consumer column, column j of the next layer's input weights (`weight_ih_l{l+1}`, or
//!   `weight_ih1_l{l+1}` for the H-LSTM), or `decoder.weight` for the top layer.
//!
//! Removing the unit removes all of these, so the result is a physically smaller dense model. A
//! unit whose gate rows are all zero (weights and biases) has all four pre-activations zero, so
//! from a zero state c ≡ 0 and h ≡ 0 (c_t = σ(0)·c_{t-1} + σ(0)·tanh(0), h = σ(0)·tanh(c)):
//! "silencing" it that way and compacting it away give the same function; that is the
//! compaction test. Growth is the reverse: new units get random gate rows and zero recurrent and
//! consumer columns, so they output nothing the rest of the model reads until training moves
//! those.

use kernels::Real;
use model::{LanguageModel, LmConfig, ModelError, ParamLayout};

fn name(kind: &str, l: usize) -> String {
    format!("rnn.{kind}_l{l}")
}

/// The tensors hidden units of one layer touch, by role (see the module header).
struct Touched {
    /// Gate-major tensors of 4·H rows: unit j owns row g·H + j of each.
    gate_rows: Vec<String>,
    /// Tensors with one column per unit (width H): the recurrent input and the consumer.
    columns: [String; 2],
}

impl Touched {
    fn of(config: &LmConfig, l: usize) -> Self {
        let hlstm = config.gate_hidden > 0;
        let input = |k| name(if hlstm { "weight_ih1" } else { "weight_ih" }, k);
        let consumer = if l + 1 < config.layers {
            input(l + 1)
        } else {
            "decoder.weight".into()
        };
        let (gates, recurrent): (&[&str], _) = if hlstm {
            (&["weight2", "bias2"], "weight_hh1")
        } else {
            (
                &["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
                "weight_hh",
            )
        };
        Self {
            gate_rows: gates.iter().map(|k| name(k, l)).collect(),
            columns: [name(recurrent, l), consumer],
        }
    }

    fn is_gate(&self, tensor: &str) -> bool {
        self.gate_rows.iter().any(|n| n == tensor)
    }

    fn is_column(&self, tensor: &str) -> bool {
        self.columns.iter().any(|n| n == tensor)
    }
}

fn check_config(config: &LmConfig, l: usize) -> Result<(), ModelError> {
    if l >= config.layers {
        return Err(ModelError::Config(format!(
            "layer {l} does not exist (the model has {})",
            config.layers
        )));
    }
    Ok(())
}

fn tensor<'a, F>(layout: &ParamLayout, params: &'a [F], name: &str) -> &'a [F] {
    &params[layout.find(name).expect("tensor of the layout").range()]
}

/// Importance of every unit of layer `l`: the L2 norm of all weights touching it (gate rows,
/// biases included, recurrent column, consumer column).
pub fn unit_importance<F: Real>(
    model: &LanguageModel<F>,
    l: usize,
) -> Result<Vec<f64>, ModelError> {
    unit_importance_in(&model.config, &model.layout, &model.params, l)
}

/// [`unit_importance`] over a bare parameter buffer (what training hooks hold).
pub fn unit_importance_in<F: Real>(
    config: &LmConfig,
    layout: &ParamLayout,
    params: &[F],
    l: usize,
) -> Result<Vec<f64>, ModelError> {
    check_config(config, l)?;
    let h = config.hidden_of(l);
    let touched = Touched::of(config, l);
    let mut sq = vec![0.0f64; h];
    let get = |n: &str| tensor(layout, params, n);
    for t in &touched.gate_rows {
        let t = get(t);
        let width = t.len() / (4 * h);
        for (row, chunk) in t.chunks_exact(width).enumerate() {
            sq[row % h] += chunk.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>();
        }
    }
    for t in &touched.columns {
        for row in get(t).chunks_exact(h) {
            for (j, v) in row.iter().enumerate() {
                sq[j] += v.to_f64() * v.to_f64();
            }
        }
    }
    Ok(sq.into_iter().map(f64::sqrt).collect())
}

/// Zeroes the gate rows (weights and biases) of `units` of layer `l` in place: the units then
/// output exactly zero (the masked form of removal).
pub fn silence_units<F: Real>(
    model: &mut LanguageModel<F>,
    l: usize,
    units: &[usize],
) -> Result<(), ModelError> {
    let (config, layout) = (model.config.clone(), model.layout.clone());
    silence_units_in(&config, &layout, &mut model.params, l, units)
}

/// [`silence_units`] over a bare parameter buffer (what training hooks hold).
pub fn silence_units_in<F: Real>(
    config: &LmConfig,
    layout: &ParamLayout,
    params: &mut [F],
    l: usize,
    units: &[usize],
) -> Result<(), ModelError> {
    check_config(config, l)?;
    let h = config.hidden_of(l);
    if let Some(&bad) = units.iter().find(|&&j| j >= h) {
        return Err(ModelError::Config(format!(
            "unit {bad} of layer {l} does not exist (width {h})"
        )));
    }
    for t in &Touched::of(config, l).gate_rows {
        let t = &mut params[layout.find(t).expect("tensor of the layout").range()];
        let width = t.len() / (4 * h);
        for gate in 0..4 {
            for &j in units {
                let row = gate * h + j;
                t[row * width..(row + 1) * width].fill(F::ZERO);
            }
        }
    }
    Ok(())
}

/// Units of layer `l` whose gate rows (weights and biases) are all zero: they output exactly zero
/// (from a zero state) and can be removed without changing the function.
pub fn silent_units<F: Real>(model: &LanguageModel<F>, l: usize) -> Result<Vec<usize>, ModelError> {
    check_config(&model.config, l)?;
    let h = model.config.hidden_of(l);
    let mut silent = vec![true; h];
    for t in &Touched::of(&model.config, l).gate_rows {
        let t = model.named(t).expect("tensor of the layout");
        let width = t.len() / (4 * h);
        for (row, chunk) in t.chunks_exact(width).enumerate() {
            if chunk.iter().any(|&v| v != F::ZERO) {
                silent[row % h] = false;
            }
        }
    }
    Ok((0..h).filter(|&j| silent[j]).collect())
}

/// A new, smaller model keeping only the units `keep` (in that order) of layer `l`; every other
/// tensor is copied.
pub fn remove_units<F: Real>(
    model: &LanguageModel<F>,
    l: usize,
    keep: &[usize],
) -> Result<LanguageModel<F>, ModelError> {
    check_config(&model.config, l)?;
    let h = model.config.hidden_of(l);
    if keep.is_empty() {
        return Err(ModelError::Config(format!(
            "layer {l} must keep at least one unit"
        )));
    }
    let mut seen = vec![false; h];
    for &j in keep {
        if j >= h || std::mem::replace(&mut seen[j], true) {
            return Err(ModelError::Config(format!(
                "unit list for layer {l} has {j} out of range or twice"
            )));
        }
    }
    let units: Vec<Option<usize>> = keep.iter().copied().map(Some).collect();
    remap_units(model, l, &units, || {
        unreachable!("removal has no new units")
    })
}

/// A new, larger model with `n` units appended to layer `l`. Their gate rows start
/// ~ U(−scale, scale) (from `seed`), their outgoing weights (recurrent and consumer columns) at
/// zero, so the model computes exactly the same function until training moves them.
pub fn add_units<F: Real>(
    model: &LanguageModel<F>,
    l: usize,
    n: usize,
    scale: f64,
    seed: u64,
) -> Result<LanguageModel<F>, ModelError> {
    check_config(&model.config, l)?;
    let h = model.config.hidden_of(l);
    let rng = kernels::rng::CounterRng::new(seed);
    let mut counter = 0u64;
    let draw = move || {
        counter += 1;
        F::from_f64((rng.uniform_f64(l as u64, counter) * 2.0 - 1.0) * scale)
    };
    let units: Vec<Option<usize>> = (0..h).map(Some).chain((0..n).map(|_| None)).collect();
    remap_units(model, l, &units, draw)
}

fn with_width(config: &LmConfig, l: usize, width: usize) -> LmConfig {
    let mut c = config.clone();
    let mut sizes: Vec<usize> = (0..c.layers).map(|k| c.hidden_of(k)).collect();
    sizes[l] = width;
    // `embedding = 0` means "same as hidden": pin it before the widths change.
    c.embedding = config.embedding_width();
    c.hidden = sizes[0];
    c.hidden_sizes = if sizes.iter().all(|&s| s == sizes[0]) {
        Vec::new()
    } else {
        sizes
    };
    // `gate_hidden` is the gates' own width M, not tied to H: it stays.
    c
}

/// The model with layer `l`'s units replaced by `units`: unit k of the result is unit `units[k]`
/// of `model`, or a new one (None) whose gate rows come from `fresh` and whose recurrent and
/// consumer columns are zero. Tensors the layer's units do not touch are copied. Shared by
/// removal (all Some) and growth (the old units, then None).
fn remap_units<F: Real>(
    model: &LanguageModel<F>,
    l: usize,
    units: &[Option<usize>],
    mut fresh: impl FnMut() -> F,
) -> Result<LanguageModel<F>, ModelError> {
    let h = model.config.hidden_of(l);
    let new_h = units.len();
    let touched = Touched::of(&model.config, l);
    let mut out = LanguageModel::new(with_width(&model.config, l, new_h))?;
    // Tensors in layout order and row-major within each: the draw order of `fresh` is fixed.
    for spec in model.layout.tensors() {
        let src = &model.params[spec.range()];
        let dst = out.named_mut(&spec.name).expect("same names");
        let (gate, column) = (touched.is_gate(&spec.name), touched.is_column(&spec.name));
        if !gate && !column {
            assert_eq!(dst.len(), src.len(), "untouched `{}` resized", spec.name);
            dst.copy_from_slice(src);
            continue;
        }
        let src_width = if gate { src.len() / (4 * h) } else { h };
        let dst_width = if column { new_h } else { src_width };
        let dst_rows = if gate { 4 * new_h } else { src.len() / h };
        assert_eq!(
            dst.len(),
            dst_rows * dst_width,
            "resized tensor `{}` has the wrong size",
            spec.name
        );
        for r in 0..dst_rows {
            // Which source row feeds destination row r (None: a new unit's gate row).
            let src_row = if gate {
                units[r % new_h].map(|j| (r / new_h) * h + j)
            } else {
                Some(r)
            };
            for c in 0..dst_width {
                let src_col = if column { units[c] } else { Some(c) };
                dst[r * dst_width + c] = match (src_row, src_col) {
                    (Some(sr), Some(sc)) => src[sr * src_width + sc],
                    // Outgoing weights of new units: zero keeps the function unchanged.
                    (Some(_), None) => F::ZERO,
                    // Gate rows of new units (in the LSTM's W_hh also the new-row/new-column
                    // corner, which is incoming too).
                    (None, _) => fresh(),
                };
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{LanguageModel, LmState};

    fn model() -> LanguageModel<f64> {
        let mut m = LanguageModel::<f64>::new(LmConfig::lstm(11, 6, 2)).unwrap();
        m.init_uniform(0.4, 3);
        m
    }

    fn losses(m: &LanguageModel<f64>) -> Vec<f64> {
        let (t, b) = (5, 3);
        let tokens: Vec<u32> = (0..t * b).map(|i| (i * 7 % 11) as u32).collect();
        let targets: Vec<u32> = (0..t * b).map(|i| (i * 5 % 11) as u32).collect();
        let mut ws = m.workspace(t, b);
        let mut st = LmState::zeros(&m.config, b);
        // Two batches, so the carried state matters too.
        m.forward(&mut ws, &tokens, &targets, &mut st, None, None);
        m.forward(&mut ws, &targets, &tokens, &mut st, None, None);
        let mut out = ws.row_loss.clone();
        out.extend_from_slice(&ws.logits);
        out
    }

    #[test]
    fn compaction_equals_the_masked_model() {
        for l in 0..2 {
            let mut masked = model();
            let removed = [1usize, 4];
            silence_units(&mut masked, l, &removed).unwrap();
            let keep: Vec<usize> = (0..6).filter(|j| !removed.contains(j)).collect();
            let small = remove_units(&masked, l, &keep).unwrap();
            assert_eq!(small.config.hidden_of(l), 4);
            let sizes = if l == 0 { vec![4, 6] } else { vec![6, 4] };
            let reference = LanguageModel::<f64>::new(LmConfig {
                embedding: 6,
                hidden_sizes: sizes,
                ..model().config
            })
            .unwrap();
            assert_eq!(small.layout, reference.layout, "coupled tensors all shrank");
            for (a, b) in losses(&masked).iter().zip(losses(&small).iter()) {
                assert!((a - b).abs() < 1e-12, "layer {l}: {a} vs {b}");
            }
            // Silencing changed the function (the test is not vacuous).
            let diff = losses(&model())
                .iter()
                .zip(losses(&masked).iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(diff > 1e-6);
        }
    }

    #[test]
    fn adding_units_keeps_the_function() {
        for l in 0..2 {
            let m = model();
            let big = add_units(&m, l, 3, 0.1, 9).unwrap();
            assert_eq!(big.config.hidden_of(l), 9);
            for (a, b) in losses(&m).iter().zip(losses(&big).iter()) {
                assert!((a - b).abs() < 1e-12, "layer {l}: {a} vs {b}");
            }
            // New incoming weights are not zero (the units can learn).
            let w = big.named(&format!("rnn.weight_ih_l{l}")).unwrap();
            let width = w.len() / (4 * 9);
            assert!(w[8 * width..9 * width].iter().any(|&v| v != 0.0));
        }
    }

    #[test]
    fn importance_ranks_a_silenced_unit_lowest_and_bad_input_is_an_error() {
        let mut m = model();
        silence_units(&mut m, 0, &[2]).unwrap();
        // Zero its outgoing columns too.
        let h = 6;
        for t in ["rnn.weight_hh_l0", "rnn.weight_ih_l1"] {
            for row in m.named_mut(t).unwrap().chunks_exact_mut(h) {
                row[2] = 0.0;
            }
        }
        assert_eq!(silent_units(&m, 0).unwrap(), vec![2]);
        assert!(silent_units(&m, 1).unwrap().is_empty());
        let imp = unit_importance(&m, 0).unwrap();
        assert_eq!(imp[2], 0.0);
        assert!(imp.iter().enumerate().all(|(j, &v)| j == 2 || v > 0.0));
        assert!(remove_units(&m, 0, &[0, 0]).is_err());
        assert!(remove_units(&m, 5, &[0]).is_err());
        assert!(silence_units(&mut m, 0, &[6]).is_err());
    }

    // H-LSTM: three layers (a bottom, a middle and a top unit layer), embedding 4, H = 6 and gate
    // width M = 5, all different, so a row/column mix-up changes a shape or the function.
    const H: usize = 6;

    fn hlstm() -> LanguageModel<f64> {
        let config = LmConfig {
            embedding: 4,
            gate_hidden: 5,
            ..LmConfig::lstm(11, H, 3)
        };
        let mut m = LanguageModel::<f64>::new(config).unwrap();
        m.init_uniform(0.4, 5);
        m
    }

    /// Fails on NaN and on length mismatch (see `kernels::check`).
    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        kernels::check::max_abs_diff(a, b)
    }

    /// Consumer of layer l's output in the 3-layer H-LSTM.
    fn hlstm_consumer(l: usize) -> String {
        if l < 2 {
            format!("rnn.weight_ih1_l{}", l + 1)
        } else {
            "decoder.weight".into()
        }
    }

    #[test]
    fn hlstm_compaction_equals_the_masked_model() {
        let source = hlstm();
        for l in 0..3 {
            let mut masked = hlstm();
            let removed = [1usize, 4];
            silence_units(&mut masked, l, &removed).unwrap();
            // Only the gates' second layer is touched by silencing: the shared first layers stay.
            for n in ["weight_ih1", "weight_hh1", "bias1"] {
                let n = format!("rnn.{n}_l{l}");
                assert_eq!(masked.named(&n), source.named(&n), "{n}");
            }
            let keep: Vec<usize> = (0..H).filter(|j| !removed.contains(j)).collect();
            let small = remove_units(&masked, l, &keep).unwrap();
            let mut sizes = vec![H; 3];
            sizes[l] = 4;
            let reference = LanguageModel::<f64>::new(LmConfig {
                hidden_sizes: sizes,
                ..source.config.clone()
            })
            .unwrap();
            assert_eq!(small.layout, reference.layout, "coupled tensors all shrank");
            assert_eq!(small.config.gate_hidden, 5);
            let d = max_diff(&losses(&masked), &losses(&small));
            assert!(d < 1e-10, "layer {l}: compacted differs from masked by {d}");
            // Silencing changed the function (the test is not vacuous).
            assert!(max_diff(&losses(&source), &losses(&masked)) > 1e-6);
            // Kept units keep their own weights: unit 5 is now unit 3.
            let (w_src, w_dst) = (
                masked.named(&format!("rnn.weight2_l{l}")).unwrap(),
                small.named(&format!("rnn.weight2_l{l}")).unwrap(),
            );
            for g in 0..4 {
                assert_eq!(
                    w_dst[(g * 4 + 3) * 5..(g * 4 + 4) * 5],
                    w_src[(g * H + 5) * 5..(g * H + 6) * 5]
                );
            }
        }
    }

    #[test]
    fn hlstm_compaction_of_unsilenced_units_changes_the_function() {
        // The converse: removing live units is not free, so the equality above is informative.
        let m = hlstm();
        let small = remove_units(&m, 1, &[0, 2, 3, 5]).unwrap();
        assert!(max_diff(&losses(&m), &losses(&small)) > 1e-6);
    }

    #[test]
    fn hlstm_adding_units_keeps_the_function() {
        let source = hlstm();
        for l in 0..3 {
            let big = add_units(&source, l, 3, 0.1, 9).unwrap();
            assert_eq!(big.config.hidden_of(l), H + 3);
            assert_eq!(big.config.gate_hidden, 5);
            let d = max_diff(&losses(&source), &losses(&big));
            assert!(d < 1e-10, "layer {l}: grown differs from source by {d}");
            // New gate rows (second layer and its bias) are random, for every gate.
            let (w2, b2) = (
                big.named(&format!("rnn.weight2_l{l}")).unwrap(),
                big.named(&format!("rnn.bias2_l{l}")).unwrap(),
            );
            for g in 0..4 {
                let row = g * (H + 3) + H + 2;
                assert!(w2[row * 5..(row + 1) * 5].iter().any(|&v| v != 0.0));
                assert_ne!(b2[row], 0.0);
            }
            // New recurrent and consumer columns are zero.
            for t in [format!("rnn.weight_hh1_l{l}"), hlstm_consumer(l)] {
                for row in big.named(&t).unwrap().chunks_exact(H + 3) {
                    assert!(row[H..].iter().all(|&v| v == 0.0), "{t}");
                }
            }
            // The new units are live: giving one a consumer weight changes the function.
            let mut wired = big.clone();
            wired.named_mut(&hlstm_consumer(l)).unwrap()[H] = 0.5;
            assert!(max_diff(&losses(&source), &losses(&wired)) > 1e-9);
        }
    }

    #[test]
    fn hlstm_importance_ranks_a_scaled_unit_highest_and_a_silenced_one_lowest() {
        for l in 0..3 {
            let mut m = hlstm();
            let base = unit_importance(&m, l).unwrap();
            // The gates' first layers are shared by all units: not part of any unit's norm.
            m.named_mut(&format!("rnn.bias1_l{l}")).unwrap()[0] = 100.0;
            assert_eq!(unit_importance(&m, l).unwrap(), base);
            // Scale every weight touching unit 3 up; silence unit 2 and zero its columns.
            let (w2, b2) = (format!("rnn.weight2_l{l}"), format!("rnn.bias2_l{l}"));
            for g in 0..4 {
                let row = g * H + 3;
                m.named_mut(&w2).unwrap()[row * 5..(row + 1) * 5]
                    .iter_mut()
                    .for_each(|v| *v *= 10.0);
                m.named_mut(&b2).unwrap()[row] *= 10.0;
            }
            silence_units(&mut m, l, &[2]).unwrap();
            for t in [format!("rnn.weight_hh1_l{l}"), hlstm_consumer(l)] {
                for row in m.named_mut(&t).unwrap().chunks_exact_mut(H) {
                    row[3] *= 10.0;
                    row[2] = 0.0;
                }
            }
            let imp = unit_importance(&m, l).unwrap();
            assert_eq!(imp[2], 0.0);
            let top = (0..H).max_by(|&a, &b| imp[a].total_cmp(&imp[b])).unwrap();
            assert_eq!(top, 3, "layer {l}: {imp:?}");
            assert!((imp[3] - 10.0 * base[3]).abs() < 1e-9 * imp[3]);
            assert!(imp.iter().enumerate().all(|(j, &v)| j == 2 || v > 0.0));
        }
    }

    #[test]
    fn hlstm_silent_units_are_exactly_the_silenced_ones() {
        let mut m = hlstm();
        for l in 0..3 {
            assert!(silent_units(&m, l).unwrap().is_empty());
        }
        silence_units(&mut m, 1, &[5, 0, 3]).unwrap();
        assert_eq!(silent_units(&m, 1).unwrap(), vec![0, 3, 5]);
        assert!(silent_units(&m, 0).unwrap().is_empty());
        assert!(silent_units(&m, 2).unwrap().is_empty());
        // A single non-zero bias (unit 3's o gate) makes the unit live again.
        m.named_mut("rnn.bias2_l1").unwrap()[3 * H + 3] = 0.1;
        assert_eq!(silent_units(&m, 1).unwrap(), vec![0, 5]);
        // So does a single second-layer weight (unit 0's f gate).
        m.named_mut("rnn.weight2_l1").unwrap()[H * 5 + 4] = 0.1;
        assert_eq!(silent_units(&m, 1).unwrap(), vec![5]);
    }

    #[test]
    fn hlstm_bad_layers_and_units_are_named_errors() {
        let mut m = hlstm();
        let msg = |e: ModelError| e.to_string();
        let layer = "layer 3 does not exist (the model has 3)";
        assert!(msg(unit_importance(&m, 3).unwrap_err()).contains(layer));
        assert!(msg(silent_units(&m, 3).unwrap_err()).contains(layer));
        assert!(msg(remove_units(&m, 3, &[0]).unwrap_err()).contains(layer));
        assert!(msg(add_units(&m, 3, 1, 0.1, 1).unwrap_err()).contains(layer));
        assert!(msg(silence_units(&mut m, 3, &[0]).unwrap_err()).contains(layer));
        let unit = msg(silence_units(&mut m, 2, &[1, 6]).unwrap_err());
        assert!(
            unit.contains("unit 6 of layer 2 does not exist (width 6)"),
            "{unit}"
        );
        assert!(msg(remove_units(&m, 1, &[0, 6]).unwrap_err()).contains("has 6 out of range"));
        assert!(
            msg(remove_units(&m, 1, &[2, 2]).unwrap_err()).contains("has 2 out of range or twice")
        );
        assert!(msg(remove_units(&m, 0, &[]).unwrap_err()).contains("at least one unit"));
        // A refused call leaves the model as it was.
        assert_eq!(m.params, hlstm().params);
    }
}
