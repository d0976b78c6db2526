#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine that has no Rust toolchain and no package registry
# (docs/gpu.md). Two parts:
#
#   scripts/gpu-check.sh build   here, with cargo: builds with the `cuda` feature, copies the
#                                model crate's test executables (unit tests and
#                                tests/cuda_parity.rs, debug info stripped) into target/gpu-bundle/
#                                and, where NVRTC can be had (tools/nvrtc-check.sh), the kernels'
#                                PTX, so that the GPU machine needs no NVRTC
#   scripts/gpu-check.sh run     there, from the repository root with target/gpu-bundle/ carried:
#                                prints nvidia-smi, finds cuBLAS (and NVRTC), runs the executables
#                                with SYMBIONT_REQUIRE_GPU=1 (a skipped comparison is a failure),
#                                the parity test once per way of getting the kernels (NVRTC there,
#                                the bundled PTX)
#                                and writes everything under $OUT/gpu-check/ (or docs/gpu-check/
#                                when OUT is not set); exits non-zero when a check failed
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=target/gpu-bundle

build() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
    cargo build --release --features cuda
    rm -rf "$bundle" && mkdir -p "$bundle/bin"
    # The executables cargo builds for the model crate's unit tests and the parity test.
    cargo test --release --features cuda -p symbiont-model --lib --test cuda_parity --no-run \
        --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        kind = m["target"]["kind"][0]
        print(("model-unit" if kind == "lib" else m["target"]["name"]) + " " + m["executable"])
' | while read -r name exe; do
        cp "$exe" "$bundle/bin/$name"
        strip --strip-debug "$bundle/bin/$name" 2>/dev/null || true
        echo "bundled $name ($(du -h "$bundle/bin/$name" | cut -f1)) from $exe"
    done
    # The CLI, for training and evaluation on the GPU (`--device cuda:0`).
    cp "$CARGO_TARGET_DIR/release/symbiont" "$bundle/symbiont"
    strip --strip-debug "$bundle/symbiont" 2>/dev/null || true
    echo "bundled symbiont ($(du -h "$bundle/symbiont" | cut -f1))"
    # The kernels as PTX, when NVRTC is available (installed from PyPI by tools/nvrtc-check.sh).
    # NVRTC 12.0 makes PTX ISA 8.0, which every driver since 525 (the first for H100s) loads.
    if NVRTC_VENV=${NVRTC_VENV:-target/nvrtc-venv-12.0} \
        NVRTC_PACKAGE=${NVRTC_PACKAGE:-nvidia-cuda-nvrtc-cu12==12.0.140} \
        tools/nvrtc-check.sh "$bundle/kernels.ptx" >"$bundle/nvrtc-check.log" 2>&1; then
        echo "bundled kernels.ptx ($(du -h "$bundle/kernels.ptx" | cut -f1))"
    else
        rm -f "$bundle/kernels.ptx"
        echo "no PTX bundled (NVRTC unavailable here: see $bundle/nvrtc-check.log); the GPU machine will need libnvrtc"
    fi
    {
        echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) by $(rustc --version)"
        (cd "$bundle" && find . -type f -exec du -h {} +)
    } >"$bundle/MANIFEST"
    local size
    size=$(du -sm "$bundle" | cut -f1)
    echo "bundle: $bundle, ${size} MiB"
    [ "$size" -lt 64 ] || echo "warning: the bundle is ${size} MiB, over the 64 MiB a device run carries" >&2
}

# Folders holding `lib$1.so*` among the places CUDA libraries are usually installed.
find_lib_dirs() {
    local name=$1 d
    local -a candidates=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib
        /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/lib)
    for d in /usr/local/cuda-*/lib64; do candidates+=("$d"); done
    local IFS_=$IFS
    IFS=: read -r -a from_env <<<"${LD_LIBRARY_PATH:-}"
    IFS=$IFS_
    candidates+=("${from_env[@]}")
    if command -v python3 >/dev/null; then
        for d in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
            for sub in "$d"/nvidia/*/lib "$d"/nvidia/cu*/lib; do candidates+=("$sub"); done
        done
    fi
    for d in "${candidates[@]}"; do
        if compgen -G "$d/lib$name.so*" >/dev/null; then echo "$d"; fi
    done | awk '!seen[$0]++'
}

run() {
    [ -d "$bundle/bin" ] || { echo "no $bundle/bin: run 'scripts/gpu-check.sh build' first and carry $bundle" >&2; exit 2; }
    local out=${OUT:-docs}/gpu-check
    mkdir -p "$out"
    local summary=$out/summary.txt status=0
    : >"$summary"
    note() { echo "$*" | tee -a "$summary"; }
    note "gpu-check run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    cat "$bundle/MANIFEST" >"$out/bundle-manifest.txt" 2>/dev/null || true
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
            sed 's/^/gpu: /' | tee -a "$summary" || true
    else
        note "gpu: nvidia-smi not found"
    fi
    local lib dirs
    for lib in cublas cublasLt nvrtc; do
        dirs=$(find_lib_dirs "$lib" | paste -sd: -)
        note "lib$lib: ${dirs:-not found in the usual places}"
        if [ -n "$dirs" ]; then export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
    done
    # The kernels two ways where both can be had: compiled here by NVRTC, and the bundled PTX.
    local -a modes=()
    [ -n "$(find_lib_dirs nvrtc)" ] && modes+=(nvrtc)
    [ -f "$bundle/kernels.ptx" ] && modes+=(ptx)
    [ ${#modes[@]} -gt 0 ] || { note "kernels: no NVRTC here and no bundled PTX"; modes=(nvrtc); }
    export SYMBIONT_REQUIRE_GPU=1 RUST_BACKTRACE=1
    local exe name rc mode log
    for exe in "$bundle"/bin/*; do
        name=$(basename "$exe")
        for mode in "${modes[@]}"; do
            log=$out/$name.txt
            [ "$name" = model-unit ] || log=$out/$name-$mode.txt
            set +e
            if [ "$name" = model-unit ]; then
                "$exe" backend::cuda --test-threads=1 >"$log" 2>&1
            elif [ "$mode" = ptx ]; then
                SYMBIONT_CUDA_PTX=$PWD/$bundle/kernels.ptx "$exe" --nocapture --test-threads=1 >"$log" 2>&1
            else
                "$exe" --nocapture --test-threads=1 >"$log" 2>&1
            fi
            rc=$?
            set -e
            note "$(basename "$log" .txt): exit $rc, $(grep -E '^test result' "$log" | tail -1)"
            [ "$rc" -eq 0 ] || status=1
            [ "$name" != model-unit ] || break
        done
    done
    [ "$status" -eq 0 ] && [ -x "$bundle/symbiont" ] && train_runs "$out" "${modes[0]}" || status=1
    note "results in $out"
    if [ "$status" -eq 0 ]; then note "gpu-check: PASSED"; else note "gpu-check: FAILED"; fi
    return "$status"
}

# PTB training and evaluation through the CLI on the GPU, with PyTorch's cuDNN LSTM on the same
# model beside it when python3 has torch: tokens/s of each (STEPS_SMALL / STEPS_MEDIUM /
# STEPS_LARGE steps; 0 skips one), one JSON line each in train.jsonl; then the PTB-small
# checkpoint's validation perplexity evaluated on the GPU and on the CPU (EVAL=0 skips it).
train_runs() {
    local out=$1 mode=$2 data=${PTB:-../shared/data/ptb} cfg steps hidden dropout init log
    [ -f "$data/ptb.train.txt" ] || { note "train: no PTB at $data (set PTB=DIR)"; return 0; }
    [ "$mode" = ptx ] && export SYMBIONT_CUDA_PTX=$PWD/$bundle/kernels.ptx
    local have_torch=0
    python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null && have_torch=1
    for cfg in small:${STEPS_SMALL:-600}:200:0.0:0.1 medium:${STEPS_MEDIUM:-300}:650:0.5:0.05 \
        large:${STEPS_LARGE:-200}:1500:0.65:0.04; do
        IFS=: read -r name steps hidden dropout init <<<"$cfg"
        [ "$steps" -gt 0 ] || continue
        log=$out/train-$name.txt
        rm -rf "$out/run-$name"
        set +e
        timeout "${TRAIN_TIMEOUT:-150}" "$bundle/symbiont" --device cuda:0 train \
            --config "configs/ptb-$name.toml" --data-dir "$data" --out "$out/run-$name" \
            --max-steps "$steps" --json --no-progress >"$log" 2>&1
        local rc=$?
        set -e
        tail -1 "$log" | grep '^{' | sed "s/^{/{\"what\":\"symbiont ptb-$name\",/" >>"$out/train.jsonl"
        note "train ptb-$name on cuda:0, $steps steps: exit $rc, $(tail -1 "$log" | grep -o '"session_tokens_per_s":[0-9.]*')"
        if [ "$have_torch" = 1 ]; then
            timeout 120 python3 bench/pytorch_train_throughput.py --device cuda --hidden "$hidden" \
                --dropout "$dropout" --init "$init" --steps 100 --warmup 10 --data-dir "$data" --json \
                >"$out/pytorch-$name.txt" 2>&1 &&
                tail -1 "$out/pytorch-$name.txt" >>"$out/train.jsonl" &&
                note "pytorch cuDNN ptb-$name: $(tail -1 "$out/pytorch-$name.txt" | grep -o '"tokens_per_s": [0-9.]*')"
        fi
    done
    if [ "${EVAL:-1}" = 1 ] && [ -d "$out/run-small/checkpoint" ]; then
        "$bundle/symbiont" --device cuda:0 eval --checkpoint "$out/run-small" --split valid \
            --data-dir "$data" --json >"$out/eval-small-cuda.txt" 2>&1
        "$bundle/symbiont" eval --checkpoint "$out/run-small" --split valid --data-dir "$data" \
            --json >"$out/eval-small-cpu.txt" 2>&1
        note "eval ptb-small valid: cuda $(grep -o '"perplexity":[0-9.]*' "$out/eval-small-cuda.txt"), cpu $(grep -o '"perplexity":[0-9.]*' "$out/eval-small-cpu.txt")"
    fi
    rm -rf "$out"/run-*
}

case "${1:-}" in
build) build ;;
run) run ;;
*)
    echo "usage: scripts/gpu-check.sh build|run (see the comment at the top)" >&2
    exit 2
    ;;
esac
