#!/usr/bin/env bash
# GPU readiness on a fresh NVIDIA machine: a venv that sees the image's own
# (CUDA) PyTorch and JAX, what keras-ecg needs installed into it, then
# gpu_readiness.py with the arguments given (default: every backend, method
# and precision at the paper's settings).
#
# Usage:  benchmarks/gpu_readiness.sh [gpu_readiness.py options]
#   e.g.  benchmarks/gpu_readiness.sh --backends jax torch --output gpu.json
# Environment:
#   PYTHON      interpreter to build the venv from (default python3)
#   VENV        venv folder (default .venv-gpu in the repository root)
#   WHEELS      folder of wheels for an offline machine: pip installs from it
#               only (--no-index --find-links)
#   TF_PACKAGE  the TensorFlow requirement (default "tensorflow[and-cuda]"),
#               installed only when the tensorflow backend is to run:
#               `--backends jax torch` needs neither TensorFlow nor wfdb
#               (keras-ecg imports them on first use of its tf.data
#               pipelines and WFDB readers, which this script does not use)
#   JAX_PACKAGE installed only if the image has no JAX (default "jax[cuda12]")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv-gpu}
TF_PACKAGE=${TF_PACKAGE:-tensorflow[and-cuda]}
JAX_PACKAGE=${JAX_PACKAGE:-jax[cuda12]}

if [ ! -x "$VENV/bin/python" ]; then
  # --system-site-packages: keep the image's CUDA builds of torch and JAX
  # instead of downloading multi-GB wheels again.
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q)
if [ -n "${WHEELS:-}" ]; then
  PIP+=(--no-index --find-links "$WHEELS")
fi

# module:requirement pairs, installed only where the import fails.
pairs=("keras:keras>=3.5" "pandas:pandas" "jax:$JAX_PACKAGE")
if [[ " $* " != *" --backends "* || " $* " == *" tensorflow"* ]]; then
  pairs+=("tensorflow:$TF_PACKAGE")
fi
missing=()
for pair in "${pairs[@]}"; do
  module=${pair%%:*}
  requirement=${pair#*:}
  "$PY" -c "import $module" 2>/dev/null || missing+=("$requirement")
done
if ! "$PY" -c "import torch" 2>/dev/null; then
  # The CUDA build (PyPI's default wheel for Linux x86_64).
  missing+=("torch")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  "${PIP[@]}" "${missing[@]}"
fi

"$PY" - <<'PYEOF'
import importlib
for name in ("keras", "tensorflow", "jax", "torch"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:  # reported; gpu_readiness.py reports the backend
        print(f"{name}: not importable ({type(error).__name__}: {error})")
import torch
print("torch sees CUDA:", torch.cuda.is_available())
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" "$ROOT/benchmarks/gpu_readiness.py" "$@"
