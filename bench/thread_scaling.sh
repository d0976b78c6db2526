#!/usr/bin/env bash
# Thread scaling of `symbiont bench` (batch-1 and batch-16 latency) and `symbiont train` (PTB-small
# tokens/s) over thread counts, at the native ISA level and forced to AVX2, one JSON row per run.
# Goal (issue 12): no slowdown from 2 threads to more on a machine that has the cores.
#
# Usage (repo root): bench/thread_scaling.sh
#   env: SYM (default target/release/symbiont), SYM_AVX2 (the --no-default-features build, default
#   target/avx2gemm/release/symbiont; skipped when absent), DATA (PTB folder, default
#   ../shared/data/ptb; training is skipped when absent), THREADS (default "1 2 4 8"), HIDDEN
#   (default "200 650 1500"), BATCHES (default "1 16"), STEPS (training steps, default 30),
#   OUT (default bench/results/thread_scaling-<time>.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.."
SYM=${SYM:-target/release/symbiont}
SYM_AVX2=${SYM_AVX2:-target/avx2gemm/release/symbiont}
DATA=${DATA:-../shared/data/ptb}
THREADS=${THREADS:-"1 2 4 8"}
HIDDEN=${HIDDEN:-"200 650 1500"}
BATCHES=${BATCHES:-"1 16"}
STEPS=${STEPS:-30}
OUT=${OUT:-bench/results/thread_scaling-$(date +%Y%m%dT%H%M%S).jsonl}
mkdir -p "$(dirname "$OUT")"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//; s/"/\\"/g')
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|amx_bf16)$' | tr '\n' ' ')
echo "{\"kind\": \"machine\", \"cpu\": \"$cpu\", \"cpus\": $(nproc), \"flags\": \"${flags% }\", \"date\": \"$(date -u +%FT%TZ)\", \"git_commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\"}" | tee "$OUT"

# level label, binary, SYMBIONT_ISA value ("" = native)
levels=("native $SYM -")
[ -x "$SYM_AVX2" ] && levels+=("avx2 $SYM_AVX2 avx2")

for entry in "${levels[@]}"; do
    read -r label bin isa <<<"$entry"
    [ "$isa" = "-" ] && isa=""
    for h in $HIDDEN; do
        for b in $BATCHES; do
            for t in $THREADS; do
                json=$(SYMBIONT_ISA=$isa "$bin" --threads "$t" bench --layers 2 --hidden "$h" --batch "$b" --seq 35 --json 2>/tmp/thread_scaling.err | tail -1)
                [ -n "$json" ] || json="{\"error\": \"$(tail -c 300 /tmp/thread_scaling.err | tr '\n"' ' ')\"}"
                echo "{\"kind\": \"bench\", \"level\": \"$label\", \"hidden\": $h, \"batch\": $b, \"threads\": $t, \"result\": $json}" | tee -a "$OUT" | cut -c1-200
            done
        done
    done
    if [ -f "$DATA/ptb.train.txt" ]; then
        for t in $THREADS; do
            dir=$(mktemp -d)
            json=$(SYMBIONT_ISA=$isa "$bin" --threads "$t" train --config configs/ptb-small.toml --data-dir "$DATA" --out "$dir/run" --max-steps "$STEPS" --json --no-progress 2>/tmp/thread_scaling.err | tail -1)
            [ -n "$json" ] || json="{\"error\": \"$(tail -c 300 /tmp/thread_scaling.err | tr '\n"' ' ')\"}"
            rm -rf "$dir"
            echo "{\"kind\": \"train\", \"level\": \"$label\", \"config\": \"ptb-small\", \"threads\": $t, \"result\": $json}" | tee -a "$OUT" | cut -c1-200
        done
    fi
done
echo "raw rows: $OUT"
