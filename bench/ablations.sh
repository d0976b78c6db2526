#!/usr/bin/env bash
# The PTB ablations of the symbiotic flow (issue 13) side by side at a reduced budget
# (configs/ablation/*.toml: 600 steps each): one shared baseline (PTB-small trained 600 steps)
# and one shared cpu-sparse latency table (LSTM and H-LSTM gate width 200, dense and 15%), then
# the reference flow and its four ablations in parallel, then a summary table.
#
#   bench/ablations.sh    # FLOW_THREADS=3 BASE_THREADS=8 BIN=target/release/symbiont NAMES="symbiotic lstm …"
# Needs PTB where the recipe looks (../shared/data/ptb or data/ptb). Writes runs/ablation/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/symbiont}
flow_threads=${FLOW_THREADS:-3}
base_threads=${BASE_THREADS:-8}
read -r -a names <<< "${NAMES:-symbiotic no-frontier multiple64 plain-pruning lstm}"
mkdir -p runs/ablation
lscpu | grep -E "Model name|^CPU\(s\)" || true
"$bin" isa
if [ ! -f runs/ablation/baseline/checkpoint/trainer.json ]; then
    "$bin" --threads "$base_threads" train --config configs/ptb-small.toml \
        --out runs/ablation/baseline --max-steps 600 --no-progress
fi
if [ ! -f runs/ablation/table.json ]; then
    "$bin" profile --engine cpu-sparse --hidden 64:512:32 --gate-width 0,200 --density 1,0.15 \
        --thread-counts 1 --budget 60 --out runs/ablation/table.json --no-progress
fi
pids=()
for n in "${names[@]}"; do
    "$bin" --threads "$flow_threads" compress --config "configs/ablation/$n.toml" \
        --out "runs/ablation/$n" --no-progress > "runs/ablation/$n.log" 2>&1 &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "ablation ${names[$i]} failed: see runs/ablation/${names[$i]}.log" >&2
        status=1
    fi
done
if command -v python3 >/dev/null; then
    python3 bench/summarize_flows.py "${names[@]/#/runs/ablation/}" || status=1
fi
exit $status
