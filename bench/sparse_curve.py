#!/usr/bin/env python3
"""Sparse vs dense latency in one engine, over densities and mask shapes, interleaved.

Each round runs `symbiont bench` once per configuration, in a rotated order, so machine drift
hits every configuration alike: dense (density 1), then each density with a random mask
(unstructured, as magnitude pruning leaves it) and with whole 4x4 blocks (as `[compress]
block = "4x4"` leaves it), `--format auto` (per matrix, the fastest measured format). Prints the
median over rounds of each configuration's median latency and its speed-up over dense, and writes
the raw rows as JSONL.

Usage (from the repo root, after `cargo build --release`):
    python3 bench/sparse_curve.py --hidden 1500 --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(args, density, mask):
    cmd = [args.symbiont, "bench", "--layers", str(args.layers), "--hidden", str(args.hidden),
           "--batch", str(args.batch), "--seq", str(args.seq), "--threads", str(args.threads),
           "--density", str(density), "--json"]
    if density < 1.0:
        cmd += ["--mask", mask, "--format", "auto"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=1500)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=35)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--densities", default="0.5,0.25,0.1,0.05,0.02")
    p.add_argument("--masks", default="random,blocks:4x4")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--symbiont", default=os.path.join(REPO, "target/release/symbiont"))
    p.add_argument("--raw", help="JSONL file for raw rows (default: bench/results/sparse_curve-<time>.jsonl)")
    args = p.parse_args()
    configs = [(1.0, "dense")] + [(float(d), m) for d in args.densities.split(",") for m in args.masks.split(",")]
    raw = args.raw or os.path.join(REPO, "bench/results", time.strftime("sparse_curve-%Y%m%dT%H%M%S.jsonl"))
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    medians = {c: [] for c in configs}
    with open(raw, "w") as f:
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for density, mask in order:
                v = bench(args, density, mask)
                row = {"round": r, "density": density, "mask": mask, "hidden": args.hidden,
                       "layers": args.layers, "batch": args.batch, "seq": args.seq, "threads": args.threads,
                       "median_ms": v["median_ms"], "p10_ms": v["p10_ms"], "p90_ms": v["p90_ms"],
                       "formats": [m["format"] for m in v.get("matrices", [])]}
                f.write(json.dumps(row) + "\n")
                f.flush()
                medians[(density, mask)].append(v["median_ms"])
    dense = statistics.median(medians[(1.0, "dense")])
    print(f"H={args.hidden} layers={args.layers} batch={args.batch} seq={args.seq} threads={args.threads}; raw rows: {raw}")
    print("| density | mask | median ms (min–max over rounds) | dense / this | formats (last round) |")
    print("|---|---|---:|---:|---|")
    last = {}
    with open(raw) as f:
        for line in f:
            row = json.loads(line)
            last[(row["density"], row["mask"])] = row["formats"]
    for c in configs:
        ms = medians[c]
        med = statistics.median(ms)
        print(f"| {c[0]:g} | {c[1]} | {med:.2f} ({min(ms):.2f}–{max(ms):.2f}) | {dense / med:.2f}x | "
              f"{', '.join(last[c])} |")


if __name__ == "__main__":
    main()
