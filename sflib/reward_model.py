"""Stage 05: reward models trained on ratings or on rankings — the historical import path.

The code lives in the package :mod:`sflib.rm` (objectives, encoding, the model folder, forward
passes, scoring, training, held-out metrics, command line); this module re-exports its public
names so ``from sflib import reward_model as R; R.train_reward_model(...)`` keeps working.

Command line::

    python -m sflib train-rm --kind rankings --data feedback_rankings.csv --output outputs/reward_models/rankings
    python -m sflib score --rm outputs/reward_models/rankings --data model_outputs.json --output scored.jsonl
"""
from __future__ import annotations

from .prompts import PROMPT_FORMAT  # noqa: F401  (historical re-export)
from .rm import *  # noqa: F401,F403
from .rm import __all__  # noqa: F401
from .rm.cli import _cli_score, _cli_train  # noqa: F401
from .rm.encoding import _fit, _special_tokens  # noqa: F401
from .rm.folder import _quiet_transformers  # noqa: F401
from .rm.objectives import _require_columns  # noqa: F401
from .rm.training import _dataset, _trainer_class  # noqa: F401
from .rm.cli import _write_scored  # noqa: F401,E402
from .rm.metrics import _score_unique  # noqa: F401,E402
from .rm.objectives import prepare as _prepare  # noqa: F401,E402
from .rm.training import RewardTrainer  # noqa: F401,E402  (a placeholder until _trainer_class() builds it)
