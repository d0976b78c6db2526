#!/usr/bin/env python3
"""Writes large synthetic latency tables for timing `symbiont frontier` and `plot` at scale
(docs/benchmarks.md, "Frontier and plot at 200 000 points").

Usage: python3 bench/big_table.py SEED_TABLE.json OUT_PREFIX [N ...]
SEED_TABLE: any table written by `symbiont profile` (its first point is the template), e.g.
  symbiont profile --engine fake:steps --hidden 16:64:16 --budget 5 --out small.json
Writes OUT_PREFIX<N>.json with N hidden sizes 16, 17, ... on a wavy curve with noise and
standard errors (seeded), default N = 10000 100000 200000.
"""
import json
import math
import random
import sys

seed_path, prefix = sys.argv[1], sys.argv[2]
sizes = [int(n) for n in sys.argv[3:]] or [10000, 100000, 200000]
table = json.load(open(seed_path))
template = table["targets"][0]["points"][0]
random.seed(3)
for n in sizes:
    points = []
    for i in range(n):
        h = 16 + i
        m = 0.5 + 0.001 * h * (1 + 0.3 * math.sin(h / 50)) + random.uniform(0, 0.02)
        se = random.uniform(0, 0.005)
        p = dict(template)
        p.update(hidden=h, input=h, median_ms=m, p10_ms=m * 0.98, p90_ms=m * 1.02,
                 ci_low_ms=m - 2 * se, ci_high_ms=m + 2 * se, noise=se / m)
        points.append(p)
    table["targets"][0]["points"] = points
    with open(f"{prefix}{n}.json", "w") as f:
        json.dump(table, f)
    print(f"wrote {prefix}{n}.json ({n} points)")
