#!/usr/bin/env python3
"""LSTM inference latency, symbiont vs PyTorch vs ONNX Runtime, side by side in one run.

For every configuration (hidden H, batch B, scope) it writes random seeded weights with
bench/make_lstm_weights.py's generator (input = embedding = H, 2 layers by default), then times, in
interleaved rounds (round r: every engine once per configuration, the engine order rotated by r so
machine drift and cache state hit all alike):
  pytorch      nn.LSTM eager (+ nn.Embedding / nn.Linear for the LM) under torch.inference_mode,
               torch.set_num_threads(threads);
  onnxruntime  the ONNX `LSTM` operator (graph built by bench/peer_common.py:onnx_model),
               intra_op_num_threads=threads, inter_op 1, sequential execution;
  symbiont     `symbiont bench --model FILE --batch B --seq T --threads N --json [extra args]`,
               which does its own warm-up and repetitions and reports median_ms, p10_ms, p90_ms.
Scopes: `lstm` = the LSTM layers only (input x ~ N(0, 1) of shape (T, B, H)); `lm` = the whole
word language model (embedding V x H, the LSTM layers, decoder H -> V, logits of every step).
Each PyTorch / ORT block: warm-up, then repetitions each timed with time.perf_counter around one
full-sequence forward from a zero state (adaptive count, see --reps). Before any timing, ORT's
output is checked against PyTorch's on the same input (max |diff| <= --tol * max(1, max |out|)).

Reported per configuration and engine: the median over rounds of each round's median, p10 and
p90 (symbiont reports only these statistics, so all engines are aggregated the same way), and the
median over rounds of the per-round ratios symbiont / ORT and symbiont / PyTorch. Raw rows (one
per round, configuration and engine, PyTorch / ORT with every sample) go to
bench/results/infer_peers-<date>.jsonl after a provenance row (CPU, threads, versions, commit).

Multi-thread latency on a small machine is fragile: another process taking a core can stall a
2-thread PyTorch forward by hundreds of ms (rows carry the 1-minute load average; p90 shows it).
Run on a quiet machine.

When `symbiont bench` does not accept --model yet (it is being built), the symbiont column is
skipped with a note; everything else runs.

--check instead compares `symbiont infer --model FILE --tokens "..." --all-steps --json` with
PyTorch on the same LM weights and tokens (batch 1, --seq tokens, per --hidden) and reports the
error (max |diff|, max |diff| / max |PyTorch logit|, rms ratio); exits 1 when max_rel_err > --check-tol.

Usage (from the repo root, after `cargo build --release` and
`.venv/bin/pip install -r bench/requirements.txt`):
    .venv/bin/python bench/infer_peers.py --threads 2 --rounds 3
    .venv/bin/python bench/infer_peers.py --hidden 650 --batch 1 --scope lm --rounds 5 \\
        --symbiont-extra-args "--dtype bf16"
    .venv/bin/python bench/infer_peers.py --check --hidden 200,650,1500
    .venv/bin/python bench/infer_peers.py --hidden 64 --batch 1 --scope lstm,lm --vocab 1000 \\
        --rounds 1 --reps 2 --raw /tmp/peers-smoke.jsonl          # a quick smoke test
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import make_lstm_weights
import peer_common
from peer_common import REPO

SCOPE_LABEL = {"lstm": "LSTM layers", "lm": "whole LM"}
ENGINE_LABEL = {"pytorch": "PyTorch", "onnxruntime": "ORT", "symbiont": "symbiont"}


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x.strip()]


def weights_file(args, directory, hidden, scope):
    """Write (or reuse, when --weights-dir already holds it) the weights of one (H, scope)."""
    name = (f"{scope}-l{args.layers}-h{hidden}" + (f"-v{args.vocab}" if scope == "lm" else "")
            + (f"-d{args.density:g}" if args.density < 1 else "") + f"-s{args.seed}.safetensors")
    path = os.path.join(directory, name)
    state = make_lstm_weights.make_state(scope, args.layers, hidden, hidden, args.vocab, density=args.density,
                                         seed=args.seed)
    if not os.path.exists(path):
        make_lstm_weights.save(state, path, {"generator": "bench/infer_peers.py", "layout": scope,
                                             "layers": args.layers, "hidden": hidden, "vocab": args.vocab,
                                             "density": args.density, "seed": args.seed})
    return path, state


def symbiont_status(args):
    """(available, note): whether `symbiont bench` takes --model (it is being built)."""
    if not os.path.exists(args.symbiont):
        return False, f"{args.symbiont} not found (cargo build --release)"
    r = subprocess.run([args.symbiont, "bench", "--help"], capture_output=True, text=True)
    if r.returncode != 0 or "--model" not in r.stdout:
        return False, "`symbiont bench` does not take --model yet; symbiont column skipped"
    return True, None


def symbiont_version(args):
    try:
        return subprocess.run([args.symbiont, "--version"], capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


def run_symbiont_bench(args, path, batch):
    cmd = [args.symbiont, "bench", "--model", path, "--batch", str(batch), "--seq", str(args.seq), "--threads",
           str(args.threads), "--json", *shlex.split(args.symbiont_extra_args)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    lines = r.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{shlex.join(cmd)} printed nothing on stdout")
    out = json.loads(lines[-1])
    missing = [k for k in ("median_ms", "p10_ms", "p90_ms") if k not in out]
    if missing:
        raise RuntimeError(f"symbiont bench JSON lacks {missing}: {out}")
    return {"median_ms": out["median_ms"], "p10_ms": out["p10_ms"], "p90_ms": out["p90_ms"],
            "symbiont": out, "command": shlex.join(cmd), "process_wall_s": wall}


def verify(engines, batch, seq, rng_seed, tol):
    """ORT against PyTorch on one input: the error row, with "ok" and the "limit" it was held to."""
    outs = {}
    for name, engine in engines.items():
        engine.prepare(batch, seq, np.random.default_rng(rng_seed))
        engine.forward()
        outs[name] = engine.output()
    err = peer_common.rel_err(outs["onnxruntime"], outs["pytorch"])
    limit = tol * max(1.0, float(np.abs(outs["pytorch"]).max()))
    err["ok"] = err["max_abs_err"] <= limit
    err["limit"] = limit
    return err


def shown(path):
    """A path relative to the repo when inside it, else absolute."""
    rel = os.path.relpath(path, REPO)
    return path if rel.startswith("..") else rel


def fmt(s):
    if s is None:
        return "n/a"
    return f"{s['median_ms']:.3f} ({s['p10_ms']:.3f}–{s['p90_ms']:.3f})"


def bench(args):
    peers = [e for e in args.engines if e != "symbiont"]
    sym_ok, sym_note = (symbiont_status(args) if "symbiont" in args.engines else (False, "not requested"))
    if "symbiont" in args.engines and not sym_ok:
        print(f"note: {sym_note}", file=sys.stderr)
    engines_run = peers + (["symbiont"] if sym_ok else [])
    if not engines_run:
        sys.exit("error: no engine to run")
    configs = [(h, b, s) for h in args.hidden for s in args.scope for b in args.batch]
    os.makedirs(os.path.dirname(args.raw), exist_ok=True)
    tmp = None if args.weights_dir else tempfile.TemporaryDirectory(prefix="infer_peers-")
    wdir = args.weights_dir or tmp.name
    os.makedirs(wdir, exist_ok=True)
    rows = {}  # (h, b, scope, engine) -> per-round summaries
    with open(args.raw, "w") as f:
        def emit(row):
            f.write(json.dumps(row) + "\n")
            f.flush()

        emit({"kind": "machine", **peer_common.provenance(args.threads), "symbiont_version": symbiont_version(args),
              "symbiont_available": sym_ok, "symbiont_note": sym_note, "args": vars(args)})
        # Build every engine once per (H, scope); the batch only changes the input.
        files, built = {}, {}
        for h in args.hidden:
            for scope in args.scope:
                path, state = weights_file(args, wdir, h, scope)
                files[h, scope] = path
                built[h, scope] = {e: peer_common.ENGINES[e](state, args.threads) for e in peers}
                del state
        if "pytorch" in peers and "onnxruntime" in peers:
            for h, b, scope in configs:
                err = verify(built[h, scope], b, args.seq, args.seed + 1, args.tol)
                emit({"kind": "verify", "hidden": h, "batch": b, "scope": scope, "seq": args.seq, **err})
                print(f"verify H={h} B={b} {scope}: ORT vs PyTorch max |diff| {err['max_abs_err']:.2e} "
                      f"(limit {err['limit']:.1e})", flush=True)
                if not err["ok"]:
                    sys.exit(f"error: ORT output differs from PyTorch for H={h} B={b} {scope}: {err}")
        for r in range(args.rounds):
            order = engines_run[r % len(engines_run):] + engines_run[:r % len(engines_run)]
            for h, b, scope in configs:
                for engine in order:
                    base = {"kind": "round", "round": r, "engine": engine, "hidden": h, "input": h, "batch": b,
                            "seq": args.seq, "scope": scope, "layers": args.layers, "density": args.density,
                            "vocab": args.vocab if scope == "lm" else None, "threads": args.threads,
                            "order": order.index(engine),
                            # Other load on the machine shows here (2-thread runs stall badly when
                            # another process takes a core): a way to spot a contaminated block.
                            "loadavg_1m": os.getloadavg()[0]}
                    if engine == "symbiont":
                        try:
                            res = run_symbiont_bench(args, files[h, scope], b)
                        except (RuntimeError, ValueError) as e:
                            print(f"symbiont failed for H={h} B={b} {scope}: {e}", file=sys.stderr)
                            emit({**base, "error": str(e)})
                            continue
                        stats = {k: res[k] for k in ("median_ms", "p10_ms", "p90_ms")}
                        emit({**base, **res})
                    else:
                        e = built[h, scope][engine]
                        e.prepare(b, args.seq, np.random.default_rng(args.seed + 1))
                        samples, warm = peer_common.time_calls(e.forward, reps=args.reps,
                                                               warmup_calls=args.warmup, target_s=args.target_s)
                        stats = peer_common.summary(samples)
                        emit({**base, **stats, "dtype": "f32", "warmup_calls": warm, "samples_ms": samples})
                    rows.setdefault((h, b, scope, engine), []).append(stats)
                    print(f"round {r} H={h} B={b} {scope:4} {engine:11} {fmt(stats)} ms", flush=True)
                    # Let the previous engine's worker threads stop spinning before the next starts,
                    # so they do not compete for the same few cores (ORT's spin for up to ~0.1 s
                    # after a run on the dev machine).
                    time.sleep(args.pause_s)
        table = summarize(args, configs, engines_run, rows, emit)
    if tmp:
        tmp.cleanup()
    print()
    print(f"threads {args.threads}, seq {args.seq}, {args.layers} layers, rounds {args.rounds}; "
          f"median over rounds of per-round median (p10–p90), ms")
    if sym_note and "symbiont" in args.engines:
        print(f"note: {sym_note}")
    print(table)
    print(f"\nraw rows: {shown(args.raw)}")


def summarize(args, configs, engines_run, rows, emit):
    def agg(key):
        per = rows.get(key)
        if not per:
            return None
        return {k: statistics.median(p[k] for p in per) for k in ("median_ms", "p10_ms", "p90_ms")}

    def ratio(h, b, scope, num, den):
        a, c = rows.get((h, b, scope, num)), rows.get((h, b, scope, den))
        if not a or not c:
            return None
        # Per round (rows of the same round sit at the same index when no run failed).
        if len(a) == len(c):
            return statistics.median(x["median_ms"] / y["median_ms"] for x, y in zip(a, c))
        return agg((h, b, scope, num))["median_ms"] / agg((h, b, scope, den))["median_ms"]

    cols = [e for e in ("pytorch", "onnxruntime", "symbiont") if e in args.engines]
    head = ["H", "batch", "scope"] + [f"{ENGINE_LABEL[e]} ms" for e in cols] + ["symbiont/ORT", "symbiont/PyTorch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for h, b, scope in configs:
        s = {e: agg((h, b, scope, e)) for e in cols}
        so, sp = ratio(h, b, scope, "symbiont", "onnxruntime"), ratio(h, b, scope, "symbiont", "pytorch")
        emit({"kind": "summary", "hidden": h, "batch": b, "scope": scope, "seq": args.seq, "layers": args.layers,
              **{e: s[e] for e in cols}, "symbiont_over_ort": so, "symbiont_over_pytorch": sp})
        cells = [str(h), str(b), SCOPE_LABEL[scope]] + [fmt(s[e]) for e in cols] + [
            "n/a" if so is None else f"{so:.2f}", "n/a" if sp is None else f"{sp:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check(args):
    """symbiont infer vs PyTorch on the LM layout, batch 1."""
    if not os.path.exists(args.symbiont):
        sys.exit(f"error: {args.symbiont} not found (cargo build --release)")
    os.makedirs(os.path.dirname(args.raw), exist_ok=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="infer_peers-check-") as tmp, open(args.raw, "w") as f:
        f.write(json.dumps({"kind": "machine", **peer_common.provenance(args.threads), "mode": "check",
                            "symbiont_version": symbiont_version(args), "args": vars(args)}) + "\n")
        lines = ["| H | tokens | max abs err | max rel err | rms rel err | ok |", "|---|---|---|---|---|---|"]
        for h in args.hidden:
            path, state = weights_file(args, args.weights_dir or tmp, h, "lm")
            torch_lm = peer_common.TorchLSTM(state, args.threads)
            tokens = torch_lm.prepare(1, args.seq, np.random.default_rng(args.seed + 1))
            torch_lm.forward()
            want = torch_lm.output()[:, 0, :]  # (T, V)
            cmd = [args.symbiont, "infer", "--model", path, "--tokens", " ".join(str(t) for t in tokens[:, 0]),
                   "--all-steps", "--json", "--threads", str(args.threads), *shlex.split(args.check_extra_args)]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if r.returncode != 0:
                sys.exit(f"error: {shlex.join(cmd[:4])} ... exited {r.returncode}: {r.stderr.strip()[-2000:]}")
            got = np.asarray(json.loads(r.stdout.strip().splitlines()[-1])["logits"], dtype=np.float64)
            err = peer_common.rel_err(got, want)
            err["ok"] = err["max_rel_err"] <= args.check_tol
            failed |= not err["ok"]
            f.write(json.dumps({"kind": "check", "hidden": h, "layers": args.layers, "vocab": args.vocab,
                                "seq": args.seq, "density": args.density, "extra_args": args.check_extra_args,
                                **err}) + "\n")
            lines.append(f"| {h} | {args.seq} | {err['max_abs_err']:.2e} | {err['max_rel_err']:.2e} | "
                         f"{err['rms_rel_err']:.2e} | {'yes' if err['ok'] else 'NO'} |")
            print(lines[-1], flush=True)
    print(f"\nsymbiont infer vs PyTorch (f32), {args.layers} layers, vocab {args.vocab}; "
          f"rel = relative to max |PyTorch logit|, tolerance {args.check_tol:g}")
    print("\n".join(lines))
    print(f"\nraw rows: {shown(args.raw)}")
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=csv(int), default=[200, 650, 1500], help="comma-separated (input = hidden)")
    p.add_argument("--batch", type=csv(int), default=[1, 16], help="comma-separated")
    p.add_argument("--scope", type=csv(str), default=["lstm", "lm"], help="lstm (layers only), lm (whole LM)")
    p.add_argument("--seq", type=int, default=35)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--density", type=float, default=1.0,
                   help="share of non-zeros kept in each LSTM weight matrix (random mask, for sparse engines)")
    p.add_argument("--engines", type=csv(str), default=["pytorch", "onnxruntime", "symbiont"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, help="timed calls per block (default: adaptive, about --target-s seconds, "
                                            "5 to 20000)")
    p.add_argument("--target-s", type=float, default=0.5, help="timing per block when --reps is not given")
    p.add_argument("--warmup", type=int, default=3, help="minimum warm-up calls per block (also >= 0.1 s)")
    p.add_argument("--pause-s", type=float, default=0.2, help="sleep between engine blocks")
    p.add_argument("--tol", type=float, default=1e-4, help="ORT vs PyTorch verification tolerance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights-dir", help="keep the weights files here (default: a temporary folder)")
    p.add_argument("--symbiont", default=os.path.join(REPO, "target/release/symbiont"))
    p.add_argument("--symbiont-extra-args", default="", help='appended to `symbiont bench`, e.g. "--dtype bf16"')
    p.add_argument("--check", action="store_true", help="compare `symbiont infer` with PyTorch instead of timing")
    p.add_argument("--check-extra-args", default="", help="appended to `symbiont infer` in --check")
    p.add_argument("--check-tol", type=float, default=1e-4, help="--check: limit on max_rel_err")
    p.add_argument("--raw", help="JSONL file for raw rows (default: bench/results/infer_peers-<date>.jsonl)")
    args = p.parse_args()
    for s in args.scope:
        if s not in SCOPE_LABEL:
            p.error(f"--scope: unknown {s!r} (lstm, lm)")
    for e in args.engines:
        if e not in ENGINE_LABEL:
            p.error(f"--engines: unknown {e!r} ({', '.join(ENGINE_LABEL)})")
    if args.weights_dir:
        args.weights_dir = os.path.abspath(args.weights_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    args.raw = os.path.abspath(args.raw or os.path.join(
        REPO, f"bench/results/infer_peers{'-check' if args.check else ''}-{stamp}.jsonl"))
    if args.check:
        sys.exit(check(args))
    bench(args)


if __name__ == "__main__":
    main()
