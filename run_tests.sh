#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite: unit tests of sflib and every
# notebook executed headlessly in quick mode. Extra arguments go to pytest (e.g. ./run_tests.sh -k data).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
