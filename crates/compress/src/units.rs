//! Structured pruning and growth of hidden units of a stacked-LSTM language model.
//!
//! Hidden unit j of layer l touches: rows {j, H+j, 2H+j, 3H+j} (its i, f, g, o gates) of
//! `weight_ih_l`, `weight_hh_l`, `bias_ih_l`, `bias_hh_l`; column j of `weight_hh_l` (its
//! recurrent output); and column j of the next consumer of h: `weight_ih_l{l+1}`, or
//! `decoder.weight` for the top layer. Removing the unit removes all of these, so the result is a
//! physically smaller dense model. A unit whose incoming rows are all zero has c ≡ 0 and h ≡ 0
//! from a zero state (i = σ(0)·tanh(0) adds nothing), so "masking" it that way and compacting it
//! away give the same function: that is the compaction test.

use kernels::Real;
use model::{LanguageModel, LmConfig, ModelError, ParamLayout};

fn name(kind: &str, l: usize) -> String {
    format!("rnn.{kind}_l{l}")
}

/// Name of the tensor whose columns are fed by layer `l`'s output.
fn consumer(model_layers: usize, l: usize) -> String {
    if l + 1 < model_layers {
        name("weight_ih", l + 1)
    } else {
        "decoder.weight".into()
    }
}

fn check_layer<F>(model: &LanguageModel<F>, l: usize) -> Result<(), ModelError> {
    check_config(&model.config, l)
}

fn check_config(config: &LmConfig, l: usize) -> Result<(), ModelError> {
    if config.gate_hidden > 0 {
        return Err(ModelError::Config(
            "structured unit removal/growth supports LSTM layers; H-LSTM gate units are not handled yet".into(),
        ));
    }
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

/// Importance of every unit of layer `l`: the L2 norm of all weights touching it (incoming gate
/// rows, biases, recurrent column, consumer column).
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
    let mut sq = vec![0.0f64; h];
    let get = |n: &str| tensor(layout, params, n);
    for kind in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        let t = get(&name(kind, l));
        let width = t.len() / (4 * h);
        for (row, chunk) in t.chunks_exact(width).enumerate() {
            sq[row % h] += chunk.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>();
        }
    }
    for t in [name("weight_hh", l), consumer(config.layers, l)] {
        for row in get(&t).chunks_exact(h) {
            for (j, v) in row.iter().enumerate() {
                sq[j] += v.to_f64() * v.to_f64();
            }
        }
    }
    Ok(sq.into_iter().map(f64::sqrt).collect())
}

/// Zeroes the incoming weights and biases of `units` of layer `l` in place: the units then
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
    for kind in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        let t = &mut params[layout
            .find(&name(kind, l))
            .expect("tensor of the layout")
            .range()];
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

/// Units of layer `l` whose incoming weights and biases are all zero: they output exactly zero
/// (from a zero state) and can be removed without changing the function.
pub fn silent_units<F: Real>(model: &LanguageModel<F>, l: usize) -> Result<Vec<usize>, ModelError> {
    check_layer(model, l)?;
    let h = model.config.hidden_of(l);
    let mut silent = vec![true; h];
    for kind in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        let t = model.named(&name(kind, l)).expect("tensor of the layout");
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
    check_layer(model, l)?;
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
    // Rows of the gate tensors to keep: gate-major, as in the layout.
    let rows: Vec<usize> = (0..4)
        .flat_map(|g| keep.iter().map(move |&j| g * h + j))
        .collect();
    resize_layer(model, l, keep.len(), |tensor, src, width| {
        gather(tensor, src, width, &rows, keep, l, model.config.layers)
    })
}

/// A new, larger model with `n` units appended to layer `l`. Their incoming weights start
/// ~ U(−scale, scale) (from `seed`), their outgoing weights (recurrent and consumer columns) at
/// zero, so the model computes exactly the same function until training moves them.
pub fn add_units<F: Real>(
    model: &LanguageModel<F>,
    l: usize,
    n: usize,
    scale: f64,
    seed: u64,
) -> Result<LanguageModel<F>, ModelError> {
    check_layer(model, l)?;
    let h = model.config.hidden_of(l);
    let rng = kernels::rng::CounterRng::new(seed);
    let new_h = h + n;
    let layers = model.config.layers;
    let mut counter = 0u64;
    let mut draw = move || {
        counter += 1;
        F::from_f64((rng.uniform_f64(l as u64, counter) * 2.0 - 1.0) * scale)
    };
    let mut out = LanguageModel::new(with_width(&model.config, l, new_h))?;
    for spec in model.layout.tensors() {
        let src = &model.params[spec.range()];
        let dst_spec = out.layout.find(&spec.name).expect("same names").clone();
        let dst = &mut out.params[dst_spec.range()];
        let is_gate = spec.name == name("weight_ih", l)
            || spec.name == name("weight_hh", l)
            || spec.name == name("bias_ih", l)
            || spec.name == name("bias_hh", l);
        let is_col = spec.name == name("weight_hh", l) || spec.name == consumer(layers, l);
        let src_width = if spec.shape.len() == 2 {
            spec.shape[1]
        } else {
            1
        };
        let dst_width = if dst_spec.shape.len() == 2 {
            dst_spec.shape[1]
        } else {
            1
        };
        let src_rows = src.len() / src_width;
        for r in 0..dst_spec.shape[0] {
            // Which source row feeds destination row r (None: a new unit's gate row).
            let src_row = if is_gate {
                let (g, j) = (r / new_h, r % new_h);
                (j < h).then_some(g * h + j)
            } else {
                Some(r).filter(|&r| r < src_rows)
            };
            for c in 0..dst_width {
                let src_col = if is_col {
                    (c < h).then_some(c)
                } else {
                    Some(c)
                };
                dst[r * dst_width + c] = match (src_row, src_col) {
                    (Some(sr), Some(sc)) => src[sr * src_width + sc],
                    // Outgoing weights of new units: zero keeps the function unchanged.
                    (Some(_), None) => F::ZERO,
                    // Incoming weights of new units (None column cannot happen for new rows
                    // except in W_hh, whose new-row/new-column corner is also incoming).
                    (None, _) => draw(),
                };
            }
        }
    }
    Ok(out)
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
    c
}

fn resize_layer<F: Real>(
    model: &LanguageModel<F>,
    l: usize,
    new_h: usize,
    mut copy: impl FnMut(&str, &[F], usize) -> Option<Vec<F>>,
) -> Result<LanguageModel<F>, ModelError> {
    let mut out = LanguageModel::new(with_width(&model.config, l, new_h))?;
    for spec in model.layout.tensors() {
        let src = &model.params[spec.range()];
        let width = if spec.shape.len() == 2 {
            spec.shape[1]
        } else {
            1
        };
        let data = copy(&spec.name, src, width).unwrap_or_else(|| src.to_vec());
        let dst = out.named_mut(&spec.name).expect("same names");
        assert_eq!(
            dst.len(),
            data.len(),
            "resized tensor `{}` has the wrong size",
            spec.name
        );
        dst.copy_from_slice(&data);
    }
    Ok(out)
}

/// The kept rows (gate tensors of layer l) and/or kept columns (recurrent and consumer
/// tensors) of one tensor; None for tensors the removal does not touch.
fn gather<F: Real>(
    tensor: &str,
    src: &[F],
    width: usize,
    rows: &[usize],
    keep: &[usize],
    l: usize,
    layers: usize,
) -> Option<Vec<F>> {
    let gate = [
        name("weight_ih", l),
        name("weight_hh", l),
        name("bias_ih", l),
        name("bias_hh", l),
    ]
    .iter()
    .any(|n| n == tensor);
    let cols = tensor == name("weight_hh", l) || tensor == consumer(layers, l);
    if !gate && !cols {
        return None;
    }
    let row_ids: Vec<usize> = if gate {
        rows.to_vec()
    } else {
        (0..src.len() / width).collect()
    };
    let col_ids: Vec<usize> = if cols {
        keep.to_vec()
    } else {
        (0..width).collect()
    };
    Some(
        row_ids
            .iter()
            .flat_map(|&r| col_ids.iter().map(move |&c| src[r * width + c]))
            .collect(),
    )
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
}
