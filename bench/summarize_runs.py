#!/usr/bin/env python3
"""Markdown table of finished training runs: perplexities from each run's metrics.jsonl (the
"final" record) and parameter counts from `symbiont inspect --json`.

Usage (from the repo root):
    python3 bench/summarize_runs.py runs/budget/dense runs/budget/hlstm ...
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def final_record(run):
    final = None
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "final":
                final = rec
    return final


def main():
    binary = os.path.join(REPO, "target/release/symbiont")
    print("| run | params (all) | non-zero (all) | non-zero w/o embedding+softmax | valid ppl | test ppl | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for run in sys.argv[1:]:
        rec = final_record(run)
        if rec is None:
            print(f"| {run} | (not finished) | | | | | |")
            continue
        info = json.loads(subprocess.run([binary, "inspect", run, "--json"], check=True,
                                         capture_output=True, text=True).stdout)
        print(f"| {os.path.basename(run.rstrip('/'))} | {info['params_total']:,} | {info['params_nonzero']:,} "
              f"| {info['params_nonzero_without_embeddings']:,} | {rec['valid_ppl']:.2f} | {rec['test_ppl']:.2f} "
              f"| {rec['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
