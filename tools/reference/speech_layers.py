#!/usr/bin/env python3
"""PyTorch reference for DeepSpeech2's front-end layers, written as the fixture
crates/speech/tests/fixtures/speech_layers.json for crates/speech/tests/layers.rs.

Everything runs in float64 so the Rust f64 path can be held to ~1e-10 and the f32 path to ~1e-4.
Inputs, weights and upstream gradients are not stored: both sides compute them from `det` below
(sin/cos of the index, which agree to an ulp between numpy and Rust's libm), so the fixture stays
small although conv2's weight alone has 236,544 values. Large results are stored as their sum,
their sum of squares and an evenly strided sample of at most ~256 values.

Contents:
  conv:      x (2, 1, 161, 20) -> Conv2d(1, 32, (41, 11), stride (2, 2), padding (0, 10))
             -> y1 (2, 32, 61, 15) -> Conv2d(32, 32, (21, 11), stride (2, 1)) -> y2 (2, 32, 21, 5);
             loss = sum(y2 * g2); gradients of x, both weights and both biases.
  bn2d:      BatchNorm2d(3) on (2, 3, 4, 5), non-default affine and running stats: training
             forward, gradients of loss = sum(y * g), running stats after the step, eval forward.
  bn_seq:    deepspeech.pytorch's SequenceWise(BatchNorm1d(4)) on (T=5, N=3, F=4) viewed as (15, 4),
             same quantities.
  hardtanh:  Hardtanh(0, 20) forward and backward, the bounds 0 and 20 hit exactly.

Usage: .venv/bin/python tools/reference/speech_layers.py   (needs torch and numpy)
"""
import json
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "speech", "tests", "fixtures",
                   "speech_layers.json")


def det(n, seed, scale=1.0):
    """n deterministic values in [-scale, scale]; the Rust tests compute the same formula."""
    i = np.arange(n, dtype=np.float64)
    return scale * np.sin(0.7310 * i + seed) * np.cos(0.0123 * i * seed + 0.5)


def t(n_shape, seed, scale=1.0):
    n = int(np.prod(n_shape))
    return torch.tensor(det(n, seed, scale).reshape(n_shape), dtype=torch.float64)


def full(x):
    return [float(v) for v in x.detach().reshape(-1).numpy()]


def summary(x, samples=256):
    """Shape, sum, sum of squares and every stride-th value (stride odd, so it does not align with
    the even extents of the tensors)."""
    flat = x.detach().reshape(-1).numpy()
    stride = max(1, len(flat) // samples) | 1
    return {
        "shape": list(x.shape),
        "sum": float(flat.sum()),
        "sumsq": float((flat * flat).sum()),
        "stride": stride,
        "values": [float(v) for v in flat[::stride]],
    }


def conv_case():
    x = t((2, 1, 161, 20), 1.0).requires_grad_()
    c1 = torch.nn.Conv2d(1, 32, (41, 11), stride=(2, 2), padding=(0, 10))
    c2 = torch.nn.Conv2d(32, 32, (21, 11), stride=(2, 1))
    with torch.no_grad():
        # Scaled by 1/sqrt(fan-in) so every output is O(1).
        c1.weight.copy_(t(c1.weight.shape, 2.0, 1 / np.sqrt(41 * 11)))
        c1.bias.copy_(t(c1.bias.shape, 3.0, 0.1))
        c2.weight.copy_(t(c2.weight.shape, 4.0, 1 / np.sqrt(32 * 21 * 11)))
        c2.bias.copy_(t(c2.bias.shape, 5.0, 0.1))
    y1 = c1(x)
    y1.retain_grad()
    y2 = c2(y1)
    g2 = t(y2.shape, 6.0)
    (y2 * g2).sum().backward()
    return {
        "seeds": {"x": 1.0, "w1": 2.0, "b1": 3.0, "w2": 4.0, "b2": 5.0, "g2": 6.0},
        "y1": summary(y1), "y2": summary(y2), "dy1": summary(y1.grad), "dx": summary(x.grad),
        "dw1": summary(c1.weight.grad), "db1": summary(c1.bias.grad),
        "dw2": summary(c2.weight.grad), "db2": summary(c2.bias.grad),
    }


def bn_case(bn, x, seed):
    """Training step then eval on the same input; the input is the formula plus a per-channel
    offset (so the mean subtraction matters)."""
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(1.0 + t((c,), seed + 1, 0.5))
        bn.bias.copy_(t((c,), seed + 2, 0.5))
        bn.running_mean.copy_(t((c,), seed + 3))
        bn.running_var.copy_(1.5 + t((c,), seed + 4))
    start = {"weight": full(bn.weight), "bias": full(bn.bias),
             "running_mean": full(bn.running_mean), "running_var": full(bn.running_var)}
    x = x.requires_grad_()
    bn.train()
    y = bn(x)
    g = t(y.shape, seed + 5)
    (y * g).sum().backward()
    bn.eval()
    with torch.no_grad():
        y_eval = bn(x)
    return {
        "start": start, "x": full(x), "g": full(g), "y": full(y), "dx": full(x.grad),
        "dweight": full(bn.weight.grad), "dbias": full(bn.bias.grad),
        "running_mean": full(bn.running_mean), "running_var": full(bn.running_var),
        "y_eval": full(y_eval),
    }


def bn2d_case():
    x = t((2, 3, 4, 5), 10.0, 2.0) + torch.tensor([3.0, -1.0, 0.5]).reshape(1, 3, 1, 1)
    return bn_case(torch.nn.BatchNorm2d(3), x.detach(), 10.0)


def bn_seq_case():
    # SequenceWise: (T, N, F) -> (T*N, F) -> BatchNorm1d -> back; only the (T*N, F) view matters.
    x = t((5, 3, 4), 20.0, 3.0) + torch.tensor([1.0, -2.0, 0.0, 4.0])
    return bn_case(torch.nn.BatchNorm1d(4), x.reshape(15, 4).detach(), 20.0)


def hardtanh_case():
    x = torch.cat([torch.tensor([-3.0, 0.0, 1e-12, 0.5, 19.5, 20.0, 20.0 + 1e-9, 27.0]),
                   t((24,), 30.0, 25.0)]).requires_grad_()
    y = torch.nn.Hardtanh(0.0, 20.0)(x)
    g = t(x.shape, 31.0)
    (y * g).sum().backward()
    # PyTorch's gradient is 0 at the bounds (x = 0 and x = 20): the Rust side must agree.
    assert x.grad[1] == 0 and x.grad[5] == 0 and x.grad[2] != 0
    return {"x": full(x), "g": full(g), "y": full(y), "dx": full(x.grad)}


def main():
    fixture = {
        "torch": torch.__version__,
        "conv": conv_case(),
        "bn2d": bn2d_case(),
        "bn_seq": bn_seq_case(),
        "hardtanh": hardtanh_case(),
    }
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
