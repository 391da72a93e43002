#!/usr/bin/env bash
# The engine benchmark on a GPU machine lent by the device tool, in one command: bench/engine.py times ours
# against the reference (msst 0.1.0's demix; demucs' apply_model for HTDemucs) on 240 s of stereo for the five
# families, ours at fp16, fp32 and bf16 on CUDA, and writes the table under $OUT (engine-gpu.md, .json, .log).
#
# No GPU figures exist yet: no GPU machine has been lent to the engine work so far. The first session that gets
# one runs this (README, "Benchmarks", gives the exact call) and puts the table in the README.
#
#   bash bench/gpu.sh --prepare   here, before the call (needs the package index): the wheels the GPU image
#                                 lacks and the configs from ../shared into .whl, then the size and call checks
#   bash bench/gpu.sh             on the GPU machine, as the device call: about 6 minutes, so it fits twice
#   bash bench/gpu.sh --dry-run   here, on the CPU: the same steps in a simulated image on a 1-s input
#                                 (tests/test_bench_scripts.py); exits 3 when the index cannot be reached
#
# The run is bounded three ways: the engine bench shares a 300-s deadline among the families by weight (a slow
# one is stopped, the rest still run), a hard stop at 340 s, and the call's timeout_s (450). The tables are
# rewritten after each family, so a stopped run still brings back what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."

# The steps the device runs; the dry run runs them too, with its own interpreter, folders and sizes.
run_steps() {
  local py=$1 site=$2 wheels=$3 out=$4
  shift 4
  # The install the device tool's notes give: the carried wheels into a folder of their own, found first.
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$wheels"/*.whl
  export PYTHONPATH=$site PYTHONUNBUFFERED=1
  { uname -a; if command -v nvidia-smi >/dev/null; then nvidia-smi; fi; } 2>&1 | tee "$out/machine.txt"
  if ! "$py" bench/gpu_kit.py check-imports --site "$site" "${CHECK_FLAGS[@]}" 2>&1 | tee "$out/imports.txt"; then
    if [ "$STRICT" = 1 ]; then return 1; fi
    echo "the import check failed (imports.txt): the bench runs anyway, and its rows say what failed"
  fi
  local configs listed
  listed=$("$py" bench/gpu_kit.py config-args --dir "$wheels/configs")
  configs=()
  if [ -n "$listed" ]; then mapfile -t configs <<<"$listed"; fi
  local status=0
  timeout --signal=INT --kill-after=15 "$STOP" "$py" bench/engine.py --device "$DEVICE" --seconds "$INPUT_SECONDS" \
    --families "$FAMILIES" --precision "$PRECISIONS" --oracle "$(command -v "$py")" --no-equality \
    --deadline "$DEADLINE" --json "$out/engine-gpu.json" --markdown "$out/engine-gpu.md" "${configs[@]}" "$@" \
    2>&1 | tee "$out/engine-gpu.log" || status=$?
  if [ "$status" -ne 0 ]; then echo "engine bench ended with status $status: the tables hold what it measured"; fi
  "$py" bench/gpu_kit.py check-table --json "$out/engine-gpu.json" --markdown "$out/engine-gpu.md" \
    --families "$FAMILIES" --precisions "$PRECISIONS" "${TABLE_FLAGS[@]}"
}

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
case "${1:-}" in
  --prepare)
    "$PYTHON" bench/gpu_kit.py prepare --dest .whl
    "$PYTHON" bench/gpu_kit.py check-size --carry .whl
    "$PYTHON" bench/gpu_kit.py check-call
    ;;
  --dry-run)
    # Downloads are kept between dry runs (the test keeps them in pytest's cache); a full cache needs no index.
    cache=${GPU_DRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openmvsep-gpu-dry}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    out=${OUT:-$work/out}
    mkdir -p "$out"
    "$PYTHON" bench/gpu_kit.py prepare --dest "$cache/gpu"  # what --prepare puts in .whl: its size counts
    "$PYTHON" bench/gpu_kit.py check-size --carry "$cache/gpu"
    "$PYTHON" bench/gpu_kit.py check-call
    "$PYTHON" bench/gpu_kit.py prepare --local --dest "$cache/local" --standins "$cache/standins"
    if ! ls "$cache/standins" | cmp -s - "$cache/standins-site/.wheels"; then  # installed once per wheel set
      rm -rf "$cache/standins-site"
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$cache/standins-site" \
        "$cache/standins"/*.whl
      ls "$cache/standins" >"$cache/standins-site/.wheels"
    fi
    "$PYTHON" bench/gpu_kit.py simulate-image --venv "$work/image" --standins "$cache/standins-site"
    export OMP_NUM_THREADS=1  # nothing here is a timing; two threads on a busy 2-core machine spin 10x slower
    STRICT=1 CHECK_FLAGS=() TABLE_FLAGS=(--complete) DEVICE=cpu INPUT_SECONDS=1 FAMILIES=bs_roformer
    PRECISIONS=fp32,bf16 DEADLINE=300 STOP=360
    run_steps "$work/image/bin/python" "$work/site" "$cache/local" "$out" \
      --config=bs_roformer=tests/fixtures/engine/bs_roformer/config.yaml
    ;;
  "")
    : "${OUT:?the device tool sets OUT: the folder whose files come back}"
    STRICT=0 CHECK_FLAGS=(--on-device) TABLE_FLAGS=() DEVICE=cuda INPUT_SECONDS=240 PRECISIONS=fp16,fp32,bf16
    FAMILIES=bs_roformer,mel_band_roformer,mdx23c,scnet,htdemucs DEADLINE=300 STOP=340
    run_steps python3 /tmp/site .whl "$OUT"
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
