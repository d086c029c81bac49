#!/usr/bin/env bash
# Run the whole study: every numbered notebook in order, headlessly, with papermill.
#
#   ./run_all.sh                              the embedded default (offline, recorded judge, bundled models)
#   ./run_all.sh --quick                      a smoke run: every notebook in its fast mode
#   ./run_all.sh -p judge openai:gpt-4o-mini  papermill parameters are passed to every notebook
#   ./run_all.sh --only 02,03                 only the notebooks whose number is listed
#
# The first run creates .venv (CPU torch first, then the rest and the bundled models); later runs
# skip that. Executed notebooks go to outputs/runs/<timestamp>/ (outputs/runs/latest points at the
# newest); the clean sources in notebooks/ are never touched. Figures go to figures/ as PNG and PDF.
# API keys are read from the environment (OPENAI_API_KEY, ...): never pass them with -p, since
# parameters are written into the executed notebooks.
set -euo pipefail
cd "$(dirname "$0")"

quick=False
only=""
params=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=True; shift ;;
    --only) only="${2:?--only needs a list such as 02,03}"; shift 2 ;;
    -p|--parameters|-r|--parameters_raw)
      [ $# -ge 3 ] || { echo "run_all.sh: $1 needs a name and a value" >&2; exit 2; }
      case "$2" in *key*|*KEY*|*token*|*TOKEN*|*secret*|*SECRET*|*password*)
        echo "run_all.sh: refusing parameter '$2': secrets come from the environment (e.g. OPENAI_API_KEY), never from parameters, which are saved in executed notebooks" >&2
        exit 2 ;;
      esac
      params+=("$1" "$2" "$3"); shift 3 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
done

./scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

stamp=$(date +%Y%m%d-%H%M%S)
run_dir="outputs/runs/$stamp"
mkdir -p "$run_dir"
ln -sfn "$stamp" outputs/runs/latest
timings="$run_dir/timings.tsv"
printf 'notebook\tseconds\n' > "$timings"
start_all=$(date +%s)

for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb")
  num=${name%%_*}
  if [ -n "$only" ] && [[ ",$only," != *",$num,"* ]]; then continue; fi
  echo "== $name (quick=$quick) ==" >&2
  t0=$(date +%s)
  set +e
  .venv/bin/papermill "$nb" "$run_dir/$name" --cwd notebooks --kernel python3 \
      -p quick "$quick" "${params[@]}" --progress-bar 2>&1 \
    | grep --line-buffered -v -E "Passed unknown parameter|^Input Notebook|^Output Notebook|Black is not installed|Executing notebook with kernel|running over TCP without encryption" >&2
  status=${PIPESTATUS[0]}
  set -e
  t1=$(date +%s)
  printf '%s\t%s\n' "$name" "$((t1 - t0))" >> "$timings"
  if [ "$status" -ne 0 ]; then
    echo "run_all.sh: $name failed after $((t1 - t0)) s; the executed copy with the error is $run_dir/$name" >&2
    exit "$status"
  fi
done

echo "== done in $(( $(date +%s) - start_all )) s: executed notebooks in $run_dir, figures in figures/ ==" >&2
column -t "$timings" >&2 || cat "$timings" >&2
