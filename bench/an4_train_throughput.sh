#!/usr/bin/env bash
# AN4 training throughput, symbiont vs PyTorch, side by side on the same model, config and batches
# (configs/an4-baseline-cpu.toml, the first epoch's 48 length-sorted batches), alternating
# S P S P … for ROUNDS rounds. Prints one JSON row per run and the per-round ratios.
#   bench/an4_train_throughput.sh [ROUNDS=2] [THREADS=2] [STEPS=48]
# Needs: target/release/symbiont (cargo build --release), .venv with torch, ../shared/data/an4.
# Env: SYMBIONT (binary), PYTHON, DATA (corpus), OUT (folder for the JSON rows, default
# bench/results/an4-throughput).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
threads=${2:-2}
steps=${3:-48}
bin=${SYMBIONT:-target/release/symbiont}
py=${PYTHON:-.venv/bin/python}
data=${DATA:-../shared/data/an4}
out=${OUT:-bench/results/an4-throughput}
mkdir -p "$out"
echo "# $(lscpu | sed -n 's/^Model name: *//p'); isa $("$bin" isa --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["active"])'); threads $threads; steps $steps" >&2
for r in $(seq 1 "$rounds"); do
    run_dir=$(mktemp -d)
    "$bin" --threads "$threads" train --config configs/an4-baseline-cpu.toml --data-dir "$data" \
        --out "$run_dir" --max-steps "$steps" --json --no-progress > "$out/symbiont-$r.json"
    rm -rf "$run_dir"
    "$py" bench/pytorch_an4_throughput.py --data-dir "$data" --threads "$threads" --steps "$steps" \
        > "$out/pytorch-$r.json"
    python3 - "$out/symbiont-$r.json" "$out/pytorch-$r.json" <<'PY'
import json, sys
s, p = (json.load(open(f)) for f in sys.argv[1:3])
ss, ps = s["audio_seconds_per_second"], p["audio_seconds_per_second"]
print(json.dumps({"symbiont_audio_s_per_s": round(ss, 2), "symbiont_step_seconds": round(s["step_seconds"], 1),
                  "pytorch_audio_s_per_s": round(ps, 2), "pytorch_seconds": round(p["seconds"], 1),
                  "ratio": round(ss / ps, 3), "isa": s["isa"], "torch": p["torch"], "threads": s["threads"]}))
PY
done
