#!/usr/bin/env bash
# Copies the records of run folders (flow.json, flow.toml, table.json, stage.json, metrics.jsonl,
# final.json, logs) without checkpoints or model files: what docs/ and `symbiont report` need.
#   bench/collect_runs.sh SRC_DIR DEST_DIR
set -euo pipefail
src=$1
dst=$2
mkdir -p "$dst"
tar -C "$src" --exclude=checkpoint --exclude=checkpoint.old --exclude=checkpoint.tmp \
    --exclude='*.safetensors' --exclude='*.onnx' -cf - . | tar -C "$dst" -xf -
