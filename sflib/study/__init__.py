"""A study: one YAML file (``studies/*.yaml``) plus one folder of outputs (``<outputs>/studies/<name>/``).

- :func:`load` -> :class:`Study` (``.name``, ``.config``, ``.folder``, ``.hash()``, ``.stage_dir()``,
  ``.save()``, ``.read()``); :class:`StageMissing`, :class:`StaleStage`;
- :func:`plan` / :func:`status` -> DataFrames; :func:`run` runs the notebooks with papermill;
- CLI: ``python -m sflib study plan|status|run STUDY``.
"""
from .config import STAGES, StudyConfig, StudyConfigError, load_config, validate
from .folder import STAGE_INFO, StageMissing, StaleStage, Study, StudyError, load, stage_sections
from .seed import seed, seed_stage

__all__ = ["STAGES", "STAGE_INFO", "StageMissing", "StaleStage", "Study", "StudyConfig", "StudyConfigError",
           "StudyError", "load", "load_config", "plan", "run", "seed", "seed_stage", "stage_sections", "status",
           "validate"]


def plan(study, **kwargs):
    from .planner import plan as _plan

    return _plan(study, **kwargs)


def status(study, **kwargs):
    from .planner import status as _status

    return _status(study, **kwargs)


def run(study, **kwargs):
    from .runner import run as _run

    return _run(study, **kwargs)
