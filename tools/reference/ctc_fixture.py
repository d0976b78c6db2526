#!/usr/bin/env python3
"""PyTorch reference for the CTC loss, written as crates/speech/tests/fixtures/ctc.json for
crates/speech/tests/ctc_fixture.rs (checked against speech::ctc::ctc_loss).

Each case is one utterance: logits (T, C) rounded to float32 (what the Rust function takes), the
loss torch.nn.functional.ctc_loss(log_softmax(logits), reduction='sum', blank=0,
zero_infinity=False) computed in float64, and its gradient with respect to the logits. Cases:
repeated labels (which need a blank between them), an empty target, a target that cannot fit in T
frames (loss +inf; torch's gradient there is stored as null), a single frame, and the 29 DeepSpeech2
labels over a longer utterance.

Usage: .venv/bin/python tools/reference/ctc_fixture.py   (needs torch and numpy)
"""
import json
import math
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "speech", "tests", "fixtures",
                   "ctc.json")


def logits(t, c, seed):
    i = np.arange(t * c, dtype=np.float64)
    x = 3.0 * np.sin(0.913 * i + seed) * np.cos(0.031 * i + 0.2 * seed)
    return x.astype(np.float32).reshape(t, c)


def case(name, t, c, target, seed):
    z = torch.tensor(logits(t, c, seed), dtype=torch.float64, requires_grad=True)
    lp = torch.log_softmax(z, dim=1).unsqueeze(1)  # (T, N=1, C)
    loss = torch.nn.functional.ctc_loss(
        lp, torch.tensor(target, dtype=torch.long).reshape(1, -1), torch.tensor([t]),
        torch.tensor([len(target)]), blank=0, reduction="sum", zero_infinity=False)
    loss.backward()
    value = loss.item()
    finite = math.isfinite(value)
    return {
        "name": name, "t": t, "c": c, "target": target,
        "logits": [float(v) for v in z.detach().reshape(-1).numpy()],
        "loss": value if finite else "inf",
        "grad": [float(v) for v in z.grad.reshape(-1).numpy()] if finite else None,
    }


def main():
    cases = [
        case("repeated labels", 12, 5, [1, 2, 2, 3], 1.0),
        case("empty target", 8, 5, [], 2.0),
        case("impossible: 1,1,1 needs 5 frames", 4, 5, [1, 1, 1], 3.0),
        case("just fits: 1,1 in 3 frames", 3, 4, [1, 1], 4.0),
        case("single frame", 1, 4, [2], 5.0),
        case("HELLO over 29 labels", 30, 29, [9, 6, 13, 13, 16], 6.0),
    ]
    with open(OUT, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
