#!/usr/bin/env python3
"""Command engine for `symbiont profile`: PyTorch nn.LSTM inference latency.

Builds an nn.LSTM stack (random seeded weights, uniform(-1/sqrt(H), 1/sqrt(H)), optional random
--density mask) and times one full-sequence forward (batch B, seq T, zero state, input
x ~ N(0, 1)) per repetition, eager, under torch.inference_mode with torch.set_num_threads(threads),
after a warm-up. Prints one JSON line on stdout:
    {"samples_ms": [...], "median_ms": ..., "p10_ms": ..., "p90_ms": ..., "reps": ..., ...}
Errors go to stderr with exit status 2. Configuration: flags, else the SYMBIONT_HIDDEN,
SYMBIONT_INPUT, SYMBIONT_LAYERS, SYMBIONT_BATCH, SYMBIONT_SEQ, SYMBIONT_THREADS, SYMBIONT_DTYPE
(f32, bf16, f16), SYMBIONT_DENSITY environment variables, else defaults (layers 1, batch 1, seq 35,
threads 1, f32, density 1, input = hidden). --serve reads one JSON configuration per stdin line and
answers one JSON line each, importing torch once (protocol: bench/engines/README.md).

Usage (from the repo root):
    .venv/bin/python bench/engines/pytorch_lstm.py --hidden 256 --batch 1 --seq 35 --threads 2
    symbiont profile --engine command --command '.venv/bin/python bench/engines/pytorch_lstm.py \
        --hidden {hidden} --input {input} --layers {layers} --batch {batch} --seq {seq} --threads {threads}' ...
    echo '{"hidden": 64, "reps": 10}' | .venv/bin/python bench/engines/pytorch_lstm.py --serve
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/

import peer_common  # noqa: E402

if __name__ == "__main__":
    sys.exit(peer_common.engine_main("pytorch", __doc__))
