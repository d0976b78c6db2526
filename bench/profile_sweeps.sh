#!/usr/bin/env bash
# The latency sweeps behind docs/benchmarks.md ("Latency profiles"): symbiont's dense engine twice
# (frontier reproducibility), at 1 and 2 threads; PyTorch and ONNX Runtime through the command
# engine at 1 and 2 threads; the sparse engine over (hidden, density). One layer, batch 1, 35 steps.
#
# Run from the repository root on a quiet machine (about 40 minutes in all):
#   cargo build --release && bench/profile_sweeps.sh [WHICH...]
# WHICH: dense-a dense-b dense-1t pytorch-2t pytorch-1t ort-2t ort-1t sparse (default: all).
# Tables: bench/results/profile/*.json; plots: docs/img/profile-*.svg; log: bench/results/profile/log.txt
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/symbiont
PY=.venv/bin/python
OUT=bench/results/profile
mkdir -p "$OUT" docs/img
HIDDEN=32:2048:16
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(dense-a dense-b dense-1t pytorch-2t pytorch-1t ort-2t ort-1t sparse)
torch_v=$($PY -c 'import torch; print("torch " + torch.__version__)')
ort_v=$($PY -c 'import onnxruntime; print("onnxruntime " + onnxruntime.__version__)')

run() { # name, then the profile arguments
  local name=$1; shift
  local start=$(date +%s)
  echo "== $name: $BIN $*" | tee -a "$OUT/log.txt"
  "$BIN" "$@" --no-progress --out "$OUT/$name.json" 2>&1 | tail -3 | tee -a "$OUT/log.txt"
  echo "   $name took $(( $(date +%s) - start )) s" | tee -a "$OUT/log.txt"
}

for w in "${which[@]}"; do
  case $w in
    dense-a) run dense-a --threads 2 profile --engine cpu-dense --label cpu-dense-2t --hidden $HIDDEN --seed 1 ;;
    dense-b) run dense-b --threads 2 profile --engine cpu-dense --label cpu-dense-2t --hidden $HIDDEN --seed 2 ;;
    dense-1t) run dense-1t --threads 1 profile --engine cpu-dense --label cpu-dense-1t --hidden $HIDDEN ;;
    pytorch-2t|pytorch-1t)
      t=${w#pytorch-}; t=${t%t}
      run "$w" --threads "$t" profile --engine command --persistent --label "pytorch-${t}t" --engine-version "$torch_v" \
        --command "$PY bench/engines/pytorch_lstm.py --serve" --hidden $HIDDEN ;;
    ort-2t|ort-1t)
      t=${w#ort-}; t=${t%t}
      run "$w" --threads "$t" profile --engine command --persistent --label "onnxruntime-${t}t" --engine-version "$ort_v" \
        --command "$PY bench/engines/onnxruntime_lstm.py --serve" --hidden $HIDDEN ;;
    sparse) run sparse --threads 2 profile --engine cpu-sparse --label cpu-sparse-2t --hidden 128:2048:128 \
        --density 1,0.5,0.25,0.1,0.05,0.02 --format auto --budget 300 ;;
    *) echo "unknown sweep $w" >&2; exit 2 ;;
  esac
done
