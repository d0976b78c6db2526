#!/usr/bin/env python3
"""Check an exported ONNX model against symbiont's own inference.

Runs MODEL.onnx under ONNX Runtime on deterministic token ids (a batch of 2 sequences, so the
symbolic batch dimension is exercised) and compares the logits of every step with
`symbiont infer --model MODEL.safetensors --tokens ... --all-steps --json` (batch 1, once per
sequence). Passes when max |ORT - symbiont| <= TOL * max(1, max |logit|); prints the numbers;
exit 1 on a mismatch, 2 on bad input. When the `onnx` package is installed, the file
must also pass `onnx.checker.check_model(full_check=True)`.

    tools/check_onnx.py MODEL.safetensors MODEL.onnx [--symbiont target/release/symbiont]
        [--steps 12] [--tol 1e-4]
"""

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent


def symbiont_logits(binary, model, tokens):
    """Logits (T, V) of one sequence from `symbiont infer`, batch 1, zero state."""
    cmd = [str(binary), "infer", "--model", str(model),
           "--tokens", ",".join(str(t) for t in tokens), "--all-steps", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    logits = np.asarray(r["logits"], dtype=np.float64)
    if logits.shape != (len(tokens), r["vocab"]):
        sys.exit(f"error: symbiont infer gave logits of shape {logits.shape}")
    return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=pathlib.Path, help="model .safetensors (symbiont's input)")
    ap.add_argument("onnx", type=pathlib.Path, help="the exported .onnx")
    ap.add_argument("--symbiont", type=pathlib.Path, default=ROOT / "target/release/symbiont")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    for p in (a.model, a.onnx, a.symbiont):
        if not p.is_file():
            print(f"error: {p}: no such file", file=sys.stderr)
            return 2

    checker = "skipped (no onnx package)"
    try:
        import onnx  # optional: the ONNX checker with shape inference, when installed
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            onnx.checker.check_model(onnx.load(str(a.onnx)), full_check=True)
        except Exception as e:  # noqa: BLE001 (any checker failure is a failed check)
            print(f"error: onnx.checker: {e}", file=sys.stderr)
            return 1
        checker = f"ok (onnx {onnx.__version__})"

    sess = ort.InferenceSession(str(a.onnx), providers=["CPUExecutionProvider"])
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in inputs] != ["tokens"] or [o.name for o in outputs] != ["logits"]:
        print(f"error: expected input `tokens` and output `logits`, got "
              f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}", file=sys.stderr)
        return 1
    vocab = outputs[0].shape[-1]
    if not isinstance(vocab, int) or vocab <= 0:
        print(f"error: logits shape {outputs[0].shape} has no fixed vocab", file=sys.stderr)
        return 1
    # Two deterministic sequences spread over the vocabulary (first and last ids included).
    t = a.steps
    seqs = [[(7 * i + 3) % vocab for i in range(t)],
            [(vocab - 1 - 5 * i) % vocab for i in range(t)]]
    seqs[1][0] = vocab - 1
    seqs[0][0] = 0
    tokens = np.asarray(seqs, dtype=np.int64).T  # (T, B)
    got = sess.run(["logits"], {"tokens": tokens})[0]
    if got.shape != (t, len(seqs), vocab):
        print(f"error: ORT logits have shape {got.shape}, want {(t, len(seqs), vocab)}",
              file=sys.stderr)
        return 1

    worst, scale = 0.0, 1.0
    for b, seq in enumerate(seqs):
        want = symbiont_logits(a.symbiont, a.model, seq)
        diff = np.abs(got[:, b, :].astype(np.float64) - want)
        worst = max(worst, float(diff.max()))
        scale = max(scale, float(np.abs(want).max()))
    tol = a.tol * scale
    ok = worst <= tol
    print(json.dumps({"model": str(a.model), "onnx": str(a.onnx), "steps": t,
                      "batch": len(seqs), "vocab": vocab, "max_abs_diff": worst,
                      "logit_scale": scale, "tolerance": tol, "ok": ok,
                      "onnxruntime": ort.__version__, "onnx_checker": checker}))
    if not ok:
        print(f"MISMATCH: max |ORT - symbiont| = {worst:.3g} > {tol:.3g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
