#!/usr/bin/env python3
"""Random (seeded) LSTM weights as safetensors, with PyTorch `state_dict` names.

Two layouts:
  lstm  an `nn.LSTM` stack: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}
        (plus the `_reverse` variants with --bidirectional);
  lm    the PyTorch word-language-model layout read by `symbiont infer` / `symbiont bench`:
        encoder.weight (V, E), rnn.weight_ih_l0 ..., decoder.weight (V, H), decoder.bias (V).

Initialisation: the LSTM tensors are uniform(-1/sqrt(H), 1/sqrt(H)) as `nn.LSTM` does; the
encoder and decoder weights uniform(-0.1, 0.1) as the word-language-model example does; the
decoder bias uniform(-1/sqrt(H), 1/sqrt(H)) as `nn.Linear` does (non-zero, so output checks
exercise it). Gate order is PyTorch's (i, f, g, o).

--density D keeps exactly round(D * n) entries of each LSTM weight matrix (weight_ih / weight_hh)
and zeroes the rest, chosen uniformly at random without looking at magnitudes, so sparse engines
can be benched on the same shapes (--density-embeddings also masks encoder and decoder weights;
biases are never masked). The mask comes from its own random stream: the surviving values are
the same as in the dense file of the same seed.

The generator is importable (`lstm_state`, `lm_state`, `apply_density`, `save`) so the peer
benchmarks can build identical weights in memory.

Usage (from the repo root):
    .venv/bin/python bench/make_lstm_weights.py --layout lm --layers 2 --hidden 650 --vocab 10000 \\
        --out /tmp/lm-650.safetensors
    .venv/bin/python bench/make_lstm_weights.py --layout lstm --layers 1 --hidden 512 --input 256 \\
        --density 0.1 --seed 3 --out /tmp/lstm-512-d0.1.safetensors
"""
import argparse
import json
import math
import re
import sys

import numpy as np


def _uniform(rng, shape, bound):
    # float32 draws directly: the H=1500 LM has ~66M parameters, float64 temporaries would double
    # the peak memory for no benefit.
    return (rng.random(shape, dtype=np.float32) * np.float32(2 * bound) - np.float32(bound)).astype(np.float32)


def lstm_state(rng, layers, hidden, input_size, bidirectional=False, prefix=""):
    """nn.LSTM state_dict (numpy float32) in PyTorch's own order; `prefix` e.g. "rnn."."""
    bound = 1.0 / math.sqrt(hidden)
    dirs = 2 if bidirectional else 1
    state = {}
    for k in range(layers):
        in_k = input_size if k == 0 else hidden * dirs
        for suffix in ["", "_reverse"][:dirs]:
            state[f"{prefix}weight_ih_l{k}{suffix}"] = _uniform(rng, (4 * hidden, in_k), bound)
            state[f"{prefix}weight_hh_l{k}{suffix}"] = _uniform(rng, (4 * hidden, hidden), bound)
            state[f"{prefix}bias_ih_l{k}{suffix}"] = _uniform(rng, (4 * hidden,), bound)
            state[f"{prefix}bias_hh_l{k}{suffix}"] = _uniform(rng, (4 * hidden,), bound)
    return state


def lm_state(rng, layers, hidden, embedding, vocab):
    """Word-language-model state_dict: encoder, rnn.* (unidirectional), decoder."""
    state = {"encoder.weight": _uniform(rng, (vocab, embedding), 0.1)}
    state.update(lstm_state(rng, layers, hidden, embedding, prefix="rnn."))
    state["decoder.weight"] = _uniform(rng, (vocab, hidden), 0.1)
    state["decoder.bias"] = _uniform(rng, (vocab,), 1.0 / math.sqrt(hidden))
    return state


def is_lstm_matrix(name):
    """weight_ih_l{k} / weight_hh_l{k} (any prefix or suffix): the matrices --density masks."""
    return re.search(r"(^|\.)weight_(ih|hh)_l\d", name) is not None


def apply_density(state, density, seed, embeddings=False):
    """Zero all but round(density * n) random entries of each selected weight matrix, in place."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if density == 1.0:
        return state
    # A separate stream from the values' stream: masking does not change the surviving values.
    rng = np.random.default_rng([seed, 1])
    for name in state:
        selected = is_lstm_matrix(name) or (embeddings and name in ("encoder.weight", "decoder.weight"))
        if not selected:
            continue
        w = state[name].reshape(-1)  # a view: the zeroing lands in state[name]
        n_zero = w.size - int(round(density * w.size))
        w[rng.permutation(w.size)[:n_zero]] = 0.0
    return state


def make_state(layout, layers, hidden, input_size=None, vocab=10_000, bidirectional=False, density=1.0,
               density_embeddings=False, seed=0):
    """The whole recipe: values from `seed`, then the optional mask. `input_size` None = hidden."""
    input_size = input_size or hidden
    rng = np.random.default_rng(seed)
    if layout == "lstm":
        state = lstm_state(rng, layers, hidden, input_size, bidirectional)
    elif layout == "lm":
        if bidirectional:
            raise ValueError("the lm layout is unidirectional")
        state = lm_state(rng, layers, hidden, input_size, vocab)
    else:
        raise ValueError(f"unknown layout {layout!r} (lstm or lm)")
    return apply_density(state, density, seed, density_embeddings)


def save(state, path, metadata=None):
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path,
              metadata={k: str(v) for k, v in (metadata or {}).items()})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=["lstm", "lm"], default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--input", type=int, help="input size (lstm) or embedding size (lm); default: hidden")
    p.add_argument("--vocab", type=int, default=10_000, help="lm layout only")
    p.add_argument("--bidirectional", action="store_true", help="lstm layout only")
    p.add_argument("--density", type=float, default=1.0, help="share of non-zeros kept per LSTM weight matrix")
    p.add_argument("--density-embeddings", action="store_true", help="also mask encoder and decoder weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .safetensors file")
    args = p.parse_args()
    try:
        state = make_state(args.layout, args.layers, args.hidden, args.input, args.vocab, args.bidirectional,
                           args.density, args.density_embeddings, args.seed)
    except ValueError as e:
        sys.exit(f"error: {e}")
    meta = {"generator": "bench/make_lstm_weights.py", "layout": args.layout, "layers": args.layers,
            "hidden": args.hidden, "input": args.input or args.hidden, "seed": args.seed,
            "density": args.density, "density_embeddings": args.density_embeddings,
            "bidirectional": args.bidirectional}
    if args.layout == "lm":
        meta["vocab"] = args.vocab
    save(state, args.out, meta)
    params = sum(v.size for v in state.values())
    nonzero = sum(int(np.count_nonzero(v)) for v in state.values())
    print(json.dumps({"out": args.out, "tensors": len(state), "params": params, "nonzero": nonzero, **meta}))


if __name__ == "__main__":
    main()
