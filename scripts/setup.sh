#!/usr/bin/env bash
# Creates the virtualenv and installs ragbot with its dev tools. Used by `make`, CI and the Dockerfile.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
DEV=${DEV:-1}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
"${PIP[@]}" --upgrade pip >/dev/null
# torch first, pinned: on this kind of machine torch==2.13.0 is a CPU wheel on disk; a bare
# `torch` requirement would pull a multi-GB CUDA build. Elsewhere set TORCH_INDEX_URL to
# https://download.pytorch.org/whl/cpu to get the CPU build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" "torch==${TORCH_VERSION:-2.13.0}" --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" "torch==${TORCH_VERSION:-2.13.0}"
  fi
fi
# TORCH_ONLY=1 stops here: the Dockerfile caches torch in its own layer before copying the code.
if [ "${TORCH_ONLY:-0}" = "1" ]; then
  exit 0
fi
if [ "$DEV" = "1" ]; then
  "${PIP[@]}" -e ".[dev]"
else
  "${PIP[@]}" .
fi
