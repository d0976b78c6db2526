#!/usr/bin/env bash
# A/B of two symbiont builds at the native ISA level, alternating (old, new) round by round so
# machine drift hits both alike: `bench` latency at H = 200/650/1500, batch 1 and 16; PTB-small
# and PTB-medium training tokens/s; the few-row kernel rates of `peak`. One line per run.
#
# Usage (repo root): OLD=/path/to/old/symbiont NEW=target/release/symbiont bench/ab_native.sh
#   env: ROUNDS (default 3), DATA (default ../shared/data/ptb), THREADS (default 2).
# Build an old commit with: git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
set -uo pipefail
cd "$(dirname "$0")/.."
OLD=${OLD:?set OLD to the old binary}
NEW=${NEW:-target/release/symbiont}
ROUNDS=${ROUNDS:-3}
DATA=${DATA:-../shared/data/ptb}
THREADS=${THREADS:-2}
field() { python3 -c "import json,sys; print(round(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'], 3))"; }
for r in $(seq 1 "$ROUNDS"); do
    for h in 200 650 1500; do
        for b in 1 16; do
            for v in old new; do
                bin=$OLD; [ $v = new ] && bin=$NEW
                ms=$("$bin" --threads "$THREADS" bench --layers 2 --hidden "$h" --batch "$b" --seq 35 --json 2>/dev/null | field median_ms)
                echo "bench round $r H=$h B=$b $v median_ms $ms"
            done
        done
    done
    for cfg in ptb-small:40 ptb-medium:14; do
        for v in old new; do
            bin=$OLD; [ $v = new ] && bin=$NEW
            d=$(mktemp -d)
            tps=$("$bin" --threads "$THREADS" train --config "configs/${cfg%%:*}.toml" --data-dir "$DATA" --out "$d/run" --max-steps "${cfg##*:}" --json --no-progress 2>/dev/null | field session_tokens_per_s)
            rm -rf "$d"
            echo "train round $r ${cfg%%:*} $v tokens_per_s $tps"
        done
    done
    for v in old new; do
        bin=$OLD; [ $v = new ] && bin=$NEW
        "$bin" --threads "$THREADS" peak --hidden 200,650,1500 --json 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin)
print('peak round $r $v', ' '.join('%s/H=%d=%.0f' % (x['shape'], x['hidden'], x['gflops']) for x in d['gemm'] if 'few_rows' in x['shape']))"
    done
done
