#!/usr/bin/env python3
"""Command engine for `symbiont profile`: ONNX Runtime inference latency with the ONNX LSTM operator.

Builds an ONNX graph with one `LSTM` node per layer (onnx.helper, no torch needed; random seeded
weights, uniform(-1/sqrt(H), 1/sqrt(H)), optional random --density mask) and times one
full-sequence forward (batch B, seq T, zero state, input x ~ N(0, 1)) per repetition on the CPU
execution provider (intra_op_num_threads=threads, inter_op 1, sequential execution, all graph
optimisations, run_with_iobinding), after a warm-up. Prints one JSON line on stdout:
    {"samples_ms": [...], "median_ms": ..., "p10_ms": ..., "p90_ms": ..., "reps": ..., ...}
Errors go to stderr with exit status 2 (e.g. dtype other than f32: ORT's CPU LSTM is float32
only). Configuration: flags, else the SYMBIONT_HIDDEN, SYMBIONT_INPUT, SYMBIONT_LAYERS,
SYMBIONT_BATCH, SYMBIONT_SEQ, SYMBIONT_THREADS, SYMBIONT_DTYPE, SYMBIONT_DENSITY environment
variables, else defaults (layers 1, batch 1, seq 35, threads 1, f32, density 1, input = hidden).
--serve reads one JSON configuration per stdin line and answers one JSON line each (protocol:
bench/engines/README.md).

Usage (from the repo root):
    .venv/bin/python bench/engines/onnxruntime_lstm.py --hidden 256 --batch 1 --seq 35 --threads 2
    symbiont profile --engine command --command '.venv/bin/python bench/engines/onnxruntime_lstm.py \
        --hidden {hidden} --input {input} --layers {layers} --batch {batch} --seq {seq} --threads {threads}' ...
    echo '{"hidden": 64, "reps": 10}' | .venv/bin/python bench/engines/onnxruntime_lstm.py --serve
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

import peer_common  # noqa: E402

if __name__ == "__main__":
    sys.exit(peer_common.engine_main("onnxruntime", __doc__))
