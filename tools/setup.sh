#!/usr/bin/env bash
# Create (if missing) and update the her2mri virtual environment at ./.venv.
#
# Runs the one install line that works (torch and torchvision pinned on the same pip command line, see
# ../shared/docs/stack.md); a no-op when nothing changed. With CI=true (or HER2MRI_VENV_DIR set) the venv lives
# outside the clone, under ~/.cache/her2mri/, keyed by a hash of pyproject.toml, and ./.venv is a link to it, so
# repeated fresh clones do not each build a 6 GB environment.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
EXTRAS=${HER2MRI_EXTRAS:-dev,all}
if [[ "${CI:-}" == "true" || -n "${HER2MRI_VENV_DIR:-}" ]]; then
  key=$(sha256sum pyproject.toml | cut -c1-12)
  target=${HER2MRI_VENV_DIR:-$HOME/.cache/her2mri/venv-$key}
  mkdir -p "$(dirname "$target")"
  [[ -x "$target/bin/python" ]] || "$PY" -m venv "$target"
  if [[ -L .venv || ! -e .venv ]]; then ln -sfn "$target" .venv; fi
else
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
fi

echo "[her2mri setup] installing into $(readlink -f .venv) (a no-op when nothing changed) ..." >&2
.venv/bin/python -m pip install -q --disable-pip-version-check \
  torch==2.14.1 torchvision==0.29.1 -e ".[${EXTRAS}]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "[her2mri setup] ready: $(.venv/bin/python -c 'import torch, her2mri; print("torch", torch.__version__, "her2mri", her2mri.__version__)')" >&2
