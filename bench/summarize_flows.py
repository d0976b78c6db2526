#!/usr/bin/env python3
"""One markdown row per `symbiont compress` run folder (its flow.json), with the baseline first:
widths chosen, parameters (non-zero, all and without embedding+softmax), perplexities, batch-1 and
deployment-batch latency, and the ratios against the baseline.

    python3 bench/summarize_flows.py [--stages] runs/ablation/symbiotic runs/ablation/lstm ...

--stages adds, per run, its stages: kept or not, density, widths, parameters, perplexities,
batch-1 latency and the stage's note.
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


def stages(dirs):
    for d in dirs:
        r = json.loads((Path(d) / "flow.json").read_text())
        limit = r.get("valid_ppl_limit")
        print(f"\n{Path(d).name} (bar: valid ppl ≤ {limit:.2f})\n" if limit else f"\n{Path(d).name}\n")
        print("| stage | kept | density | hidden | non-zero (all / w/o emb+softmax) | valid ppl | test ppl (batch) | batch-1 ms | steps | note |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
        for st in r["stages"]:
            m = st["model"]
            p = m["params"]
            l1 = lat(m, 1)
            l1s = "—" if l1 is None else f"{l1['median_ms']:.3f}"
            tb = m.get("test_batch")
            print(f"| {st['name']} | {'yes' if st['accepted'] else 'no'} | {st['density']:.3f} | {m['hidden']} | "
                  f"{p['nonzero']:,} / {p['nonzero_core']:,} | {ppl(m.get('valid_ppl'))} | "
                  f"{ppl(m.get('test_ppl'))} ({tb}) | {l1s} | "
                  f"{st['steps']} | {st['note']} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--stages":
        stages(args[1:])
        sys.exit(0)
    sys.exit(main(args))
