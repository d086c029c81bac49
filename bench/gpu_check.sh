#!/usr/bin/env bash
# Issue 14 on one H100/H200, in under 6 minutes, offline: packed = padded scores in fp32, scoring vs
# the original recipe, train_reward_model vs TRL's RewardTrainer (same init, data, batch, precision,
# epoch), sflib's ratings objective, LoRA + gradient checkpointing; results in
# bench/results/reward_model_cuda.json (and reward_model_cuda_flex.json: flex attention, if time allows).
#
# Needs only torch, transformers, peft, accelerate, pandas on the machine; TRL and datasets come from
# .whl/ and the SmolLM2 tokenizer from .gpu_assets/ (bench/prepare_gpu_check.sh makes both).
#   bash bench/gpu_check.sh           # on the GPU
#   bash bench/gpu_check.sh --tiny    # a CPU dry run of the same script (tiny model, a few texts)
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
PY=${PYTHON:-python3}
SITE=${SFLIB_BENCH_SITE:-/tmp/site}
[ -d .whl ] && ls .whl/trl-*.whl >/dev/null 2>&1 || { echo "no .whl/trl-*.whl: run bench/prepare_gpu_check.sh first" >&2; exit 2; }
mkdir -p "$SITE"
"$PY" -m pip install -q --no-index --no-deps --target "$SITE" .whl/trl-*.whl .whl/datasets-*.whl
# datasets' own dependencies, only where the image lacks them (and only wheels built for this Python)
# (pyarrow also where the image's is older than the 24 that datasets 5.2 needs)
for pair in pyarrow:pyarrow dill:dill multiprocess:multiprocess xxhash:xxhash; do
    mod=${pair%%:*}; whl=${pair##*:}
    check="import $mod"
    [ "$mod" = pyarrow ] && check="import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)"
    if ! "$PY" -c "$check" 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --target "$SITE" .whl/"$whl"-*.whl || echo "could not install $whl" >&2
    fi
done
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_DATASETS_OFFLINE=1
export SFLIB_CACHE=${SFLIB_CACHE:-/tmp/sflib_cache}
TOKARG=()
[ -f .gpu_assets/smollm2/tokenizer.json ] && TOKARG=(--tokenizer .gpu_assets/smollm2)
if [ "${1:-}" = "--tiny" ]; then
    "$PY" bench/reward_model.py --tiny --device cpu "${TOKARG[@]}" --out "${OUT:-/tmp}/reward_model_tiny.json"
    exit 0
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(), torch.__version__)"
"$PY" -c "import transformers, peft, accelerate; print('transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"
"$PY" bench/reward_model.py --device cuda "${TOKARG[@]}"
[ -n "${OUT:-}" ] && cp bench/results/reward_model_cuda.json "$OUT"/
ELAPSED=$(( $(date +%s) - START ))
echo "main run done in ${ELAPSED}s"
# flex attention (one packed row per batch, block-sparse mask) if at least 2.5 minutes remain of the 6
if [ "$ELAPSED" -lt 210 ]; then
    timeout $(( 350 - ELAPSED )) "$PY" bench/reward_model.py --device cuda "${TOKARG[@]}" --attention flex_attention \
        --skip-trl --skip-lora --out bench/results/reward_model_cuda_flex.json \
        && { [ -n "${OUT:-}" ] && cp bench/results/reward_model_cuda_flex.json "$OUT"/ || true; } \
        || echo "flex attention run did not finish in time (compilation); the sdpa results stand" >&2
fi
echo "gpu_check done in $(( $(date +%s) - START ))s"
