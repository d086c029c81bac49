#!/usr/bin/env bash
# Prepare what bench/gpu_check.sh carries to a GPU machine that has torch, transformers, peft,
# accelerate and pandas but no network:
#   .whl/         TRL and datasets wheels (benchmark-only), and the wheels datasets needs that such an
#                 image may lack (pyarrow, dill, multiprocess, xxhash), for CPython 3.12 manylinux x86-64;
#   .gpu_assets/  the bundled SmolLM2 tokenizer (tokenizer files only, no weights).
# Both folders are git-ignored; carry them to the device run (about 60 MB in all):
#   bench/prepare_gpu_check.sh && <run on the GPU> bash bench/gpu_check.sh   (carry: .whl .gpu_assets)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PYVER=${GPU_PYTHON_VERSION:-3.12}
mkdir -p .whl .gpu_assets/smollm2
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .whl trl==1.16.0 datasets==5.2.0 "pyarrow>=24" "dill<0.4.2" "multiprocess<0.70.20" xxhash
TOK=$("$PY" -c "from sflib.generation import models; print(models.smollm2_path())")
for f in tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja; do
    [ -f "$TOK/$f" ] && cp "$TOK/$f" .gpu_assets/smollm2/
done
du -sh .whl .gpu_assets
ls .whl .gpu_assets/smollm2
