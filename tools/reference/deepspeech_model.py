#!/usr/bin/env python3
"""PyTorch reference for symbiont's whole DeepSpeech2 model (crates/speech/src/deepspeech*),
written as crates/speech/tests/fixtures/deepspeech_model.json for crates/speech/tests/deepspeech.rs.

The model is deepspeech.pytorch's (2018) in float64, small: Conv2d(1->2, 41x11, stride 2x2,
padding 0x10) + BatchNorm2d + Hardtanh(0, 20); Conv2d(2->2, 21x11, stride 2x1) + BatchNorm2d +
Hardtanh; two bidirectional LSTM layers of 5 units without biases, directions summed, run on
packed sequences, a SequenceWise BatchNorm1d before the second; SequenceWise(BatchNorm1d +
Linear(5 -> 29, no bias)); CTC (blank 0) summed over the batch and divided by the batch size.
One documented difference from deepspeech.pytorch: its MaskConv masks every conv layer's
output with the *final* output lengths; symbiont masks each layer with that layer's own lengths
(frames past an utterance's end), which this reference does too.

Stored: every parameter (by state_dict name), the input (2, 1, 161, T) with its lengths and
targets, the valid logits, the loss, every parameter's gradient, and the BatchNorm running
statistics after the training-mode forward.

With `--gate-hidden M` the recurrent layers are bidirectional H-LSTMs instead (gates are MLPs with
a hidden layer of M units, docs/method.md section 3; parameter names as symbiont's:
`weight_ih1_l0`, `weight_hh1_l0`, `bias1_l0`, `weight2_l0` [4, H, M], `bias2_l0`, and `_reverse`),
written in plain torch ops with packed-sequence semantics (each utterance's backward pass starts at
its own last frame; outputs past its end are zero), to deepspeech_hlstm_model.json.

Usage: .venv/bin/python tools/reference/deepspeech_model.py [--gate-hidden 3]   (needs torch)
"""
import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "speech", "tests",
                        "fixtures")
C, H, LABELS = 2, 5, 29


def conv_len(n, k, s, p):
    return (n + 2 * p - k) // s + 1


class BiHLSTM(nn.Module):
    """Bidirectional H-LSTM over (T, N, F) with per-utterance lengths; returns (T, N, 2H)."""

    def __init__(self, inp, hidden, m):
        super().__init__()
        self.h, self.m = hidden, m
        bound = 1.0 / hidden ** 0.5
        for suffix in ["", "_reverse"]:
            for name, shape in [("weight_ih1", (4 * m, inp)), ("weight_hh1", (4 * m, hidden)),
                                ("bias1", (4 * m,)), ("weight2", (4, hidden, m)),
                                ("bias2", (4 * hidden,))]:
                self.register_parameter(f"{name}_l0{suffix}",
                                        nn.Parameter((torch.rand(shape) * 2 - 1) * bound))

    def cell(self, suffix, x, h, c):
        p = lambda name: getattr(self, f"{name}_l0{suffix}")
        a = torch.relu(x @ p("weight_ih1").T + h @ p("weight_hh1").T + p("bias1"))
        a4 = a.view(a.shape[0], 4, self.m)
        pre = torch.einsum("bkm,khm->bkh", a4, p("weight2")).reshape(a.shape[0], 4 * self.h) + p("bias2")
        H = self.h
        i, f = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H:2 * H])
        g, o = torch.tanh(pre[:, 2 * H:3 * H]), torch.sigmoid(pre[:, 3 * H:])
        c = f * c + i * g
        return o * torch.tanh(c), c

    def forward(self, y, lengths):
        T, N, _ = y.shape
        out = torch.zeros(T, N, 2 * self.h)
        outs = [[None] * T for _ in range(N)]
        for n, L in enumerate(lengths):
            for d, (suffix, steps) in enumerate([("", range(L)), ("_reverse", range(L - 1, -1, -1))]):
                h = torch.zeros(1, self.h)
                c = torch.zeros(1, self.h)
                for t in steps:
                    h, c = self.cell(suffix, y[t, n:n + 1], h, c)
                    outs[n][t] = outs[n][t] or [None, None]
                    outs[n][t][d] = h[0]
        rows = []
        for t in range(T):
            cols = []
            for n in range(N):
                if outs[n][t] is None:
                    cols.append(torch.zeros(2 * self.h))
                else:
                    cols.append(torch.cat(outs[n][t]))
            rows.append(torch.stack(cols))
        return torch.stack(rows)


class Model(nn.Module):
    def __init__(self, gate_hidden=0):
        super().__init__()
        self.conv = nn.Module()
        self.conv.seq_module = nn.Sequential(
            nn.Conv2d(1, C, (41, 11), stride=(2, 2), padding=(0, 10)), nn.BatchNorm2d(C),
            nn.Hardtanh(0, 20),
            nn.Conv2d(C, C, (21, 11), stride=(2, 1)), nn.BatchNorm2d(C), nn.Hardtanh(0, 20))
        self.rnns = nn.ModuleList()
        for layer in range(2):
            m = nn.Module()
            if layer > 0:
                m.batch_norm = nn.Module()
                m.batch_norm.module = nn.BatchNorm1d(H)
            inp = C * 21 if layer == 0 else H
            if gate_hidden:
                m.rnn = BiHLSTM(inp, H, gate_hidden)
            else:
                m.rnn = nn.LSTM(inp, H, bidirectional=True, bias=False)
            self.rnns.append(m)
        self.fc = nn.Module()
        self.fc.__dict__["_modules"]["0"] = nn.Module()
        self.fc._modules["0"].module = nn.Sequential(nn.BatchNorm1d(H), nn.Linear(H, LABELS, bias=False))

    def forward(self, x, lengths):
        mods = self.conv.seq_module
        lens1 = [conv_len(l, 11, 2, 10) for l in lengths]
        lens2 = [conv_len(l, 11, 1, 0) for l in lens1]

        def mask(y, lens):
            m = torch.ones_like(y)
            for i, l in enumerate(lens):
                m[i, :, :, l:] = 0
            return y * m

        y = mask(mods[0](x), lens1)
        y = mask(mods[1](y), lens1)
        y = mods[2](y)
        y = mask(mods[3](y), lens2)
        y = mask(mods[4](y), lens2)
        y = mods[5](y)
        n, c, h, t = y.shape
        y = y.view(n, c * h, t).permute(2, 0, 1).contiguous()  # (T, N, C*H)
        for layer, m in enumerate(self.rnns):
            if layer > 0:
                tt, nn_, f = y.shape
                y = m.batch_norm.module(y.view(tt * nn_, f)).view(tt, nn_, f)
            if isinstance(m.rnn, BiHLSTM):
                out = m.rnn(y, lens2)
            else:
                packed = nn.utils.rnn.pack_padded_sequence(y, torch.tensor(lens2), enforce_sorted=False)
                out, _ = m.rnn(packed)
                out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=y.shape[0])
            y = out[:, :, :H] + out[:, :, H:]
        tt, nn_, f = y.shape
        logits = self.fc._modules["0"].module(y.reshape(tt * nn_, f)).view(tt, nn_, LABELS)
        return logits, lens2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gate-hidden", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(5)
    model = Model(args.gate_hidden)
    # Non-trivial BatchNorm affine parameters, so their gradients and uses are tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "batch_norm" in name or "seq_module.1" in name or "seq_module.4" in name or "fc.0.module.0" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
    lengths = [34, 27]
    x = torch.randn(2, 1, 161, max(lengths))
    for i, l in enumerate(lengths):
        x[i, :, :, l:] = 0
    targets = [[3, 4, 4, 9], [1, 2]]
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.train()
    logits, out_lens = model(x, lengths)
    logp = F.log_softmax(logits, dim=2)
    flat = torch.tensor([l for t in targets for l in t])
    loss = F.ctc_loss(logp, flat, torch.tensor(out_lens), torch.tensor([len(t) for t in targets]),
                      blank=0, reduction="sum") / len(lengths)
    loss.backward()
    valid = [logits[:l, i, :].detach().reshape(-1).tolist() for i, l in enumerate(out_lens)]
    buffers = {k: v.tolist() for k, v in model.state_dict().items() if "running" in k}
    out = {
        "config": {"hidden": H, "layers": 2, "conv_channels": C, "gate_hidden": args.gate_hidden},
        "lengths": lengths,
        "targets": targets,
        "features": x.reshape(-1).tolist(),
        "params": {k: v.reshape(-1).tolist() for k, v in params.items()},
        "out_lengths": out_lens,
        "logits": valid,
        "loss": loss.item(),
        "grads": {k: p.grad.reshape(-1).tolist() for k, p in model.named_parameters()},
        "running": buffers,
    }
    name = "deepspeech_hlstm_model.json" if args.gate_hidden else "deepspeech_model.json"
    OUT = os.path.join(FIXTURES, name)
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}: loss {loss.item():.6f}, output lengths {out_lens}")


if __name__ == "__main__":
    main()
