#!/usr/bin/env python3
"""Summarise the latency tables of bench/profile_sweeps.sh for docs/benchmarks.md.

Run from the repository root after the sweeps:
    .venv/bin/python bench/profile_report.py            # markdown on stdout, plots in docs/img/
It calls `symbiont frontier --json` per table (the analysis lives in Rust; this only formats),
`symbiont frontier A --compare B` for the two dense sweeps, and `symbiont plot` for the figures.
"""
import json
import os
import subprocess
import sys

BIN = "target/release/symbiont"
DIR = "bench/results/profile"
TABLES = ["dense-a", "dense-b", "dense-1t", "pytorch-2t", "pytorch-1t", "ort-2t", "ort-1t"]


def frontier(name):
    out = subprocess.run([BIN, "frontier", f"{DIR}/{name}.json", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    present = [t for t in TABLES if os.path.exists(f"{DIR}/{t}.json")]
    print("| table | engine | threads | sizes | frontier sizes | plateaus (>1 size) | hysteresis strength | where |")
    print("|---|---|---|---|---|---|---|---|")
    for t in present:
        r = frontier(t)
        c = r["curves"][0]
        h = c.get("hysteresis") or {}
        where = f"{h.get('smaller')} → {h.get('larger')}: {h.get('smaller_ms', 0):.3f} vs {h.get('larger_ms', 0):.3f} ms"
        multi = sum(1 for p in c["plateaus"] if p["sizes"] > 1)
        sig = "" if h.get("significant") else " (within noise)"
        print(f"| {t} | {c['engine']} | {c['fixed'].get('threads')} | {c['sizes']} | {len(c['frontier'])} | "
              f"{len(c['plateaus'])} ({multi}) | {h.get('strength', 0):.3f}{sig} | {where} |")
    if "dense-a" in present and "dense-b" in present:
        cmp = subprocess.run([BIN, "frontier", f"{DIR}/dense-a.json", "--compare", f"{DIR}/dense-b.json"],
                             check=True, capture_output=True, text=True).stdout
        print()
        print("Two consecutive dense sweeps: " + [l for l in cmp.splitlines() if "compared with" in l][0].strip())
    plots = {
        "profile-engines-2t": ["dense-a", "pytorch-2t", "ort-2t"],
        "profile-engines-1t": ["dense-1t", "pytorch-1t", "ort-1t"],
        "profile-dense-repeat": ["dense-a", "dense-b"],
    }
    for name, ts in plots.items():
        files = [f"{DIR}/{t}.json" for t in ts if t in present]
        if files:
            subprocess.run([BIN, "plot", *files, "--out", f"docs/img/{name}.svg"], check=True,
                           capture_output=True)
            print(f"\n![{name}](img/{name}.svg)")
    if os.path.exists(f"{DIR}/sparse.json"):
        subprocess.run([BIN, "plot", f"{DIR}/sparse.json", "--out", "docs/img/profile-sparse.svg"],
                       check=True, capture_output=True)
        print("\n![profile-sparse](img/profile-sparse.svg)")
        d = json.load(open(f"{DIR}/sparse.json"))
        pts = d["targets"][0]["points"]
        by = {}
        for p in pts:
            by.setdefault(p["hidden"], {})[p["density"]] = p["median_ms"]
        dens = sorted({p["density"] for p in pts}, reverse=True)
        print("\n| hidden | " + " | ".join(f"d={x:g} ms" for x in dens) + " | speed-up at 10% |")
        print("|---" * (len(dens) + 2) + "|")
        for h in sorted(by):
            row = by[h]
            sp = row.get(1.0, float("nan")) / row.get(0.1, float("nan")) if 0.1 in row and 1.0 in row else float("nan")
            print(f"| {h} | " + " | ".join(f"{row.get(x, float('nan')):.3f}" for x in dens) + f" | {sp:.1f}x |")


if __name__ == "__main__":
    sys.exit(main())
