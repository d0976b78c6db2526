#!/usr/bin/env bash
# AN4 model latency through the deployment plan (symbiont bench --model DIR: BatchNorms folded,
# recurrent layers on infer's kernels), several checkpoints side by side in one run, alternating
# A B … A B … for ROUNDS rounds, at the native ISA and at forced AVX2 (SYMBIONT_ISA=avx2).
# Keeps every raw JSON row and prints, per model and ISA, the median over rounds of each run's
# median, its spread (min–max over rounds), the stage split, and the ratio to the first model.
#   bench/an4_latency.sh ROUNDS MODEL_DIR [MODEL_DIR…]
# Env: SYMBIONT (binary, default target/release/symbiont), THREADS (2), SECONDS_OF_AUDIO (1, audio per
# utterance), ISAS ("native avx2"), OUT (folder for the raw rows, default
# bench/results/an4-latency).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?usage: bench/an4_latency.sh ROUNDS MODEL_DIR [MODEL_DIR…]}
shift
[ $# -ge 1 ] || { echo "name at least one model folder" >&2; exit 2; }
bin=${SYMBIONT:-target/release/symbiont}
threads=${THREADS:-2}
seconds=${SECONDS_OF_AUDIO:-1}
isas=${ISAS:-native avx2}
out=${OUT:-bench/results/an4-latency}
mkdir -p "$out"
rows="$out/rows.jsonl"
: > "$rows"
echo "# $(lscpu | sed -n 's/^Model name: *//p'); threads $threads; $seconds s of audio; rounds $rounds" | tee "$out/machine.txt" >&2
for r in $(seq 1 "$rounds"); do
    for isa in $isas; do
        for model in "$@"; do
            if [ "$isa" = native ]; then env_isa=(); else env_isa=(SYMBIONT_ISA="$isa"); fi
            env "${env_isa[@]}" "$bin" --threads "$threads" bench --model "$model" \
                --audio-seconds "$seconds" --reps 30 --min-time 2 --json \
                | python3 -c 'import json,sys; d=json.load(sys.stdin); d["round"]=int(sys.argv[1]); d["isa_asked"]=sys.argv[2]; print(json.dumps(d))' "$r" "$isa" >> "$rows"
        done
    done
done
python3 - "$rows" "$@" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
models = sys.argv[2:]
for isa in dict.fromkeys(r["isa_asked"] for r in rows):
    base = None
    for m in models:
        mine = [r for r in rows if r["model"] == m and r["isa_asked"] == isa]
        med = [r["median_ms"] for r in mine]
        mid = statistics.median(med)
        base = base or mid
        stages = {k: round(statistics.median(r["stage_median_ms"][k] for r in mine), 2)
                  for k in ("front_end", "recurrent", "output")}
        formats = sorted({x["format"] for x in mine[0]["matrices"]})
        print(json.dumps({"isa": mine[0]["isa"], "model": m, "median_ms": round(mid, 2),
                          "spread_ms": [round(min(med), 2), round(max(med), 2)],
                          "stages_ms": stages, "lower_than_first": round(base / mid, 2),
                          "recurrent_density": round(mine[0]["recurrent_density"], 4),
                          "nonzero_params": mine[0]["nonzero_params"], "formats": formats,
                          "rounds": len(med)}))
PY
