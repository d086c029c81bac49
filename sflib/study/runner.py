"""Run a study: the numbered notebooks in order, headlessly, with papermill.

Every notebook gets ``-p study <study file>`` and ``-p quick <bool>`` plus the caller's parameters.
Executed copies go to ``<outputs>/runs/<stamp>/`` (``<outputs>/runs/latest`` points at the newest
run, with ``timings.tsv`` and the kernels' own stderr in ``kernel.log``) and to ``<study folder>/notebooks/``
(the latest executed copy of each).
With ``SFLIB_OUTPUTS`` set nothing is written under the repository: figures then go to
``<outputs>/figures`` unless ``SFLIB_FIGURES`` says otherwise.

With ``skip_done`` (``--skip-done``) a notebook whose stage is written and current (state ``done``,
written in the same mode, quick or not) is not run again (an ``incomplete`` stage, with failed items
a re-run can retry, is run again and asks only for what is missing): a re-run after a crash, an added
instruction or a changed section recomputes only what is missing or stale (the reward models are
not retrained). Notebook 09 is skipped when what it wrote is current with 01-03 and the ``feedback``
section (:func:`sflib.protocols.study.state`). Notebooks 00 and 08 have no stage and always run.

Before each notebook the budget is checked: dollars already spent on the study's judges (the
annotation store) + the stage's planned cost must not exceed ``budget_usd``, else the run stops
before that notebook with :class:`BudgetExceeded`. A failing notebook stops the run with
:class:`NotebookFailed`, naming its executed copy. A stage left ``incomplete`` is named in
:attr:`RunResult.incomplete` (``study run`` then exits 3).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..core.paths import outputs_dir, root
from .folder import STAGE_INFO, Study, StudyError, load
from .seed import seed

#: notebook number -> stage key
NOTEBOOK_STAGE = {info[0][:2]: stage for stage, info in STAGE_INFO.items()}
#: plan stages that are not study stages (no manifest), by their notebook: checked against the budget too
PLAN_ONLY_STAGES = {"protocols": "09_protocols"}
NOTEBOOK_PLAN_STAGE = {nb[:2]: stage for stage, nb in PLAN_ONLY_STAGES.items()}
SECRET = re.compile(r"key|token|secret|password", re.IGNORECASE)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class _QuietUnknownParameters(logging.Filter):
    """Every notebook gets ``study`` and ``quick``; papermill's warning about a notebook without them is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Passed unknown parameter")


class BudgetExceeded(StudyError):
    """The next stage's planned cost would take the study over its budget."""


class NotebookFailed(StudyError):
    """A notebook raised; ``.path`` is its executed copy."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass
class RunResult:
    run_dir: Path
    executed: list[Path] = field(default_factory=list)
    timings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["notebook", "seconds"]))
    #: stage -> one line on its failed items, for every stage this run left incomplete
    incomplete: dict[str, str] = field(default_factory=dict)


def incomplete_line(study: Study, stage: str) -> str:
    """``"01_responses: 24 of 24 items failed (Connection error: 24)"`` from the stage's manifest."""
    from .folder import retryable_failures

    m = study.manifest(stage) or {}
    counts = m.get("counts") or {}
    reasons = {r: c for r, c in (counts.get("reasons") or {}).items() if not str(r).startswith(("not recorded",
                                                                                                "empty response"))}
    why = "; ".join(f"{r}: {c}" for r, c in list(reasons.items())[:2])
    return (f"{STAGE_INFO[stage][0]} ({stage}): {retryable_failures(m)} of {counts.get('n') or counts.get('failed')} "
            f"items failed" + (f" ({why})" if why else ""))


def parse_only(only: str | Iterable[str] | None) -> set[str] | None:
    """``"02,03"`` or ``["2", "03"]`` -> ``{"02", "03"}``; None: every notebook."""
    if only is None:
        return None
    parts = only.split(",") if isinstance(only, str) else list(only)
    out = set()
    for p in parts:
        p = str(p).strip()
        if not p:
            continue
        if not p.isdigit():
            raise ValueError(f"--only: expected notebook numbers such as 02,03, got {p!r}")
        out.add(f"{int(p):02d}")
    return out


def check_params(params: Mapping[str, object]) -> None:
    """Refuse parameters that look like secrets: parameters are written into the executed notebooks."""
    for name in params:
        if SECRET.search(str(name)):
            raise ValueError(f"refusing parameter {name!r}: secrets come from the environment (e.g. "
                             "OPENAI_API_KEY), never from parameters, which are saved in executed notebooks")


def notebooks(folder: Path | None = None, only=None) -> list[Path]:
    folder = Path(folder) if folder else root() / "notebooks"
    wanted = parse_only(only)
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if wanted is not None:
        unknown = wanted - {p.name[:2] for p in found}
        if unknown:
            raise ValueError(f"--only: no notebook numbered {', '.join(sorted(unknown))} in {folder}")
        found = [p for p in found if p.name[:2] in wanted]
    return found


def _new_run_dir() -> Path:
    runs = outputs_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = runs / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = runs / f"{stamp}-{n}"
    run_dir.mkdir()
    tmp = runs / f".latest.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, runs / "latest")  # relative link: the outputs folder can move
    return run_dir


@contextlib.contextmanager
def _environment():
    """The offline variables, and figures under the outputs folder when SFLIB_OUTPUTS is set."""
    saved = dict(os.environ)
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    for k in ("SFLIB_OUTPUTS", "SFLIB_FIGURES", "SFLIB_ROOT", "SFLIB_CACHE", "SFLIB_PRICES"):
        if os.environ.get(k):  # the notebooks run in notebooks/: a relative path would point elsewhere
            os.environ[k] = str(Path(os.environ[k]).expanduser().resolve())
    if os.environ.get("SFLIB_OUTPUTS") and not os.environ.get("SFLIB_FIGURES"):
        os.environ["SFLIB_FIGURES"] = str(outputs_dir() / "figures")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def budget_check(study: Study, stage: str | None, plan_df: pd.DataFrame, log=print) -> None:
    """Raise :class:`BudgetExceeded` if spent + the stage's planned cost exceeds ``budget_usd``.

    ``stage`` is a plan stage: a study stage, or ``protocols`` (notebook 09's extra protocols)."""
    budget = study.config.budget_usd
    if budget is None or stage is None:
        return
    from .planner import spent, stage_cost

    cost = stage_cost(plan_df, stage)
    nb = STAGE_INFO[stage][0] if stage in STAGE_INFO else PLAN_ONLY_STAGES.get(stage, stage)
    if math.isnan(cost):
        names = ", ".join(sorted(set(plan_df.loc[(plan_df["stage"] == stage) & plan_df["usd"].isna(), "name"])))
        raise BudgetExceeded(f"study {study.name}: stopping before {nb}: the price of {names} is unknown, so the "
                             f"budget of ${budget:.2f} cannot be checked; give the price in the judge/policy "
                             "file or SFLIB_PRICES, or remove budget_usd")
    already = spent(study)
    if already + cost > budget + 1e-12:
        raise BudgetExceeded(f"study {study.name}: stopping before {nb}: spent ${already:.2f} + planned "
                             f"${cost:.2f} for stage {stage} would exceed budget_usd ${budget:.2f} "
                             f"(see python -m sflib study plan {study.spec}; raise budget_usd to go on)")
    if cost > 0:
        log(f"budget: spent ${already:.2f} + planned ${cost:.2f} for {stage} <= ${budget:.2f}")


def waiting_for_humans(study: Study) -> str | None:
    """What a human feedback judge (``human:<name>``) still has to answer in stages 02/03, and what to do
    about it; None when every item has an answer (or no human judge wrote them)."""
    missing = []
    for stage, what in (("ratings", "ratings"), ("rankings", "pairs")):
        m = study.manifest(stage) or {}
        counts = m.get("counts") or {}
        if str(m.get("judge") or "").startswith("human:") and counts.get("valid", 0) < counts.get("n", 0):
            missing.append((m["judge"], f"{counts.get('valid', 0)} of {counts['n']} {what}"))
    if not missing:
        return None
    judge = missing[0][0]
    return (f"study {study.name}: {judge} has answered {' and '.join(w for _, w in missing)} so far (later "
            f"stages use only the answered items). Annotate in notebook 08 (jupyter lab notebooks/08_human_feedback.ipynb "
            f"with study = {_study_parameter(study)!r} and annotator = {judge.split(':', 1)[1]!r}, or sflib.human "
            f"from Python), then run python -m sflib study run {study.spec} again")


def _kernel_manager(log_path: Path):
    """A kernel manager whose kernel writes its own stderr (its startup warnings, the noise of a Ctrl-C)
    to ``log_path`` instead of the terminal: what a cell prints is in the executed notebook."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            log = open(log_path, "ab")  # the kernel process holds it open
            kw.setdefault("stderr", log)
            try:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            finally:
                log.close()  # the kernel has its own copy of the descriptor

    return LoggedKernelManager


def run(study: Study | str = "paper", only=None, quick: bool = False, params: Mapping[str, object] | None = None,
        notebooks_dir: Path | None = None, kernel: str = "python3", progress: bool = True, log=print,
        skip_done: bool = False) -> RunResult:
    """Run the study's notebooks in order (see the module notes); returns the run folder and timings."""
    import papermill as pm

    quiet = _QuietUnknownParameters()
    logging.getLogger("papermill").addFilter(quiet)
    try:
        return _run(pm, study, only, quick, params, notebooks_dir, kernel, progress, log, skip_done)
    finally:
        logging.getLogger("papermill").removeFilter(quiet)


def is_current(study: Study, stage: str | None, quick: bool) -> bool:
    """Whether ``stage`` is written, up to date with the study file and its inputs, and was written in the
    same mode (a quick smoke run's output does not stand in for a full one, nor the other way round)."""
    if stage is None or study.state(stage) != "done":
        return False
    m = study.manifest(stage) or {}
    mode = m.get("quick", (m.get("counts") or {}).get("quick"))
    return mode is not None and bool(mode) == bool(quick)  # a mode not recorded: run it again


def _protocols_current(study: Study, quick: bool) -> bool:
    from ..protocols.study import state

    return state(study, quick) == "done"


def _run(pm, study, only, quick, params, notebooks_dir, kernel, progress, log, skip_done=False) -> RunResult:
    params = dict(params or {})
    check_params(params)
    study = study if isinstance(study, Study) else load(study)
    nbs = notebooks(notebooks_dir, only)
    cwd = Path(notebooks_dir) if notebooks_dir else root() / "notebooks"
    with _environment():
        seeded = seed(study)
        if seeded:
            log(f"seeded {', '.join(seeded)} from data/canonical")
        from .planner import plan

        # the plan is needed only to check a budget (at 125k stored answers it takes seconds)
        plan_df = plan(study) if study.config.budget_usd is not None else None
        result = RunResult(run_dir=_new_run_dir())
        keep = study.folder / "notebooks"
        keep.mkdir(parents=True, exist_ok=True)
        if study.path:
            shutil.copyfile(study.path, result.run_dir / "study.yaml")
        timings = result.run_dir / "timings.tsv"
        timings.write_text("notebook\tseconds\n", encoding="utf-8")
        rows = []
        for nb in nbs:
            stage = NOTEBOOK_STAGE.get(nb.name[:2])
            if skip_done and is_current(study, stage, quick):
                log(f"== {nb.name}: stage {stage} is done and current, not run again (--skip-done) ==")
                rows.append({"notebook": nb.name, "seconds": 0.0})
                continue
            if skip_done and nb.name[:2] == "09" and _protocols_current(study, quick):
                log(f"== {nb.name}: its outputs are current with 01-03 and the feedback section, not run again "
                    "(--skip-done) ==")
                rows.append({"notebook": nb.name, "seconds": 0.0})
                continue
            budget_check(study, stage or NOTEBOOK_PLAN_STAGE.get(nb.name[:2]), plan_df, log)
            log(f"== {nb.name} (study={study.name}, quick={quick}) ==")
            out = result.run_dir / nb.name
            parameters = {"study": _study_parameter(study), "quick": bool(quick), **params}
            t0 = time.perf_counter()
            os.environ["SFLIB_RUN_QUICK"] = "1" if quick else "0"  # the kernel inherits it; Study.save records it
            error = None
            try:
                pm.execute_notebook(str(nb), str(out), parameters=parameters, cwd=str(cwd), kernel_name=kernel,
                                    progress_bar=progress,
                                    kernel_manager_class=_kernel_manager(result.run_dir / "kernel.log"))
            except pm.PapermillExecutionError as e:
                error = f"{e.ename}: {e.evalue}"
            seconds = time.perf_counter() - t0
            kept = keep / nb.name
            if out.exists():
                shutil.copyfile(out, kept)
                result.executed.append(kept)
            rows.append({"notebook": nb.name, "seconds": round(seconds, 1)})
            with open(timings, "a", encoding="utf-8") as f:
                f.write(f"{nb.name}\t{seconds:.0f}\n")
            if stage is not None and error is None and study.state(stage) == "incomplete":
                result.incomplete[stage] = incomplete_line(study, stage)
                log(f"== {nb.name}: stage {stage} is incomplete: {result.incomplete[stage]} ==")
            if error is not None:
                raise NotebookFailed(f"{nb.name} failed after {seconds:.0f} s ({error}); the executed copy with "
                                     f"the error is {kept}", kept)
        result.timings = pd.DataFrame(rows, columns=["notebook", "seconds"])
        log(f"== done: executed notebooks in {keep} and {result.run_dir} ==")
        waiting = waiting_for_humans(study)
        if waiting:
            log(waiting)
        return result


def _study_parameter(study) -> str:
    """How the notebooks are told the study: its name when the file is ``studies/<name>.yaml`` of this
    repository (no machine path in the executed notebooks), else the file's path."""
    path = Path(study.path) if study.path else None
    if path is None:
        return study.name
    shipped = (root() / "studies" / f"{path.stem}.yaml").resolve()
    return path.stem if path.resolve() == shipped else str(path)
