"""The study folder: one sub-folder per stage with its outputs and a ``manifest.json``.

``<outputs>/studies/<name>/<NN_stage>/`` holds the stage's tables (JSONL), files and the manifest:
stage, the hash of the study sections the stage depends on, its inputs and the hashes of their
manifests, judge / policy, sflib version, time, counts. :meth:`Study.read` refuses a missing stage
(:class:`StageMissing`, naming the notebook to run) and a stale one (:class:`StaleStage`: the study
file or an input changed since the stage was written) — outputs are never silently mixed.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from .. import io as sfio
from ..core import data as d
from ..core.paths import outputs_dir, root
from ..feedback.store import canonical_json
from .config import STAGES, StudyConfig, StudyConfigError, load_config, resolve_path
from .stage_files import commit_staged, fingerprint, sha256_hex, write_staged

#: stage -> (notebook, folder, default table)
STAGE_INFO = {
    "responses": ("01_generate", "01_responses", "responses"),
    "ratings": ("02_ratings", "02_ratings", "ratings"),
    "rankings": ("03_rankings", "03_rankings", "rankings"),
    "consistency": ("04_consistency", "04_consistency", "pairs"),
    "reward_models": ("05_reward_models", "05_reward_models", "metrics"),
    "best_of_n": ("06_best_of_n", "06_best_of_n", "samples"),
    "evaluation": ("07_evaluation", "07_evaluation", "judgments"),
}
#: the study sections each stage depends on, upstream ones included
_OWN = {"responses": ["seed", "instructions", "policy"], "ratings": ["feedback"], "rankings": ["feedback"],
        "consistency": [], "reward_models": ["reward_models"], "best_of_n": ["best_of_n"],
        "evaluation": ["evaluation"]}
UPSTREAM = {"responses": [], "ratings": ["responses"], "rankings": ["responses"],
            "consistency": ["ratings", "rankings"], "reward_models": ["ratings", "rankings"],
            "best_of_n": ["reward_models"], "evaluation": ["best_of_n"]}
MANIFEST = "manifest.json"


def _chain(stage: str) -> list[str]:
    seen: list[str] = []
    for up in UPSTREAM[stage]:
        seen += [s for s in _chain(up) if s not in seen]
    return seen + [stage]


def stage_sections(stage: str) -> list[str]:
    """The study sections whose change makes ``stage``'s output stale (upstream stages' included)."""
    out: list[str] = []
    for s in _chain(stage):
        out += [x for x in _OWN[s] if x not in out]
    return out


class StudyError(Exception):
    """A study folder problem with a message for the user."""


class StageMissing(StudyError, FileNotFoundError):
    """The stage has no output yet."""


class StaleStage(StudyError):
    """The stage's output was made from a different study file or different inputs."""


def _run_hint(study: "Study", stage: str) -> str:
    nb = STAGE_INFO[stage][0]
    return f"run {nb} first (python -m sflib study run {study.spec} --only {nb[:2]})"


def _sflib_version() -> str:
    try:
        from importlib.metadata import version

        return version("sflib")
    except Exception:
        return "unknown"


#: the stages that ask a policy or a judge: their failed items are requests a re-run asks again
REQUESTING_STAGES = ("responses", "ratings", "rankings", "best_of_n", "evaluation")


def retryable_failures(manifest: Mapping | None) -> int:
    """How many of a stage's items failed in a way a re-run can fix: its manifest's ``counts.failed``
    in a stage that sends requests (:data:`REQUESTING_STAGES`), less the items the paper's recorded run
    has no answer for (no re-run can give them); 0 for a human judge, whose unanswered items wait for
    the annotators (the runner says so), and for the stages computed here (04; 05 only for the judge calls of
    ``reward_models.protocols`` that failed: ``counts.protocol_calls_failed``)."""
    m = manifest or {}
    counts = m.get("counts") or {}
    if m.get("stage") == "reward_models":  # 05 asks the judge only for reward_models.protocols
        return int(counts.get("protocol_calls_failed") or 0)
    if m.get("stage") not in REQUESTING_STAGES or str(m.get("judge") or "").startswith("human:"):
        return 0
    failed = int(counts.get("failed") or 0)
    never = sum(int(c) for r, c in (counts.get("reasons") or {}).items() if str(r).startswith("not recorded"))
    return max(failed - never, 0)


class Study:
    """A validated study file and its folder (see :func:`sflib.study.load`)."""

    def spec_for_manifest(self) -> str | None:
        """The study file as a manifest records it: relative to the repository when it is inside it, else its
        file name (a manifest travels with the outputs folder; no absolute path of this machine)."""
        if not self.path:
            return None
        try:
            return Path(self.path).resolve().relative_to(root().resolve()).as_posix()
        except ValueError:
            return Path(self.path).name

    def __init__(self, config: StudyConfig, path: Path | None = None, spec: str | None = None):
        self.config = config
        self.path = path
        self.spec = spec or (str(path) if path else config.name)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def folder(self) -> Path:
        return outputs_dir() / "studies" / self.name

    @property
    def store_path(self) -> Path:
        """The annotation store judges cache into (shared by studies, so nothing is paid twice)."""
        return outputs_dir() / "annotations.sqlite"

    def __repr__(self) -> str:
        return f"Study({self.name!r}, folder={str(self.folder)!r})"

    # ------------------------------------------------------------------------- hashes
    def hash(self, section: str | Iterable[str] | None = None) -> str:
        """sha256 of the whole validated config, or of one section / several sections."""
        full = self.config.model_dump(mode="json")
        if section is None:
            payload = full
        elif isinstance(section, str):
            payload = full[section]
        else:
            payload = {s: full[s] for s in section}
        return sha256_hex(canonical_json(payload).encode("utf-8"))

    def stage_hash(self, stage: str) -> str:
        """The hash of what ``stage`` depends on: its sections and which upstream stages are seeded."""
        self._check_stage(stage)
        seeded = sorted(s for s in _chain(stage) if s in self.config.seeded_from_data)
        full = self.config.model_dump(mode="json")
        payload = {s: full[s] for s in stage_sections(stage)}
        payload["seeded_from_data"] = seeded
        hub = full.get("seeded_from_hub")
        if hub and any(st in hub["stages"] for st in seeded):  # another Hub revision: another output
            payload["seeded_from_hub"] = hub
        return sha256_hex(canonical_json(payload).encode("utf-8"))

    def data_files(self, stage: str) -> dict[str, str | None]:
        """The data files the study file names for ``stage`` and its upstream stages (instruction files,
        evaluation set, reference) -> their fingerprint (None: missing): an edited file makes the stage stale."""
        cfg, chain = self.config, _chain(stage)
        named = list(cfg.instructions.paths) if "responses" in chain else []
        if "best_of_n" in chain:
            named += [p for p in (cfg.best_of_n.reference, cfg.best_of_n.instructions) if p]
        base = self.path.parent if self.path else Path.cwd()
        found = {p: resolve_path(p, base) for p in named}
        return {p: fingerprint(f) if f.exists() else None for p, f in found.items()}

    # ------------------------------------------------------------------------- folders
    @staticmethod
    def _check_stage(stage: str) -> None:
        if stage not in STAGE_INFO:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")

    def stage_dir(self, stage: str) -> Path:
        self._check_stage(stage)
        return self.folder / STAGE_INFO[stage][1]

    def manifest_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / MANIFEST

    def manifest(self, stage: str) -> dict | None:
        """The stage's manifest, or None when the stage has not been written."""
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def manifest_hash(self, stage: str) -> str | None:
        path = self.manifest_path(stage)
        return sha256_hex(path.read_bytes()) if path.exists() else None

    # ------------------------------------------------------------------------- state
    def stale_reasons(self, stage: str) -> list[str]:
        """Why a written stage no longer matches the study file or its inputs (empty: up to date)."""
        m = self.manifest(stage)
        if m is None:
            return []
        reasons = []
        if m.get("study_hash") != self.stage_hash(stage):
            was = m.get("section_hashes") or {}
            changed = [s for s in stage_sections(stage) if s in was and was[s] != self.hash(s)]
            if changed:  # name what changed (manifests written before section_hashes: all of them)
                reasons.append(f"study section{'s' if len(changed) > 1 else ''} {', '.join(changed)} changed "
                               f"since it was written")
            else:
                reasons.append(f"the study sections it depends on ({', '.join(stage_sections(stage))}) "
                               f"changed since it was written")
        if "data_files" in m:  # manifests written before data files were recorded have none
            now = self.data_files(stage)
            for p, h in m["data_files"].items():  # a file no longer named: the sections changed (above)
                if p in now and now[p] != h:
                    reasons.append(f"the data file {p} was {'removed' if now[p] is None else 'edited'} since "
                                   "it was written")
        for up, h in (m.get("inputs") or {}).items():
            now = self.manifest_hash(up) if up in STAGE_INFO else None
            if now != h:
                reasons.append(f"its input {up} was {'removed' if now is None else 'rewritten'} since")
        return reasons

    def state(self, stage: str) -> str:
        """``missing``, ``stale``, ``incomplete`` (written, with failed items a re-run can retry: see
        :func:`retryable_failures`), ``seeded`` or ``done``."""
        m = self.manifest(stage)
        if m is None:
            return "missing"
        if self.stale_reasons(stage):
            return "stale"
        if m.get("seeded_from"):
            return "seeded"
        return "incomplete" if retryable_failures(m) else "done"

    # ------------------------------------------------------------------------- write
    def save(self, stage: str, tables: Mapping[str, pd.DataFrame] | None = None, files: Iterable = (),
             counts: Mapping | None = None, inputs: Iterable[str] = (), judge: str | None = None,
             policy: str | None = None, notes: str | None = None, template_version: str | None = None,
             seeded_from: str | list[str] | None = None) -> Path:
        """Write the stage's tables (``<name>.jsonl``) and files, then its manifest; returns the stage folder.

        Every table is first written to a temporary file beside its target; only when all were
        written are they renamed into place, and the manifest is written last (atomically). A
        failure before that leaves the previous output and manifest untouched. ``files`` are
        paths already inside the stage folder, or paths elsewhere that are copied in.
        """
        self._check_stage(stage)
        tables = dict(tables or {})
        for name, df in tables.items():
            if not isinstance(df, pd.DataFrame):
                raise TypeError(f"save({stage!r}): table {name!r} must be a DataFrame, not {type(df).__name__}")
        inputs = list(inputs)
        for up in inputs:
            if self.manifest(up) is None:
                raise StageMissing(f"study {self.name}: cannot save {stage}: its input {up} has no output; "
                                   + _run_hint(self, up))
        out = self.stage_dir(stage)
        out.mkdir(parents=True, exist_ok=True)
        staged = write_staged(out, stage, tables, files)
        hashes = {target.name: fingerprint(tmp) for tmp, target in staged}
        for f in files:  # what the notebook wrote into the stage folder itself
            hashes.setdefault(Path(f).name, fingerprint(Path(f)))
        commit_staged(staged)
        listed = sorted({Path(f).name for f in files} | {f"{n}.jsonl" for n in tables})
        manifest = {
            "stage": stage, "notebook": STAGE_INFO[stage][0], "study": self.name,
            "study_file": self.spec_for_manifest(),
            "study_hash": self.stage_hash(stage), "sections": stage_sections(stage),
            "section_hashes": {s: self.hash(s) for s in stage_sections(stage)},
            "inputs": {up: self.manifest_hash(up) for up in inputs}, "data_files": self.data_files(stage),
            "judge": judge, "policy": policy, "template_version": template_version,
            "sflib_version": _sflib_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tables": {n: int(len(df)) for n, df in tables.items()}, "files": listed, "sha256": hashes,
            "columns": {n: [str(c) for c in df.columns] for n, df in tables.items()},
            "counts": dict(counts or {}), "notes": notes,
            # the mode it was computed in: the runner says (SFLIB_RUN_QUICK); by hand, the counts may
            "quick": {"1": True, "0": False}.get(os.environ.get("SFLIB_RUN_QUICK", ""), (counts or {}).get("quick")),
        }
        if seeded_from:
            manifest["seeded_from"] = seeded_from
        d.atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
        return out

    # ------------------------------------------------------------------------- read
    def check(self, stage: str) -> dict:
        """The stage's manifest after checking it exists and is current (seeding it if the study says so)."""
        self._check_stage(stage)
        if stage in self.config.seeded_from_data and (self.manifest(stage) is None or self.stale_reasons(stage)):
            from .seed import seed_stage

            seed_stage(self, stage, force=True)  # the released data is the same every time
        m = self.manifest(stage)
        if m is None:
            raise StageMissing(f"study {self.name}: stage {stage} has no output in {self.stage_dir(stage)}; "
                               + _run_hint(self, stage))
        reasons = self.stale_reasons(stage)
        if reasons:
            nb = STAGE_INFO[stage][0]
            raise StaleStage(f"study {self.name}: stage {stage} is stale: {'; '.join(reasons)}; re-run {nb} "
                             f"(python -m sflib study run {self.spec} --only {nb[:2]})")
        return m

    def path_of(self, stage: str, name: str) -> Path:
        """The path of a file of a current stage (``name`` with its suffix, e.g. ``report.json``)."""
        self.check(stage)
        path = self.stage_dir(stage) / name
        if not path.exists():
            raise StageMissing(f"study {self.name}: stage {stage} has no file {name} (it has: "
                               f"{', '.join(sorted(p.name for p in self.stage_dir(stage).iterdir()))})")
        return path

    def read(self, stage: str, table: str | None = None) -> pd.DataFrame:
        """A table of a current stage (default: its main table); see :class:`StageMissing` / :class:`StaleStage`."""
        self.check(stage)
        name = table or STAGE_INFO[stage][2]
        folder = self.stage_dir(stage)
        for suffix in (".jsonl", ".parquet"):
            if (folder / f"{name}{suffix}").exists():
                if (self.manifest(stage) or {}).get("tables", {}).get(name) == 0:  # saved empty, with its reason
                    return pd.DataFrame(columns=(self.manifest(stage) or {}).get("columns", {}).get(name, []))
                return sfio.read_table(folder / f"{name}{suffix}")
        if (folder / f"{name}.json").exists():
            return _read_json_table(folder / f"{name}.json")
        have = sorted(p.stem for p in folder.iterdir() if p.suffix in (".jsonl", ".parquet", ".json")
                      and p.name != MANIFEST)
        raise StageMissing(f"study {self.name}: stage {stage} has no table {name!r} (it has: {', '.join(have)})")


def _read_json_table(path: Path) -> pd.DataFrame:
    """A ``.json`` output as a table: AlpacaEval outputs, a list of records, or one object as one row."""
    obj = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and {"instruction", "output"} <= set(obj[0]):
        return sfio.read_model_outputs(path)[d.MODEL_OUTPUT_COLUMNS]
    if isinstance(obj, list):
        return pd.DataFrame.from_records(obj)
    return pd.json_normalize(obj) if isinstance(obj, dict) else pd.DataFrame({"value": [obj]})


def load(spec: str | os.PathLike = "paper") -> Study:
    """A :class:`Study` from a YAML path or a name in the repository's ``studies/`` folder."""
    text = str(spec)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = root() / "studies" / f"{text}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in (root() / "studies").glob("*.yaml")))
            raise StudyConfigError(f"{text}: no such study file, and no studies/{text}.yaml (studies: {known})")
    config = load_config(path)
    return Study(config, path.resolve(), spec=text)
