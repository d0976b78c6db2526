#!/usr/bin/env bash
# ONNX export checked under ONNX Runtime: writes two small random word language models (a 3-layer
# LSTM of different widths, a 2-layer H-LSTM of different widths; crates/flow/examples/tiny_model.rs),
# exports each with `symbiont export`, and compares ORT's logits with `symbiont infer`'s
# (tools/check_onnx.py; exit 1 on a mismatch). Installs onnxruntime + numpy into .venv when missing.
#
#   tools/check_onnx.sh [WORK_DIR]     # default: target/check_onnx
set -euo pipefail
cd "$(dirname "$0")/.."

work=${1:-target/check_onnx}
venv=${VENV:-.venv}
if ! "$venv/bin/python" -c 'import onnxruntime, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    # Only what the check needs (bench/requirements.txt pins these among heavier ones).
    pins=$(grep -E '^(onnxruntime|numpy)==' bench/requirements.txt)
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet $pins
fi

cargo build --release -p symbiont --bin symbiont -p symbiont-flow --example tiny_model
rm -rf "$work"
mkdir -p "$work"
./target/release/examples/tiny_model "$work/models"
for name in lstm hlstm; do
    ./target/release/symbiont export "$work/models/$name.safetensors" --out "$work/$name" --json
    "$venv/bin/python" tools/check_onnx.py "$work/$name/model.safetensors" "$work/$name/model.onnx"
done
# The comparison can fail: the LSTM export against another seed's weights must be refused.
./target/release/examples/tiny_model "$work/other" 8 >/dev/null
if "$venv/bin/python" tools/check_onnx.py "$work/other/lstm.safetensors" "$work/lstm/model.onnx" \
    >/dev/null 2>&1; then
    echo "check_onnx: a model with other weights passed the comparison" >&2
    exit 1
fi
echo "check_onnx: LSTM and H-LSTM exports match symbiont under ONNX Runtime"
