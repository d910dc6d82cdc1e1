#!/usr/bin/env bash
# Create .venv and install morphnas into it (editable), with the right PyTorch build first.
#
#   bash scripts/setup.sh          # package only
#   bash scripts/setup.sh dev      # package + test/lint tools
#
# PyTorch is installed BEFORE morphnas so that pip never swaps in a CUDA build on a machine without a GPU:
#  - torch already importable in .venv            -> kept as it is;
#  - a local torch==2.13.0 wheel (pip find-links)  -> used, offline;
#  - an NVIDIA GPU (nvidia-smi works)              -> the default PyPI build (CUDA);
#  - otherwise                                     -> the CPU build from PyTorch's CPU index.
# Override with TORCH_SPEC (e.g. "torch==2.13.0") and TORCH_INDEX_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
extras=${1:-}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  elif "${pip[@]}" download --no-index --no-deps -d "$wheels" "$TORCH_SPEC" 2>/dev/null; then
    # the wheel pins the build; its own dependencies (filelock, sympy, ...) come from the index
    "${pip[@]}" install "$wheels"/torch-*.whl
    echo "setup: installed $(basename "$wheels"/torch-*.whl) from a local wheel"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" install "$TORCH_SPEC"
  else
    "${pip[@]}" install "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu
  fi
fi

if [ "$extras" = dev ]; then
  "${pip[@]}" install -e ".[dev]"
else
  "${pip[@]}" install -e .
fi
"$VENV/bin/python" -c "import torch, morphnas; print(f'setup: morphnas {morphnas.__version__}, torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
