#!/usr/bin/env python3
"""Training throughput, symbiont vs PyTorch, side by side in one run (A B A B ...).

Each round runs PyTorch (bench/pytorch_train_throughput.py: nn.LSTM eager, same model, same
objective, same clipping, SGD) and then `symbiont train` on the same PTB config for a fixed
number of steps, alternating so that machine drift hits both alike. Writes raw rows as JSONL
and prints the median tokens/s of each engine and the per-round ratio (median, min, max), plus
each engine's GEMM rate (GEMM FLOPs per step x steps/s) as a share of this machine's best GEMM rate
at the training shapes (`symbiont peak`, measured before and after the rounds; the higher is used).

Both engines leave their first 3 steps out of the timing (symbiont: `session_tokens_per_s` of
`train --json`; PyTorch: `--warmup 3`); data loading is excluded for both.

Usage (from the repo root, after `cargo build --release` and
`python3 -m venv .venv && .venv/bin/pip install -r bench/requirements.txt`):
    .venv/bin/python bench/train_throughput.py --config small --rounds 5 --steps 60 --threads 2
    .venv/bin/python bench/train_throughput.py --config medium --rounds 3 --steps 20 --threads 2
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    # name: (config file, hidden, dropout, init)
    "small": ("configs/ptb-small.toml", 200, 0.0, 0.1),
    "medium": ("configs/ptb-medium.toml", 650, 0.5, 0.05),
    "large": ("configs/ptb-large.toml", 1500, 0.65, 0.04),
}


def run_pytorch(args, hidden, dropout, init):
    cmd = [sys.executable, os.path.join(REPO, "bench/pytorch_train_throughput.py"), "--hidden", str(hidden),
           "--dropout", str(dropout), "--init", str(init), "--steps", str(args.steps), "--warmup", "3",
           "--threads", str(args.threads), "--data-dir", args.data_dir, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gemm_flops_per_step(hidden, layers=2, vocab=10_000, tb=700):
    """GEMM FLOPs of one training step: forward (input projection + recurrent product per
    layer, decoder) and backward (the same products twice: activation and weight gradients)."""
    lstm = layers * 2 * tb * 4 * hidden * (hidden + hidden)
    decoder = 2 * tb * hidden * vocab
    return 3 * (lstm + decoder)


def run_peak(args, hidden):
    cmd = [args.symbiont, "--threads", str(args.threads), "peak", "--hidden", str(hidden), "--json"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def run_symbiont(args, config):
    with tempfile.TemporaryDirectory() as d:
        cmd = [args.symbiont, "--threads", str(args.threads), "train", "--config", config, "--data-dir",
               args.data_dir, "--out", d, "--max-steps", str(args.steps), "--json", "--no-progress"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=CONFIGS, default="small")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=os.path.join(REPO, "../shared/data/ptb"))
    p.add_argument("--symbiont", default=os.path.join(REPO, "target/release/symbiont"))
    p.add_argument("--raw", help="JSONL file for raw rows (default: bench/results/train-<config>-<time>.jsonl)")
    args = p.parse_args()
    config, hidden, dropout, init = CONFIGS[args.config]
    os.makedirs(os.path.join(REPO, "bench/results"), exist_ok=True)
    raw = args.raw or os.path.join(REPO, f"bench/results/train-{args.config}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    import torch  # only for its version
    machine = {"kind": "machine", "cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
               "torch": torch.__version__, "python": platform.python_version(), "config": args.config,
               "steps": args.steps, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "isa_env": {k: os.environ.get(k) for k in ("SYMBIONT_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")},
               "symbiont": args.symbiont}
    rows = []
    peaks = []
    with open(raw, "w") as f:
        f.write(json.dumps(machine) + "\n")
        peak = run_peak(args, hidden)
        peaks.append(peak["gemm_peak_gflops"])
        f.write(json.dumps({"kind": "peak", **peak}) + "\n")
        for r in range(args.rounds):
            pt = run_pytorch(args, hidden, dropout, init)
            sy = run_symbiont(args, config)
            sy_tps = sy["session_tokens_per_s"]
            row = {"kind": "round", "round": r, "pytorch_tokens_per_s": pt["tokens_per_s"],
                   "symbiont_tokens_per_s": sy_tps, "symbiont_tokens_per_s_with_warmup": sy["tokens_per_s"],
                   "ratio": sy_tps / pt["tokens_per_s"], "symbiont_isa": sy.get("isa"),
                   "symbiont_gemm_isa": sy.get("gemm_isa")}
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            print(f"round {r}: pytorch {pt['tokens_per_s']:.0f} tok/s, symbiont {sy_tps:.0f} tok/s, "
                  f"ratio {row['ratio']:.2f}", flush=True)
        peak = run_peak(args, hidden)
        peaks.append(peak["gemm_peak_gflops"])
        f.write(json.dumps({"kind": "peak", **peak}) + "\n")
    ratios = [r["ratio"] for r in rows]
    flops = gemm_flops_per_step(hidden)
    pt_med = statistics.median(r["pytorch_tokens_per_s"] for r in rows)
    sy_med = statistics.median(r["symbiont_tokens_per_s"] for r in rows)
    print(json.dumps({"config": args.config, "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
                      "symbiont_isa": rows[-1]["symbiont_isa"], "symbiont_gemm_isa": rows[-1]["symbiont_gemm_isa"],
                      "isa_env": machine["isa_env"],
                      "pytorch_tokens_per_s_median": pt_med, "symbiont_tokens_per_s_median": sy_med,
                      "pytorch_steps_per_s_median": pt_med / 700, "symbiont_steps_per_s_median": sy_med / 700,
                      "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                      "ratio_max": max(ratios), "gemm_gflop_per_step": flops / 1e9,
                      "gemm_peak_gflops": max(peaks),
                      "symbiont_share_of_gemm_peak": sy_med / 700 * flops / 1e9 / max(peaks),
                      "pytorch_share_of_gemm_peak": pt_med / 700 * flops / 1e9 / max(peaks),
                      "raw": os.path.relpath(raw, REPO)}))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
