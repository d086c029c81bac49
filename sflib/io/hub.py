"""The paper's full released feedback, read from the Hugging Face Hub (``hbXNov/sparse_feedback``).

The authors published the GPT-3.5-Turbo feedback behind the paper's headline as a Hub dataset:

- ``absolute_gpt_3.5_turbo_score.csv`` (20.2 MB): ratings, the layout of the original
  ``llm_feedback_ratings.py`` (``instruction, input, output, score``, 1-7);
- ``relative_gpt_3.5_turbo_feedback.csv`` (53.4 MB): rankings, the layout of the original
  ``llm_feedback_rankings.py`` (``instruction, input, output1, output2, feedback`` with
  ``(a)`` / ``(b)`` / ``equal``);
- ``sample_relative_feedback_gpt3.5_turbo_with_trainval_split/``: the train/val files of the
  rankings reward model, the layout of the original ``convert_data_for_ranking_rm.py``
  (``{alpaca prompt: {"sentences": [[preferred, other], ...]}}``).

The vendored sample files in ``data/original/`` come from the same scripts, so the same readers
(:func:`sflib.io.read_ratings` / :func:`sflib.io.read_rankings`: with or without a header row,
the original quoting, ``nan`` inputs) map them to the canonical tables.

Files come through ``huggingface_hub.snapshot_download`` at a pinned revision into the Hub cache
(``HF_HUB_CACHE``, else ``$HF_HOME/hub``, read when called); with ``HF_HUB_OFFLINE=1`` only the cache
is read, and a missing file is one :class:`HubMissing` line saying what to download and where.
A study uses them through ``seeded_from_hub`` (``studies/paper_full.yaml``).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from ..core import data as d
from ..core.data import DataError

REPO = "hbXNov/sparse_feedback"
RATINGS_FILE = "absolute_gpt_3.5_turbo_score.csv"
RANKINGS_FILE = "relative_gpt_3.5_turbo_feedback.csv"
RM_SPLIT_DIR = "sample_relative_feedback_gpt3.5_turbo_with_trainval_split"
#: approximate download sizes, for ``study plan``
SIZES_MB = {RATINGS_FILE: 20.2, RANKINGS_FILE: 53.4}
JUDGE = "gpt-3.5-turbo (paper, Hub)"
POLICY = "alpaca-7b (paper, Hub)"
#: which files each seedable stage needs
STAGE_FILES = {"responses": [RATINGS_FILE, RANKINGS_FILE], "ratings": [RATINGS_FILE],
               "rankings": [RANKINGS_FILE, RM_SPLIT_DIR + "/*"]}
ALL_FILES = [RATINGS_FILE, RANKINGS_FILE, RM_SPLIT_DIR + "/*"]


class HubMissing(FileNotFoundError):
    """The released files are not in the Hub cache and cannot be downloaded (offline): one line saying
    what to download and where (the CLI prints it and exits 1)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def offline() -> bool:
    return str(os.environ.get("HF_HUB_OFFLINE", "")).strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """The Hub cache as the environment says now (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def download_command(repo: str, revision: str, patterns: list[str]) -> str:
    include = " ".join(f"--include '{p}'" for p in patterns)
    return f"hf download {repo} --repo-type dataset --revision {revision} {include} --cache-dir {cache_dir()}"


def fetch(patterns: list[str], repo: str = REPO, revision: str = "main") -> Path:
    """The local snapshot folder holding ``patterns`` (downloaded unless offline; the cache is reused)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", revision=revision, cache_dir=cache_dir(),
                                        allow_patterns=patterns, local_files_only=offline()))
    except (LocalEntryNotFoundError, OSError, ValueError) as e:  # offline, no network, unknown revision
        raise HubMissing(_missing(repo, revision, patterns, type(e).__name__)) from None
    for p in patterns:  # an offline snapshot folder may exist without these files
        if not (list(folder.glob(p)) if "*" in p else (folder / p).exists()):
            raise HubMissing(_missing(repo, revision, patterns, f"{p} not in {folder}"))
    return folder


def cached(filename: str, repo: str = REPO, revision: str = "main") -> bool:
    """Whether the Hub cache holds ``filename`` at ``revision`` (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir(), revision=revision,
                                             repo_type="dataset"), str)


def _missing(repo: str, revision: str, patterns: list[str], why: str) -> str:
    mode = "HF_HUB_OFFLINE=1" if offline() else "no network"
    return (f"the paper's released feedback {repo}@{revision} is not in the Hub cache {cache_dir()} ({mode}; {why}): "
            f"download it with `{download_command(repo, revision, ALL_FILES)}` (or set HF_HOME to a cache that has it)")


def resolved_revision(folder: Path) -> str:
    """The commit a snapshot folder holds (its name in the Hub cache)."""
    return Path(folder).name


# ----------------------------------------------------------------------------- the released layouts

def read_ratings(folder: Path) -> pd.DataFrame:
    from . import tables

    df = tables.read_ratings(Path(folder) / RATINGS_FILE)
    df["judge"] = JUDGE
    return df


def read_rankings(folder: Path) -> pd.DataFrame:
    from . import tables

    df = tables.read_rankings(Path(folder) / RANKINGS_FILE)
    df["judge"] = JUDGE
    return df


def responses_from_feedback(ratings: pd.DataFrame, rankings: pd.DataFrame) -> pd.DataFrame:
    """Every distinct response the released feedback is about (rated or ranked), in first-seen order."""
    parts = [ratings[["instruction_id", "response_id", "instruction", "input", "response"]]]
    for n, col in ((1, "response1"), (2, "response2")):
        parts.append(rankings[["instruction_id", f"response_id_{n}", "instruction", "input", col]]
                     .set_axis(["instruction_id", "response_id", "instruction", "input", "response"], axis=1))
    df = pd.concat(parts, ignore_index=True).drop_duplicates("response_id").reset_index(drop=True)
    df["generator"] = POLICY
    df["params"] = "{}"
    return df[d.RESPONSE_COLUMNS]


_ALPACA = re.compile(r"\A.*?### Instruction:\n(?P<instruction>.*?)(?:\n\n### Input:\n(?P<input>.*?))?"
                     r"\n\n### Response: ?\Z", re.S)


def split_alpaca_prompt(prompt: str) -> tuple[str, str]:
    """(instruction, input) from the original scripts' Alpaca prompt (the key of the RM files)."""
    m = _ALPACA.match(prompt)
    if m is None:
        raise ValueError("not an Alpaca prompt ('### Instruction:' ... '### Response:')")
    return m["instruction"], d.clean_input(m["input"])


def read_rm_split(folder: Path) -> pd.DataFrame:
    """The released train/val pairs of the rankings reward model as ranking rows: ``response1`` is the
    preferred response, ``decision`` ``a``, ``split`` ``train`` / ``val`` (from the file name)."""
    files = sorted((Path(folder) / RM_SPLIT_DIR).glob("*.json"))
    rows = []
    for path in files:
        split = "val" if re.search(r"val|test|dev", path.stem, re.I) else "train"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(path, f"not a JSON file of the original rankings-RM layout ({e})") from None
        if not isinstance(data, dict):
            raise DataError(path, "expected {alpaca prompt: {'sentences': [[preferred, other], ...]}}")
        for n, (prompt, entry) in enumerate(data.items(), 1):
            try:
                instruction, input = split_alpaca_prompt(prompt)
            except ValueError as e:
                raise DataError(path, str(e), row=n, field="prompt") from None
            pairs = entry.get("sentences") if isinstance(entry, dict) else None
            if not isinstance(pairs, list):
                raise DataError(path, "expected {'sentences': [[preferred, other], ...]}", row=n, field="sentences")
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise DataError(path, f"a pair must be [preferred, other], got {str(pair)[:60]!r}", row=n,
                                    field="sentences")
                rows.append(dict(instruction=instruction, input=input, response1=str(pair[0]),
                                 response2=str(pair[1]), decision="a", split=split))
    if not rows:
        raise DataError(Path(folder) / RM_SPLIT_DIR, "no train/val pairs (*.json) in the released folder")
    df = d.add_ids(pd.DataFrame(rows))
    return df[d.RANKING_COLUMNS + ["split"]]


# ----------------------------------------------------------------------------- a study's seeded stages

def stage_tables(stage: str, repo: str = REPO, revision: str = "main") -> tuple[dict[str, pd.DataFrame], list[str], str]:
    """(tables, sources, note) of a study stage seeded from the Hub: ``responses``, ``ratings`` or
    ``rankings`` (with the released reward-model split as the table ``rm_split``)."""
    if stage not in STAGE_FILES:
        raise ValueError(f"stage {stage!r} cannot be seeded from the Hub (only {', '.join(STAGE_FILES)})")
    folder = fetch(STAGE_FILES[stage], repo, revision)
    at = f"{repo}@{resolved_revision(folder)}"
    if stage == "ratings":
        df = read_ratings(folder)
        return {"ratings": df}, [f"hf://datasets/{at}/{RATINGS_FILE}"], \
            f"the paper's released GPT-3.5-Turbo ratings ({len(df):,} rows) from {at}"
    if stage == "rankings":
        df, split = read_rankings(folder), read_rm_split(folder)
        return {"rankings": df, "rm_split": split}, [f"hf://datasets/{at}/{RANKINGS_FILE}",
                                                     f"hf://datasets/{at}/{RM_SPLIT_DIR}"], \
            (f"the paper's released GPT-3.5-Turbo rankings ({len(df):,} rows) and the rankings-RM train/val "
             f"split ({(split['split'] == 'train').sum():,} / {(split['split'] == 'val').sum():,} pairs) from {at}")
    df = responses_from_feedback(read_ratings(folder), read_rankings(folder))
    return {"responses": df}, [f"hf://datasets/{at}/{RATINGS_FILE}", f"hf://datasets/{at}/{RANKINGS_FILE}"], \
        f"the Alpaca-7B responses the released feedback is about ({len(df):,} distinct) from {at}"
