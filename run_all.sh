#!/usr/bin/env bash
# Run a whole study: every numbered notebook in order, headlessly, with papermill.
#
#   ./run_all.sh                                  the paper's study (studies/paper.yaml): offline, recorded judge
#   ./run_all.sh --study studies/example.yaml     your own study (see studies/example.yaml)
#   ./run_all.sh --quick                          a smoke run: every notebook in its fast mode
#   ./run_all.sh -p judge openai:gpt-4o-mini      papermill parameters are passed to every notebook
#   ./run_all.sh --only 02,03                     only the notebooks whose number is listed
#   ./run_all.sh --study S --skip-done            do not run again the stages that are done and current
#
# The first run creates .venv (CPU torch first, then the rest and the bundled models); later runs
# skip that. It then runs `python -m sflib study run STUDY`: executed notebooks go to
# <outputs>/studies/<name>/notebooks/ and <outputs>/runs/<timestamp>/ (<outputs>/runs/latest points
# at the newest; <outputs> = $SFLIB_OUTPUTS or ./outputs); with SFLIB_OUTPUTS set nothing is written
# under the repository. The run stops before a stage whose planned cost would exceed the study's
# budget_usd (see `python -m sflib study plan STUDY`). The clean sources in notebooks/ are never touched.
# API keys are read from the environment (OPENAI_API_KEY, ...): never pass them with -p, since
# parameters are written into the executed notebooks.
set -euo pipefail
cd "$(dirname "$0")"

study=studies/paper.yaml
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --study) study="${2:?--study needs a study file such as studies/example.yaml}"; shift 2 ;;
    --quick) args+=(--quick); shift ;;
    --only) args+=(--only "${2:?--only needs a list such as 02,03}"); shift 2 ;;
    --skip-done) args+=(--skip-done); shift ;;
    -p|--parameters|-r|--parameters_raw)
      [ $# -ge 3 ] || { echo "run_all.sh: $1 needs a name and a value" >&2; exit 2; }
      case "$2" in *key*|*KEY*|*Key*|*token*|*TOKEN*|*Token*|*secret*|*SECRET*|*Secret*|*password*|*PASSWORD*)
        echo "run_all.sh: refusing parameter '$2': secrets come from the environment (e.g. OPENAI_API_KEY), never from parameters, which are saved in executed notebooks" >&2
        exit 2 ;;
      esac
      args+=(-p "$2" "$3"); shift 3 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
done
[ -f "$study" ] || [ -f "studies/$study.yaml" ] || { echo "run_all.sh: no study file '$study' (see studies/)" >&2; exit 2; }

./scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

start_all=$(date +%s)
.venv/bin/python -m sflib study run "$study" "${args[@]}"
echo "== done in $(( $(date +%s) - start_all )) s ==" >&2
