#!/usr/bin/env python3
"""Markdown tables of AN4 speech runs from their state.json files (symbiont train checkpoints).

Usage: python3 bench/summarize_an4.py runs/an4-seed1 runs/an4-seed2 [--every 5]
Prints, per epoch (every N-th and the last), each run's train loss and greedy test WER / CER
(corpus level) and the per-utterance mean WER, then the last epoch's mean and spread over runs.
"""
import argparse
import json
import statistics
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--every", type=int, default=5)
    a = ap.parse_args()
    hist = {r: json.loads((Path(r) / "state.json").read_text())["history"] for r in a.runs}
    names = [Path(r).name for r in a.runs]
    print("| epoch | " + " | ".join(f"{n}: loss / WER / CER / WER (utt. mean)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    last = max(len(h) for h in hist.values())
    for e in range(1, last + 1):
        if e % a.every and e != last and e != 1:
            continue
        cells = []
        for r in a.runs:
            h = [x for x in hist[r] if x["epoch"] == e]
            if not h or h[0]["test_wer"] is None:
                cells.append("–")
                continue
            x = h[0]
            cells.append(f"{x['train_loss']:.1f} / {x['test_wer']:.2f} / {x['test_cer']:.2f} / "
                         f"{x['test_wer_mean_utterance']:.2f}")
        print(f"| {e} | " + " | ".join(cells) + " |")
    finals = [hist[r][-1] for r in a.runs]
    for key in ("test_wer", "test_cer", "test_wer_mean_utterance"):
        v = [f[key] for f in finals]
        spread = f", min {min(v):.2f}, max {max(v):.2f}" if len(v) > 1 else ""
        print(f"\n{key} after epochs {[f['epoch'] for f in finals]}: mean {statistics.mean(v):.2f}{spread}")


if __name__ == "__main__":
    main()
