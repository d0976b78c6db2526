#!/usr/bin/env python3
"""Generate fixtures/lstm_lm_tiny.safetensors: a tiny PyTorch reference for symbiont's LSTM LM.

Purpose
    Golden values (forward logits, loss, gradients, and five truncated-BPTT SGD
    steps with global-norm clipping) for a 2-layer LSTM word language model in
    the PyTorch word_language_model layout, so the Rust crates can be checked
    against PyTorch bit-for-bit-ish (float32 tolerances).

How to run (from the repository root)
    python3 -m venv .venv && .venv/bin/pip install -r tools/reference/requirements.txt
    .venv/bin/python tools/reference/make_lstm_lm_fixture.py            # write + verify
    .venv/bin/python tools/reference/make_lstm_lm_fixture.py --verify-only

Pinned versions: torch==2.15.0, safetensors==0.8.0, numpy==2.4.6
    (see tools/reference/requirements.txt). CPU only, float32, 1 thread.
Seed: torch.manual_seed(20261128), set once at start; all random draws follow
    in a fixed order (model construction, U(-0.5,0.5) init, input/target,
    steps_input/steps_target).

Model / conventions
    encoder = nn.Embedding(V, E); rnn = nn.LSTM(E, H, num_layers=2) (seq-first,
    gate order i,f,g,o, both biases b_ih and b_hh); decoder = nn.Linear(H, V).
    V=11, E=H=6, T=5, B=3, no dropout. Every parameter ~ U(-0.5, 0.5).
    loss = F.cross_entropy(logits.view(-1,V), target.view(-1))  (mean over T*B).
    Training objective J = loss * T (TF PTB tutorial convention: sum over time of
    the batch-mean CE). grad.<name> = dJ/d<name> with zero initial (h, c).
    SGD: 5 steps on steps_input[k]/steps_target[k]; state carried (detached)
    from step k's final (h, c) into step k+1, zero for step 0; backward of J_k;
    torch.nn.utils.clip_grad_norm_(params, max_norm=CLIP) (global L2 norm over
    all params; scale = CLIP / (norm + 1e-6) applied when that is < 1);
    then p -= lr * grad with lr = 0.7. sgd_losses[k] = loss_k (mean CE before
    step k's update), sgd_grad_norms[k] = pre-clip global norm of dJ_k/dparams.

Tensors
    <name>          initial parameters (state_dict names)
    grad.<name>     dJ/d<name> for the single forward on input/target
    final.<name>    parameters after the 5 SGD steps
    input, target   int64 [T, B];  logits float32 [T, B, V];  loss float32 []
    steps_input, steps_target int64 [5, T, B]
    sgd_lr, sgd_clip float32 [1];  sgd_losses, sgd_grad_norms float32 [5]
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from fixture_io import canonicalize_header

SEED = 20261128
V, E, H, T, B, L = 11, 6, 6, 5, 3, 2
N_STEPS = 5
LR = 0.7
CLIP = 2.0  # chosen so clipping triggers on some (>= 2) but not all steps; asserted below
INIT = 0.5

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(REPO, "fixtures", "lstm_lm_tiny.safetensors")


class LstmLm(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H, num_layers=L)
        self.decoder = nn.Linear(H, V)

    def forward(self, inp, state):
        emb = self.encoder(inp)
        out, state = self.rnn(emb, state)
        return self.decoder(out), state


def zero_state():
    return (torch.zeros(L, B, H), torch.zeros(L, B, H))


def run_sgd(model, steps_input, steps_target, clip, lr):
    """Five truncated-BPTT SGD steps. Mutates model. Returns (losses, pre-clip norms)."""
    params = list(model.parameters())
    state = zero_state()
    losses, norms = [], []
    for k in range(steps_input.shape[0]):
        model.zero_grad(set_to_none=True)
        logits, state = model(steps_input[k], state)
        state = (state[0].detach(), state[1].detach())
        loss = F.cross_entropy(logits.view(-1, V), steps_target[k].reshape(-1))
        (loss * T).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=clip)
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        losses.append(loss.item())
        norms.append(norm.item())
    return torch.tensor(losses, dtype=torch.float32), torch.tensor(norms, dtype=torch.float32)


def generate():
    torch.manual_seed(SEED)
    model = LstmLm()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-INIT, INIT)
    inp = torch.randint(0, V, (T, B), dtype=torch.int64)
    tgt = torch.randint(0, V, (T, B), dtype=torch.int64)
    steps_input = torch.randint(0, V, (N_STEPS, T, B), dtype=torch.int64)
    steps_target = torch.randint(0, V, (N_STEPS, T, B), dtype=torch.int64)

    tensors = {}
    for name, p in model.named_parameters():
        tensors[name] = p.detach().clone()

    # Single forward/backward from zero state.
    logits, _ = model(inp, zero_state())
    loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
    model.zero_grad(set_to_none=True)
    (loss * T).backward()
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().clone()
    tensors["logits"] = logits.detach().clone()
    tensors["loss"] = loss.detach().clone().reshape(())
    tensors["input"] = inp
    tensors["target"] = tgt

    # Five SGD steps from the same initial weights.
    losses, norms = run_sgd(model, steps_input, steps_target, CLIP, LR)
    n_clipped = int((norms > CLIP).sum())
    print("pre-clip grad norms:", [f"{x:.6f}" for x in norms.tolist()])
    print("sgd losses:        ", [f"{x:.6f}" for x in losses.tolist()])
    print(f"CLIP={CLIP}: clipped on steps {[k for k in range(N_STEPS) if norms[k] > CLIP]}")
    assert n_clipped >= 2, "CLIP must trigger on at least 2 steps"
    for name, p in model.named_parameters():
        tensors["final." + name] = p.detach().clone()
    tensors["steps_input"] = steps_input
    tensors["steps_target"] = steps_target
    tensors["sgd_lr"] = torch.tensor([LR], dtype=torch.float32)
    tensors["sgd_clip"] = torch.tensor([CLIP], dtype=torch.float32)
    tensors["sgd_losses"] = losses
    tensors["sgd_grad_norms"] = norms

    for k, v in tensors.items():
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {
        "generator": "tools/reference/make_lstm_lm_fixture.py",
        "torch": torch.__version__,
        "seed": str(SEED),
        "sizes": f"V={V} E={E} H={H} T={T} B={B} layers={L} sgd_steps={N_STEPS}",
        "conventions": (
            "PyTorch word_language_model layout; nn.LSTM seq-first, gate order i,f,g,o, "
            "b_ih and b_hh both present; all params U(-0.5,0.5); zero initial (h,c); "
            "loss = mean CE over T*B tokens; gradients are of J = loss*T; "
            "SGD: carried detached (h,c) across steps (zero at step 0), "
            "clip_grad_norm_(all params, sgd_clip) on dJ/dp (scale clip/(norm+1e-6) if <1), "
            "p -= sgd_lr*grad; sgd_losses = mean CE before each update; "
            "sgd_grad_norms = pre-clip global L2 norms; final.* = params after 5 steps"
        ),
    }
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    save_file(tensors, OUT_PATH, metadata=metadata)
    canonicalize_header(OUT_PATH)
    print(f"wrote {OUT_PATH} ({os.path.getsize(OUT_PATH)} bytes, {len(tensors)} tensors)")


# ---------------------------------------------------------------------------
# Verification: reload the file and check self-consistency.
#   * independent plain-numpy float64 implementation: hand-written LSTM forward,
#     gradients by central finite differences, clipping and SGD re-implemented;
#     compared against logits, loss, grad.*, sgd_losses, sgd_grad_norms, final.*
#   * torch re-run of forward/backward and the 5 SGD steps from loaded weights
# ---------------------------------------------------------------------------

def np_forward(w, inp, h0=None, c0=None):
    """Plain-numpy LSTM LM forward. Returns (logits [T,B,V], h [L,B,H], c [L,B,H])."""
    def sig(x):
        return 1.0 / (1.0 + np.exp(-x))

    x = w["encoder.weight"][inp]  # [T,B,E]
    hs, cs = [], []
    for l in range(L):
        wih, whh = w[f"rnn.weight_ih_l{l}"], w[f"rnn.weight_hh_l{l}"]
        b = w[f"rnn.bias_ih_l{l}"] + w[f"rnn.bias_hh_l{l}"]
        h = np.zeros((B, H)) if h0 is None else h0[l]
        c = np.zeros((B, H)) if c0 is None else c0[l]
        outs = []
        for t in range(x.shape[0]):
            g = x[t] @ wih.T + h @ whh.T + b
            i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
            c = sig(f) * c + sig(i) * np.tanh(gg)
            h = sig(o) * np.tanh(c)
            outs.append(h)
        x = np.stack(outs)
        hs.append(h)
        cs.append(c)
    return x @ w["decoder.weight"].T + w["decoder.bias"], np.stack(hs), np.stack(cs)


def np_fd_grad(w, inp, tgt, h0, c0, eps=1e-6):
    """Central finite-difference gradient of J = T * meanCE, float64."""
    g = {}
    for n, p in w.items():
        gp = np.zeros_like(p)
        flat, gflat = p.reshape(-1), gp.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            jp = T * np_mean_ce(np_forward(w, inp, h0, c0)[0], tgt)
            flat[i] = old - eps
            jm = T * np_mean_ce(np_forward(w, inp, h0, c0)[0], tgt)
            flat[i] = old
            gflat[i] = (jp - jm) / (2 * eps)
        g[n] = gp
    return g


def np_sgd(w, steps_input, steps_target, clip, lr):
    """Independent float64 numpy re-run of the SGD steps (gradients by finite differences)."""
    w = {n: p.copy() for n, p in w.items()}
    h = np.zeros((L, B, H))
    c = np.zeros((L, B, H))
    losses, norms = [], []
    for k in range(steps_input.shape[0]):
        logits, h_new, c_new = np_forward(w, steps_input[k], h, c)
        losses.append(np_mean_ce(logits, steps_target[k]))
        g = np_fd_grad(w, steps_input[k], steps_target[k], h, c)
        norm = float(np.sqrt(sum(float((gp ** 2).sum()) for gp in g.values())))
        norms.append(norm)
        scale = min(1.0, clip / (norm + 1e-6))
        for n in w:
            w[n] -= lr * scale * g[n]
        h, c = h_new, c_new
    return w, np.array(losses), np.array(norms)


def np_mean_ce(logits, tgt):
    z = logits.reshape(-1, V)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(z.shape[0]), tgt.reshape(-1)]))


def verify():
    t = load_file(OUT_PATH)
    names = [n for n, _ in LstmLm().named_parameters()]
    ok = True

    def check(label, a, b, atol, rtol=0.0):
        nonlocal ok
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        good = a.shape == b.shape and np.allclose(a, b, atol=atol, rtol=rtol)
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {label:36s} max|diff|={err:.3e}")

    print("verify (independent numpy float64: hand-written forward + finite-difference grads + SGD):")
    w = {n: t[n].double().numpy() for n in names}
    lg = np_forward(w, t["input"].numpy())[0]
    check("logits vs numpy", t["logits"].numpy(), lg, 1e-5)
    check("loss vs numpy", t["loss"].numpy(), np_mean_ce(lg, t["target"].numpy()), 1e-5)
    zs = np.zeros((L, B, H))
    g = np_fd_grad(w, t["input"].numpy(), t["target"].numpy(), zs, zs)
    for n in names:
        check("grad." + n + " vs numpy FD", t["grad." + n].numpy(), g[n], 1e-5)
    wf, losses, norms = np_sgd(w, t["steps_input"].numpy(), t["steps_target"].numpy(),
                               float(t["sgd_clip"][0]), float(t["sgd_lr"][0]))
    check("sgd_losses vs numpy", t["sgd_losses"].numpy(), losses, 1e-5)
    check("sgd_grad_norms vs numpy", t["sgd_grad_norms"].numpy(), norms, 1e-5)
    for n in names:
        check("final." + n + " vs numpy", t["final." + n].numpy(), wf[n], 1e-5)

    print("verify (torch re-run from loaded weights):")
    torch.manual_seed(0)
    model = LstmLm()
    model.load_state_dict({n: t[n] for n in names})
    logits, _ = model(t["input"], zero_state())
    loss = F.cross_entropy(logits.view(-1, V), t["target"].view(-1))
    (loss * T).backward()
    check("logits", t["logits"].numpy(), logits.detach().numpy(), 0.0)
    check("loss", t["loss"].numpy(), loss.detach().numpy(), 0.0)
    for n, p in model.named_parameters():
        check("grad." + n, t["grad." + n].numpy(), p.grad.numpy(), 0.0)

    model.load_state_dict({n: t[n] for n in names})
    losses, norms = run_sgd(model, t["steps_input"], t["steps_target"],
                            float(t["sgd_clip"][0]), float(t["sgd_lr"][0]))
    check("sgd_losses (exact)", t["sgd_losses"].numpy(), losses.numpy(), 0.0)
    check("sgd_grad_norms (exact)", t["sgd_grad_norms"].numpy(), norms.numpy(), 0.0)
    for n, p in model.named_parameters():
        check("final." + n, t["final." + n].numpy(), p.detach().numpy(), 0.0)


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
