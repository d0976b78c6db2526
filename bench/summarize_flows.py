#!/usr/bin/env python3
"""One markdown row per `symbiont compress` run folder (its flow.json), with the baseline first:
widths chosen, parameters (non-zero, all and without embedding+softmax), perplexities, batch-1 and
deployment-batch latency, and the ratios against the baseline.

    python3 bench/summarize_flows.py runs/ablation/symbiotic runs/ablation/lstm ...
"""
import json
import sys
from pathlib import Path


def lat(m, batch):
    for l in m.get("latency") or []:
        if l["batch"] == batch:
            return l
    return None


def fmt_lat(l):
    return "—" if l is None else f"{l['median_ms']:.3f} ({l['p10_ms']:.3f}–{l['p90_ms']:.3f})"


def ppl(v):
    return "—" if v is None else f"{v:.2f}"


def row(name, m, base, sizing=None):
    p, bp = m["params"], base["params"]
    l1, b1 = lat(m, 1), lat(base, 1)
    ratio = "—" if not (l1 and b1) else f"{b1['median_ms'] / l1['median_ms']:.2f}x"
    widths = "" if sizing is None else f"{sizing['seed_widths']} → {m['hidden']}"
    deploy = [l for l in m.get("latency") or [] if l["batch"] != 1]
    return (f"| {name} | {m['arch']} {widths or m['hidden']} | {p['nonzero']:,} / {p['total']:,} | "
            f"{p['nonzero_core']:,} / {p['total_core']:,} | "
            f"{bp['nonzero'] / max(p['nonzero'], 1):.1f}x / {bp['nonzero_core'] / max(p['nonzero_core'], 1):.1f}x | "
            f"{ppl(m.get('valid_ppl'))} | {ppl(m.get('test_ppl'))} | {fmt_lat(l1)} | "
            f"{fmt_lat(deploy[0]) if deploy else '—'} | {ratio} |")


def main(dirs):
    print("| run | cell, widths (seed → final) | non-zero / all params | same without embedding+softmax "
          "| fewer non-zero (all / core) | valid ppl | test ppl | batch-1 ms (p10–p90) "
          "| deploy-batch ms | batch-1 latency lower |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    shown_base = False
    status = 0
    for d in dirs:
        f = Path(d) / "flow.json"
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            print(f"{f}: {e}", file=sys.stderr)
            status = 1
            continue
        base = r.get("baseline")
        if base is None:
            print(f"{f}: no baseline yet", file=sys.stderr)
            status = 1
            continue
        if not shown_base:
            print(row("baseline", base, base))
            shown_base = True
        fin = r.get("final")
        if fin is None:
            print(f"| {Path(d).name} | (status {r['status']}: no final model) |||||||||")
            continue
        print(row(Path(d).name, fin, base, r.get("sizing")))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
