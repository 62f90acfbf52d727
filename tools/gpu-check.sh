#!/usr/bin/env bash
# The GPU check of issue 14, in two halves:
#
#   tools/gpu-check.sh build     here (Rust, no GPU): release `pipeline` and the `gpu_check`
#                                example, stripped, into target/gpu-check/ (at most 64 MiB)
#   tools/gpu-check.sh run [OUT] on the GPU machine (no Rust, no internet; CUDA driver, and
#                                cuDNN/cuBLAS/NVRTC in PyTorch's site-packages): everything
#                                below, in about 5 minutes, printing every figure, and writing
#                                every figure and log to the results folder OUT
#
# `run` does, in order:
#   1. library and version smoke test, each op against a naive reference (<= 1e-4), features
#      of 16 images and probabilities against the CPU (<= 5e-4 relative, <= 1e-4 absolute;
#      TF32 1e-2 and 5e-3), one fine-tuning step's gradients against the CPU (<= 1e-3),
#      bitwise repeatability, throughput at batch 8/16/32/64 in fp32 and TF32, the CPU's
#      step time on 2 threads (target: the GPU >= 50x faster)          [gpu_check]
#   2. a model1-shaped run (276 synthetic 237 x 237 images, the seed's stages) on the GPU,
#      cold then warm (target: cold <= 5 s after start-up), `--device auto`, a rerun that
#      must be bit-identical (`verify`), the same run on the CPU and `diff` across devices
#   3. PyTorch's VGG16 forward and training step on the same GPU, each with the images already
#      on the GPU and with their host-to-device copy (target: ours within 1.2x of PyTorch's
#      with the copy, since ours copies the images in too)
#
# The results folder: the argument OUT, else $GPU_CHECK_OUT, else target/gpu-check/results.
# It gets gpu-check.log (everything printed), gpu_check.out, torch.out, the model1-shaped
# runs' outputs (model1-*.out) and summary.txt (every ok/FAILED line and the headline
# figures), which is also printed last: collect the folder before the machine is given back.
#
# Environment: PIPELINE_TORCH_PYTHON (default python3) must import torch and torchvision;
# PIPELINE_CUDA_LIB_DIRS is filled from that Python's nvidia/*/lib and torch/lib when unset.
# Exit status: 0 when every bound held, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle="target/gpu-check"

build() {
  set -e
  cargo build --release -p pipeline
  cargo build --release -p stages --example gpu_check
  rm -rf "$bundle" && mkdir -p "$bundle"
  cp target/release/pipeline target/release/examples/gpu_check "$bundle/"
  strip "$bundle/pipeline" "$bundle/gpu_check"
  ls -l "$bundle"
  local kib
  kib=$(du -sk "$bundle" | cut -f1)
  echo "bundle: $kib KiB in $bundle (carry it: run tools/gpu-check.sh run there)"
  if [ "$kib" -gt $((64 * 1024)) ]; then
    echo "error: the bundle is over 64 MiB" >&2
    exit 1
  fi
}

failures=0
fail() {
  echo "FAILED   $*"
  failures=$((failures + 1))
}

# Seconds since the epoch, with fractions.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

experiment() {
  # The seed recipe (experiments/model1.toml) on synthetic images: the real ones cannot travel.
  cat <<'TOML'
name = "model1-synthetic"
description = "model1's stages on 276 synthetic 237 x 237 images (GPU check)"
seed = 42

[stages.load]
kind = "load"
image_size = 237

[[stages.load.sources]]
type = "synthetic"
count_per_class = 138
seed = 42

[stages.normalize]
kind = "normalize"
inputs = { images = "load.images" }
mode = "scale"

[stages.split]
kind = "split"
inputs = { labels = "load.labels" }
test_fraction = 0.2
seed = 40
stratify = false

[stages.model]
kind = "model"
image_size = 237
weights = "random-he"
pooling = "avg4"
conv = "winograd"
units = 64
dropout = 0.2

[stages.features]
kind = "features"
inputs = { base = "model.base", images = "normalize.images" }

[stages.train]
kind = "train"
inputs = { model = "model.model", features = "features.features", labels = "load.labels", train = "split.train", images = "normalize.images" }
epochs = 50
batch_size = 8
learning_rate = 1e-3
validation_fraction = 0.1
freeze_base = true

[stages.evaluate]
kind = "evaluate"
inputs = { model = "train.model", features = "train.features", labels = "load.labels", test = "split.test", index = "load.index" }
TOML
}

run_checks() {
  local out="$1"
  local py="${PIPELINE_TORCH_PYTHON:-python3}"
  local here
  here=$(pwd)
  for b in pipeline gpu_check; do
    [ -f "$bundle/$b" ] || { echo "error: $bundle/$b missing: run tools/gpu-check.sh build first" >&2; exit 2; }
    # A carried bundle may lose its execute bits on the way.
    chmod +x "$bundle/$b" || { echo "error: cannot make $bundle/$b executable" >&2; exit 2; }
  done
  if [ -z "${PIPELINE_CUDA_LIB_DIRS:-}" ]; then
    PIPELINE_CUDA_LIB_DIRS=$("$py" - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = []
for r in roots:
    dirs += sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")))
    if os.path.isdir(os.path.join(r, "torch", "lib")):
        dirs.append(os.path.join(r, "torch", "lib"))
print(":".join(dirs))
PY
)
    export PIPELINE_CUDA_LIB_DIRS
  fi
  echo "== machine: $(nproc) cores; GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
  echo "== PIPELINE_CUDA_LIB_DIRS=$PIPELINE_CUDA_LIB_DIRS"

  echo "== results folder: $out"

  echo "== 1. smoke test, ops, features, fine-tuning step, repeatability, throughput"
  timeout 180 "$bundle/gpu_check" 2>&1 | tee "$out/gpu_check.out"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || fail "gpu_check exited $rc"

  echo "== 2. model1-shaped run, 276 synthetic 237 x 237 images"
  local p
  p=$(mktemp -d)
  experiment > "$p/exp.toml"
  local bin="$here/$bundle/pipeline"
  (
    cd "$p" || exit 1
    t=$(now)
    "$bin" --device cuda run exp.toml --name gpu-cold > "$out/model1-cold.out" 2>&1 || { cat "$out/model1-cold.out"; exit 1; }
    echo "info     model1-shaped run on the GPU, cold (s, process start to end): $(since "$t")"
    grep -E "^(features|train|evaluate)" "$out/model1-cold.out" | sed 's/^/         /'
    t=$(now)
    "$bin" --device cuda run exp.toml --name gpu-warm > "$out/model1-warm.out" 2>&1 || { cat "$out/model1-warm.out"; exit 1; }
    echo "info     model1-shaped run on the GPU, warm (s): $(since "$t")"
    "$bin" --device auto run exp.toml --name gpu-auto > "$out/model1-auto.out" 2>&1
    grep '^device:' "$out/model1-auto.out" | sed 's/^/info     auto: /'
    grep -A8 '^\[device\]' artifacts/runs/*/run.toml | head -20 | sed 's/^/         /'
    cp artifacts/runs/*/run.toml "$out/" 2>/dev/null || true
    "$bin" --device cuda verify gpu-cold > "$out/model1-verify.out" 2>&1 && echo "ok       rerun on the GPU is bit-identical (verify)" \
      || { cat "$out/model1-verify.out"; echo "FAILED   verify gpu-cold"; exit 1; }
    t=$(now)
    "$bin" --device cpu run exp.toml --name cpu > "$out/model1-cpu.out" 2>&1 || { cat "$out/model1-cpu.out"; exit 1; }
    echo "info     the same run on the CPU ($(nproc) cores, s): $(since "$t")"
    "$bin" diff cpu gpu-cold > "$out/model1-diff.out" 2>&1
    grep -E "^device:|evaluate\.(accuracy|loss)" "$out/model1-diff.out" | sed 's/^/         /'
  ) || fail "model1-shaped run"
  rm -rf "$p"

  echo "== 3. PyTorch's VGG16 on the same GPU"
  timeout 150 "$py" tools/torch_gpu_anchor.py 2>&1 | tee "$out/torch.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "PyTorch anchor"

  echo "== targets"
  awk '
    FNR == NR && /features\/s at 237, batch 64 \(fp32\)/ { ours_fwd = $NF }
    FNR == NR && /training step at 237, batch  8 \(fp32\) ms/ { ours_step = $NF }
    FNR != NR && /features\/s at 237, batch 64 \(fp32, with host copy\)/ { torch_fwd = $NF }
    FNR != NR && /training step at 237, batch  8 \(fp32, with host copy\) ms/ { torch_step = $NF }
    END {
      if (ours_fwd == "" || torch_fwd == "" || ours_step == "" || torch_step == "") {
        print "FAILED   a figure is missing (see above)"; exit 1
      }
      bad = 0
      printf "%s features >= 1000 images/s (fp32, batch 64): %s\n", (ours_fwd >= 1000 ? "ok      " : "FAILED  "), ours_fwd
      if (ours_fwd < 1000) bad = 1
      r = torch_fwd / ours_fwd
      printf "%s forward within 1.2x of PyTorch (both copying the images in): ours %s/s, PyTorch %s/s (%.2fx)\n", (r <= 1.2 ? "ok      " : "FAILED  "), ours_fwd, torch_fwd, r
      if (r > 1.2) bad = 1
      r = ours_step / torch_step
      printf "%s training step within 1.2x of PyTorch (both copying the images in): ours %s ms, PyTorch %s ms (%.2fx)\n", (r <= 1.2 ? "ok      " : "FAILED  "), ours_step, torch_step, r
      if (r > 1.2) bad = 1
      exit bad
    }' "$out/gpu_check.out" "$out/torch.out" || fail "speed targets"
  echo "== cold-run target: <= 5 s (see the cold run above)"
  if [ "$failures" -eq 0 ]; then
    echo "== gpu-check: every check passed"
  else
    echo "== gpu-check: $failures check(s) FAILED"
    return 1
  fi
}

# The short summary printed last: the machine and libraries, every ok/FAILED line, the
# headline figures, and the verdict.
summary() {
  local log="$1"
  echo "== summary (all in $(dirname "$log"))"
  grep -E '^== machine|^info +(device|driver|cuDNN|cuBLAS|NVRTC|tensor cores)' "$log"
  grep -E '^(ok|FAILED) ' "$log"
  grep -E '^info +(features/s at 237, batch 64|training step at 237, batch  8|model1-shaped run)' "$log"
  grep -E '^torch (version|device|features/s at 237, batch 64|training step at 237, batch  8)' "$log"
  grep -E '^gpu_check: |^== gpu-check: ' "$log"
}

run() {
  local out="${1:-${GPU_CHECK_OUT:-$bundle/results}}"
  mkdir -p "$out" || { echo "error: cannot make the results folder $out" >&2; exit 2; }
  out=$(cd "$out" && pwd)
  local log="$out/gpu-check.log"
  run_checks "$out" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  summary "$log" > "$out/summary.txt"
  echo
  cat "$out/summary.txt"
  exit "$rc"
}

case "${1:-}" in
  build) build ;;
  run) run "${2:-}" ;;
  *)
    echo "usage: tools/gpu-check.sh build | run [RESULTS-FOLDER] (or GPU_CHECK_OUT=FOLDER)" >&2
    exit 2
    ;;
esac
