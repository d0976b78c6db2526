#!/usr/bin/env python3
"""Generate fixtures/hlstm_tiny.safetensors: a tiny PyTorch reference for symbiont's H-LSTM layer.

Purpose
    Golden values (outputs, final cell state and gradients) for one H-LSTM layer
    (hidden-layer LSTM, Dai/Yin/Jha 2018; docs/method.md section 3) so that
    crates/model/src/hlstm.rs can be checked against PyTorch autograd at float32
    tolerances (crates/model/tests/hlstm_fixture.rs).

How to run (from the repository root)
    python3 -m venv .venv && .venv/bin/pip install -r tools/reference/requirements.txt
    .venv/bin/python tools/reference/make_hlstm_fixture.py            # write + verify
    .venv/bin/python tools/reference/make_hlstm_fixture.py --verify-only

Pinned versions: torch==2.15.0, safetensors==0.8.0, numpy==2.4.6
    (see tools/reference/requirements.txt). CPU only, float32, 1 thread.
Seed: torch.manual_seed(20261129), set once at start; draws in a fixed order:
    the five parameters (in the order listed below), x, h0, c0, r.

Cell (plain torch ops, no nn.LSTM; gate order i,f,g,o as in PyTorch)
    for t in 0..T, z_t = [x_t; h_{t-1}]:
        a   = relu(x_t @ weight_ih1_l0.T + h_{t-1} @ weight_hh1_l0.T + bias1_l0)   [B, 4M]
        a_k = a[:, k*M:(k+1)*M]                                                   (no dropout)
        pre[:, k*H:(k+1)*H] = a_k @ weight2_l0[k].T  (+ bias2_l0)                 [B, 4H]
        i,f,g,o = sigmoid, sigmoid, tanh, sigmoid of the four H-wide blocks of pre
        c_t = f*c_{t-1} + i*g;  h_t = o*tanh(c_t)
    T=4, B=3, I=5, H=6, M=7. Every parameter ~ U(-0.5, 0.5); x ~ U(-1, 1);
    h0, c0 ~ U(-0.5, 0.5) (non-zero initial state); r ~ U(-1, 1).
    Objective J = sum(r * h) over all (T, B, H); grad.<name> = dJ/d<name>; the
    initial state is a constant (truncated BPTT), so it gets no gradient.

Tensors (all float32)
    weight_ih1_l0 [4M, I], weight_hh1_l0 [4M, H], bias1_l0 [4M],
    weight2_l0 [4, H, M], bias2_l0 [4H]            parameters
    x [T, B, I], h0 [B, H], c0 [B, H], r [T, B, H]  inputs
    h [T, B, H] (h_1..h_T), c_final [B, H] (c_T)    outputs
    grad.<param>, grad.x                             dJ/d.
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fixture_io import canonicalize_header

SEED = 20261129
T, B, I, H, M = 4, 3, 5, 6, 7
INIT = 0.5

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(REPO, "fixtures", "hlstm_tiny.safetensors")

PARAMS = [
    ("weight_ih1_l0", (4 * M, I)),
    ("weight_hh1_l0", (4 * M, H)),
    ("bias1_l0", (4 * M,)),
    ("weight2_l0", (4, H, M)),
    ("bias2_l0", (4 * H,)),
]
PARAM_NAMES = [n for n, _ in PARAMS]


def hlstm_forward(p, x, h0, c0, active=None):
    """The H-LSTM layer in plain torch ops. Returns (h [T,B,H], c_T [B,H]).

    When `active` is a list, the fraction of ReLU units on at each step is appended to it.
    """
    h, c = h0, c0
    outs = []
    for t in range(x.shape[0]):
        a = torch.relu(x[t] @ p["weight_ih1_l0"].T + h @ p["weight_hh1_l0"].T + p["bias1_l0"])
        if active is not None:
            active.append((a > 0).float().mean().item())
        a4 = a.view(B, 4, M)
        # Gate k: its own (H, M) map of its own M-wide hidden block.
        pre = torch.einsum("bkm,khm->bkh", a4, p["weight2_l0"]).reshape(B, 4 * H) + p["bias2_l0"]
        i = torch.sigmoid(pre[:, :H])
        f = torch.sigmoid(pre[:, H:2 * H])
        g = torch.tanh(pre[:, 2 * H:3 * H])
        o = torch.sigmoid(pre[:, 3 * H:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), c


def generate():
    torch.manual_seed(SEED)
    params = {n: torch.empty(shape).uniform_(-INIT, INIT) for n, shape in PARAMS}
    x = torch.empty(T, B, I).uniform_(-1.0, 1.0)
    h0 = torch.empty(B, H).uniform_(-INIT, INIT)
    c0 = torch.empty(B, H).uniform_(-INIT, INIT)
    r = torch.empty(T, B, H).uniform_(-1.0, 1.0)

    leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    xl = x.clone().requires_grad_(True)
    active = []
    h, c_final = hlstm_forward(leaves, xl, h0, c0, active)
    (r * h).sum().backward()
    # The ReLU must be both on and off, or the fixture would not test it.
    print("fraction of gate hidden units on per step:", [f"{v:.2f}" for v in active])
    assert all(0.2 < v < 0.8 for v in active), active

    tensors = {n: p.clone() for n, p in params.items()}
    tensors.update({"x": x, "h0": h0, "c0": c0, "r": r})
    tensors["h"] = h.detach().clone()
    tensors["c_final"] = c_final.detach().clone()
    for n, p in leaves.items():
        tensors["grad." + n] = p.grad.detach().clone()
    tensors["grad.x"] = xl.grad.detach().clone()

    for k, v in tensors.items():
        assert v.dtype == torch.float32, (k, v.dtype)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {
        "generator": "tools/reference/make_hlstm_fixture.py",
        "torch": torch.__version__,
        "seed": str(SEED),
        "sizes": f"T={T} B={B} I={I} H={H} M={M}",
        "conventions": (
            "H-LSTM layer: a = relu(x W_ih1^T + h W_hh1^T + b1) [B,4M], gate blocks i,f,g,o of M; "
            "pre_k = a_k W2[k]^T + b2[kH:(k+1)H]; i,f,o sigmoid, g tanh; c = f*c + i*g; "
            "h = o*tanh(c); no dropout; params U(-0.5,0.5); x U(-1,1); h0,c0 U(-0.5,0.5); "
            "r U(-1,1); gradients are of J = sum(r*h) with (h0,c0) constant"
        ),
    }
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    save_file(tensors, OUT_PATH, metadata=metadata)
    canonicalize_header(OUT_PATH)
    print(f"wrote {OUT_PATH} ({os.path.getsize(OUT_PATH)} bytes, {len(tensors)} tensors)")


# ---------------------------------------------------------------------------
# Verification: reload the file and check self-consistency.
#   * independent plain-numpy float64 implementation: hand-written forward (one
#     loop per gate, no einsum), gradients by central finite differences
#   * torch re-run of forward/backward from the loaded tensors (exact)
# ---------------------------------------------------------------------------

def np_forward(p, x, h0, c0):
    """Plain-numpy float64 H-LSTM. Returns (h [T,B,H], c_T [B,H])."""
    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    h, c = h0, c0
    outs = []
    for t in range(x.shape[0]):
        pre = []
        for k in range(4):
            rows = slice(k * M, (k + 1) * M)
            a_k = np.maximum(
                x[t] @ p["weight_ih1_l0"][rows].T + h @ p["weight_hh1_l0"][rows].T
                + p["bias1_l0"][rows], 0.0)
            pre.append(a_k @ p["weight2_l0"][k].T + p["bias2_l0"][k * H:(k + 1) * H])
        i, f, g, o = sig(pre[0]), sig(pre[1]), np.tanh(pre[2]), sig(pre[3])
        c = f * c + i * g
        h = o * np.tanh(c)
        outs.append(h)
    return np.stack(outs), c


def np_fd_grads(p, x, h0, c0, r, eps=1e-6):
    """Central finite differences of J = sum(r*h) w.r.t. every parameter and x, float64."""
    def j(p, x):
        return float((r * np_forward(p, x, h0, c0)[0]).sum())

    out = {}
    for name, arr in list(p.items()) + [("x", x)]:
        g = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            up = j(p, x)
            flat[k] = old - eps
            down = j(p, x)
            flat[k] = old
            gflat[k] = (up - down) / (2 * eps)
        out[name] = g
    return out


def verify():
    t = load_file(OUT_PATH)
    ok = True

    def check(label, a, b, atol):
        nonlocal ok
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        good = a.shape == b.shape and np.allclose(a, b, atol=atol, rtol=0.0)
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {label:36s} max|diff|={err:.3e}")

    for n, shape in PARAMS:
        assert tuple(t[n].shape) == shape, (n, t[n].shape, shape)

    print("verify (independent numpy float64: hand-written forward + finite-difference grads):")
    p = {n: t[n].double().numpy().copy() for n in PARAM_NAMES}
    x, h0, c0, r = (t[k].double().numpy().copy() for k in ("x", "h0", "c0", "r"))
    h, c_final = np_forward(p, x, h0, c0)
    check("h vs numpy", t["h"].numpy(), h, 1e-6)
    check("c_final vs numpy", t["c_final"].numpy(), c_final, 1e-6)
    g = np_fd_grads(p, x, h0, c0, r)
    for n in PARAM_NAMES + ["x"]:
        check("grad." + n + " vs numpy FD", t["grad." + n].numpy(), g[n], 1e-5)

    print("verify (torch re-run from loaded tensors):")
    leaves = {n: t[n].clone().requires_grad_(True) for n in PARAM_NAMES}
    xl = t["x"].clone().requires_grad_(True)
    h, c_final = hlstm_forward(leaves, xl, t["h0"], t["c0"])
    (t["r"] * h).sum().backward()
    check("h", t["h"].numpy(), h.detach().numpy(), 0.0)
    check("c_final", t["c_final"].numpy(), c_final.detach().numpy(), 0.0)
    for n in PARAM_NAMES:
        check("grad." + n, t["grad." + n].numpy(), leaves[n].grad.numpy(), 0.0)
    check("grad.x", t["grad.x"].numpy(), xl.grad.numpy(), 0.0)

    print("VERIFY OK" if ok else "VERIFY FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if not args.verify_only:
        generate()
    sys.exit(0 if verify() else 1)


if __name__ == "__main__":
    main()
