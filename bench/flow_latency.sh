#!/usr/bin/env bash
# Batch-1 and deployment-batch latency of the baseline and of final models of `symbiont compress`
# runs, side by side in one run: rounds in turn (baseline, model 1, model 2, …) at the native ISA
# level and forced to AVX2, each row `symbiont bench --json` plus the label, level and round.
#
#   bench/flow_latency.sh BASELINE.safetensors NAME=MODEL.safetensors[:FORMAT] ...
#     FORMAT: dense (default) or auto (each matrix in the format timed fastest: sparse targets)
#   env: ROUNDS=5 REPS=20 THREADS=1 BATCHES="1 10" SEQ=35 LEVELS="native avx2" OUT=bench/results/...
# Prints a summary (median of the round medians, spread, ratio to the baseline) and keeps the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/symbiont}
rounds=${ROUNDS:-5}
reps=${REPS:-20}
threads=${THREADS:-1}
batches=${BATCHES:-1 10}
seq=${SEQ:-35}
levels=${LEVELS:-native avx2}
out=${OUT:-bench/results/flow_latency-$(date -u +%Y%m%dT%H%M%S).jsonl}
baseline=${1:?usage: bench/flow_latency.sh BASELINE.safetensors NAME=MODEL[:FORMAT] ...}
shift
models=("baseline=$baseline:dense" "$@")
mkdir -p "$(dirname "$out")"
: > "$out"
lscpu | grep -E "Model name" || true
for level in $levels; do
    if [ "$level" = native ]; then isa_env=(); else isa_env=(env "SYMBIONT_ISA=$level"); fi
    for batch in $batches; do
        for round in $(seq 1 "$rounds"); do
            for spec in "${models[@]}"; do
                name=${spec%%=*}
                rest=${spec#*=}
                file=${rest%%:*}
                format=dense
                [ "$rest" != "$file" ] && format=${rest##*:}
                row=$("${isa_env[@]}" "$bin" --threads "$threads" bench --model "$file" --batch "$batch" \
                    --seq "$seq" --format "$format" --reps "$reps" --json)
                echo "{\"label\": \"$name\", \"level\": \"$level\", \"round\": $round, \"bench\": $row}" >> "$out"
            done
        done
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    b = r["bench"]
    groups.setdefault((r["level"], b["batch"], r["label"]), []).append(b["median_ms"])
print("| level | batch | model | median of round medians (ms) | min–max of rounds | vs baseline |")
print("|---|---:|---|---:|---:|---:|")
for (level, batch, label), v in groups.items():
    base = statistics.median(groups[(level, batch, "baseline")])
    m = statistics.median(v)
    print(f"| {level} | {batch} | {label} | {m:.3f} | {min(v):.3f}–{max(v):.3f} | {base / m:.2f}x lower |")
print(f"rows: {sys.argv[1]}")
PY
