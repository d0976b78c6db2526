#!/usr/bin/env python3
"""Generate fixtures/infer_tiny.safetensors: PyTorch references for the inference engine.

Purpose
    Golden outputs of (a) a 2-layer bidirectional nn.LSTM stack and (b) a word-language-model
    (embedding, 2-layer nn.LSTM, decoder) whose LSTM weights are 80% zero, so that
    crates/infer/tests/pytorch.rs can check every packed format (dense, bf16, CSR, BSR), the
    `_reverse` import and the sparse kernels against PyTorch on the same weights.

How to run (from the repository root)
    .venv/bin/python tools/reference/make_infer_fixture.py

Pinned versions: torch==2.15.0, safetensors==0.8.0 (tools/reference/requirements.txt). CPU,
float32, 1 thread. Seed: torch.manual_seed(20261128), set once; draws in the order below.

Tensors (float32 unless noted)
    bi.weight_ih_l{k}[_reverse], bi.weight_hh_l{k}[_reverse], bi.bias_ih_l{k}[_reverse],
    bi.bias_hh_l{k}[_reverse]   nn.LSTM(I=5, H=20, layers=2, bidirectional) parameters
    bi.x [T=7, B=2, I=5], bi.y [T, B, 2H]   input and output from a zero state
    lm.encoder.weight [V=50, E=24], lm.rnn.* (nn.LSTM(24, 40, 2), 80% of each weight matrix
    zeroed at random), lm.decoder.weight [V, 40], lm.decoder.bias [V]
    lm.tokens [T=6, B=3] (int64), lm.logits [T, B, V]
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import canonicalize_header  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "infer_tiny.safetensors")


def main():
    torch.set_num_threads(1)
    torch.manual_seed(20261128)
    tensors = {}

    bi = torch.nn.LSTM(5, 20, num_layers=2, bidirectional=True)
    for n, p in bi.named_parameters():
        tensors[f"bi.{n}"] = p.detach().clone()
    x = torch.rand(7, 2, 5) * 2 - 1
    with torch.no_grad():
        y, _ = bi(x)
    tensors["bi.x"] = x
    tensors["bi.y"] = y

    v, e, h = 50, 24, 40
    enc = torch.rand(v, e) * 0.2 - 0.1
    rnn = torch.nn.LSTM(e, h, num_layers=2)
    with torch.no_grad():
        for n, p in rnn.named_parameters():
            if n.startswith("weight"):
                p.mul_((torch.rand(p.shape) >= 0.8).float())
    dec_w = torch.rand(v, h) * 0.2 - 0.1
    dec_b = torch.rand(v) * 0.2 - 0.1
    tokens = torch.randint(0, v, (6, 3))
    with torch.no_grad():
        out, _ = rnn(torch.nn.functional.embedding(tokens, enc))
        logits = out @ dec_w.T + dec_b
    tensors["lm.encoder.weight"] = enc
    for n, p in rnn.named_parameters():
        tensors[f"lm.rnn.{n}"] = p.detach().clone()
    tensors["lm.decoder.weight"] = dec_w
    tensors["lm.decoder.bias"] = dec_b
    tensors["lm.tokens"] = tokens
    tensors["lm.logits"] = logits

    tensors = {k: t.contiguous() for k, t in tensors.items()}
    save_file(tensors, OUT_PATH, metadata={"torch": torch.__version__, "seed": "20261128"})
    canonicalize_header(OUT_PATH)
    print(f"wrote {OUT_PATH}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
