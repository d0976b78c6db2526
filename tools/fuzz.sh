#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz.rs of model, infer, profile, train, flow) with CASES cases
# each (default 20000; the test command runs 256) and prints the time of each crate's targets.
# A failure prints proptest's shrunk input and exits non-zero. Results: docs/fuzzing.md.
# Usage (repo root): tools/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-20000}
export SYMBIONT_FUZZ_CASES=$cases RUST_BACKTRACE=0
bins=$(cargo test --release --no-run --message-format=json -p symbiont-model -p symbiont-infer \
    -p symbiont-profile -p symbiont-train -p symbiont-flow --test fuzz 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "fuzz":
        print(m["package_id"].split("#")[0].rsplit("/", 1)[-1], m["executable"])')
echo "cases per target: $cases (the on-disk corpus target: a tenth); CPU: $(lscpu | sed -n 's/^Model name: *//p')"
while read -r crate exe; do
    targets=$("$exe" --list 2>/dev/null | grep -c ': test$')
    start=$(date +%s.%N)
    out=$("$exe" 2>&1) || { echo "$out"; exit 1; }
    end=$(date +%s.%N)
    printf '%-20s %s tests  %7.2f s\n' "$crate" "$targets" "$(echo "$end - $start" | bc)"
done <<<"$bins"
