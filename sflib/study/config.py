"""The study file: a YAML document validated against the schema below (pydantic, unknown keys refused).

Every problem is ONE :class:`StudyConfigError` naming the file and the key path, e.g.
``studies/x.yaml: feedback.judge: unknown judge 'gtp-4o' ...`` — an unknown key, a wrong type, a
missing file, an unknown judge or policy name.

Relative paths in a study file are resolved against the study file's folder first, then against
the repository root (so ``data/original/...`` works from ``studies/*.yaml``). Judge and policy files
named in it are found relative to the current folder, then beside the study file (a YAML path, or a
config name in the study folder's ``judges/`` / ``policies/``), then among the shipped configs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from ..core.paths import root, templates_dir

#: stage keys in pipeline order
STAGES = ("responses", "ratings", "rankings", "consistency", "reward_models", "best_of_n", "evaluation")
#: stages whose outputs the paper released (``seeded_from_data`` may name them)
SEEDABLE = ("responses", "ratings", "rankings", "best_of_n", "evaluation")
PROTOCOLS = ("rating", "ranking")
PAPER_DATASETS = ["helpful_base", "koala", "oasst", "vicuna"]


class StudyConfigError(ValueError):
    """A study file that cannot be used; the message names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Instructions(_Model):
    """Where the instructions come from and which of them the study uses."""
    paths: list[str] = Field(default_factory=list, description="JSON/JSONL/CSV files or local HF dataset folders; "
                             "empty: the vendored SuperNI instructions")
    split: str = "train"
    sample: Optional[int] = Field(None, ge=1, description="a random sample of this many (None: all)")
    max_chars: Optional[int] = Field(None, ge=1, description="only instructions whose instruction + input is at most this long")


class Policy(_Model):
    """The policy that writes the k feedback responses per instruction."""
    name: str = "local:smollm2"
    k: int = Field(5, ge=2)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    prompt_style: Literal["chat", "alpaca"] = "chat"


class Feedback(_Model):
    """The feedback judge(s) for ratings and rankings."""
    judge: str = "recorded"
    extra_judges: list[str] = Field(default_factory=list)
    both_orders: bool = True
    rating_template: str = "rating_v1"
    ranking_template: str = "ranking_v1"
    mode: Literal["online", "batch"] = "online"   # batch: the provider's Batch API (half price, resumable)
    verdicts: Literal["hard", "soft"] = "hard"    # soft: logprob-weighted verdicts where the judge returns them
    # the feedback protocols notebook 09 collects and compares (sflib.protocols); None: the paper's two.
    # Excluded from the study hash: it changes only stage 09, never 02/03's outputs.
    protocols: Optional[list[str]] = Field(None, exclude=True, min_length=1)


class RewardModels(_Model):
    backbone: str = "minilm"
    lora: bool = False
    epochs: int = Field(2, ge=1)
    max_length: int = Field(256, ge=16)
    batch_size: int = Field(8, ge=1)
    learning_rate: Optional[float] = Field(None, gt=0)
    val_fraction: float = Field(0.25, gt=0, lt=1)
    # more reward models, one per feedback protocol (sflib.rm.protocols): e.g. [pairwise-5way, listwise-k, rubric];
    # each is then a name best_of_n.reward_models and evaluation.policies may use. Empty (the default): only the
    # ratings and rankings RMs, and the section hashes as it did before the option existed.
    protocols: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if not self.protocols:  # the default leaves the study hash (and every stage written before) unchanged
            out.pop("protocols", None)
        return out


class BestOfN(_Model):
    """Best-of-n on the evaluation instructions, one selection per reward model."""
    policy: Optional[str] = Field(None, description="None: the feedback policy")
    n: int = Field(64, ge=1)
    instructions: Optional[str] = Field(None, description="AlpacaEval-layout file whose instructions are used; "
                                        "None: the reference outputs' instructions")
    reference: Optional[str] = Field(None, description="reference outputs (AlpacaEval layout); None: the vendored "
                                     "text-davinci-003 outputs")
    datasets: Optional[list[str]] = Field(default_factory=lambda: list(PAPER_DATASETS))
    sample: Optional[int] = Field(None, ge=1)
    max_chars: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    # ratings, rankings, or a protocol of reward_models.protocols
    reward_models: list[str] = Field(default_factory=lambda: ["ratings", "rankings"])


class Evaluation(_Model):
    judge: str = "recorded"
    mode: Literal["online", "batch"] = "online"
    verdicts: Literal["hard", "soft"] = "hard"
    protocols: list[Literal["rating", "ranking"]] = Field(default_factory=lambda: list(PROTOCOLS), min_length=1)
    policies: list[str] = Field(default_factory=lambda: ["ratings", "rankings"],
                                description="best-of-n outputs to evaluate, by reward model (ratings, rankings "
                                "or a protocol of reward_models.protocols)")


class HubSource(_Model):
    """Stages read from the paper's released feedback on the Hugging Face Hub (:mod:`sflib.io.hub`)."""
    repo: str = "hbXNov/sparse_feedback"
    revision: str = Field("main", description="a commit hash pins the files; the manifest records the one read")
    stages: list[Literal["responses", "ratings", "rankings"]] = Field(
        default_factory=lambda: ["responses", "ratings", "rankings"], min_length=1)


class StudyConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 0
    budget_usd: Optional[float] = Field(None, ge=0, description="stop before planned + spent would exceed it")
    seeded_from_data: list[Literal[SEEDABLE]] = Field(  # type: ignore[valid-type]
        default_factory=list, description="stages copied from the paper's released data in data/canonical")
    seeded_from_hub: Optional[HubSource] = Field(
        None, description="seeded_from_data stages read from the Hub instead of data/canonical")
    instructions: Instructions = Field(default_factory=Instructions)
    policy: Policy = Field(default_factory=Policy)
    feedback: Feedback = Field(default_factory=Feedback)
    reward_models: RewardModels = Field(default_factory=RewardModels)
    best_of_n: BestOfN = Field(default_factory=BestOfN)
    evaluation: Evaluation = Field(default_factory=Evaluation)


# ----------------------------------------------------------------------------- judge / policy names

def _resolve(kind: str, name: str) -> dict:
    """The settings of a judge or policy name (``kind`` "judge" or "policy"): :func:`sflib.judges.config.resolve`,
    plus the two names only a study uses: the policy ``recorded`` (responses seeded from the released
    data, never sampled) and ``human:<annotator>`` judges (answers typed in notebook 08). Raises
    ``ValueError`` for an unknown name."""
    from ..judges.config import resolve

    provider, _, rest = str(name).strip().partition(":")
    if (kind == "policy" and provider == "recorded" and not rest) or (kind == "judge" and provider == "human" and rest):
        return dict(provider=provider, model=rest or provider, name=str(name).strip(), base_url=None,
                    base_url_env=None, concurrency=None, rpm=None, tpm=None, timeout=None, temperature=None,
                    max_tokens=None, template=None, price_input_per_mtok=0.0, price_output_per_mtok=0.0)
    return resolve(kind, name)


# ----------------------------------------------------------------------------- loading

def resolve_path(value: str, base: Path) -> Path:
    """``value`` as a path: absolute, else relative to ``base`` (the study file's folder), else to the repo root."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    for folder in (base, root()):
        if (folder / p).exists():
            return folder / p
    return base / p


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("literal[", "function-")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(loc: tuple) -> list[str]:
    model: Any = StudyConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _message(file: str, err: dict) -> str:
    loc = tuple(err.get("loc", ()))
    where = _loc_text(loc)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc)
        return f"{file}: {where}: unknown key (allowed here: {', '.join(allowed)})"
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{file}: {where}: {err['msg']}{got_text}"


def _check_names(cfg: StudyConfig, file: str) -> None:
    checks: list[tuple[str, str, str | None]] = [
        ("policy", "policy.name", cfg.policy.name), ("judge", "feedback.judge", cfg.feedback.judge),
        ("policy", "best_of_n.policy", cfg.best_of_n.policy), ("judge", "evaluation.judge", cfg.evaluation.judge)]
    checks += [("judge", f"feedback.extra_judges[{i}]", j) for i, j in enumerate(cfg.feedback.extra_judges)]
    for kind, where, name in checks:
        if name is None:
            continue
        try:
            _resolve(kind, name)
        except Exception as e:  # whatever the resolver raises, the user gets one line naming file and key
            raise StudyConfigError(f"{file}: {where}: {e}") from None


def _check_files(cfg: StudyConfig, file: str, base: Path) -> None:
    items = [(f"instructions.paths[{i}]", p) for i, p in enumerate(cfg.instructions.paths)]
    items += [("best_of_n.instructions", cfg.best_of_n.instructions), ("best_of_n.reference", cfg.best_of_n.reference)]
    for where, value in items:
        if value is not None and not resolve_path(value, base).exists():
            raise StudyConfigError(f"{file}: {where}: file not found: {value} (relative paths are read from "
                                   f"{base} or the repository root {root()})")
    for i, name in enumerate(cfg.feedback.protocols or []):
        from ..protocols import ProtocolError, get_protocol

        try:
            get_protocol(name)
        except ProtocolError as e:
            raise StudyConfigError(f"{file}: feedback.protocols[{i}]: {e}") from None
    _check_rm_names(cfg, file)
    for where, name in (("feedback.rating_template", cfg.feedback.rating_template),
                        ("feedback.ranking_template", cfg.feedback.ranking_template)):
        for suffix in ("", "_system"):
            if not (templates_dir() / f"{name}{suffix}.txt").exists():
                raise StudyConfigError(f"{file}: {where}: no template {name}{suffix}.txt in {templates_dir()}")


def _check_rm_names(cfg: StudyConfig, file: str) -> None:
    """``reward_models.protocols`` names known protocols; ``best_of_n.reward_models`` and ``evaluation.policies``
    name ``ratings``, ``rankings`` or one of them."""
    from ..protocols import ProtocolError, get_protocol, known_protocols

    for i, name in enumerate(cfg.reward_models.protocols):
        try:
            get_protocol(name)
        except ProtocolError:
            raise StudyConfigError(f"{file}: reward_models.protocols[{i}]: unknown protocol {name!r}; known: "
                                   f"{', '.join(known_protocols())}") from None
    if len(set(cfg.reward_models.protocols)) < len(cfg.reward_models.protocols):
        raise StudyConfigError(f"{file}: reward_models.protocols: a protocol is named twice")
    names = ["ratings", "rankings", *cfg.reward_models.protocols]
    for where, values in (("best_of_n.reward_models", cfg.best_of_n.reward_models),
                          ("evaluation.policies", cfg.evaluation.policies)):
        for i, name in enumerate(values):
            if name not in names:
                raise StudyConfigError(f"{file}: {where}[{i}]: unknown reward model {name!r}; known: "
                                       f"{', '.join(names)} (a protocol's RM needs it in reward_models.protocols)")
    seeded = [n for n in cfg.best_of_n.reward_models if n not in ("ratings", "rankings")]
    if seeded and "best_of_n" in cfg.seeded_from_data:
        raise StudyConfigError(f"{file}: best_of_n.reward_models: {seeded[0]!r} needs stage best_of_n computed, but "
                               "seeded_from_data names best_of_n (the paper released only the ratings and rankings "
                               "RMs' outputs)")


def validate(raw: Any, file: str = "<study>", base: Path | None = None) -> StudyConfig:
    """A validated :class:`StudyConfig` from a parsed YAML mapping; one :class:`StudyConfigError` otherwise."""
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{file}: (top level): expected a mapping of sections (name, instructions, "
                               f"policy, ...), got {type(raw).__name__}")
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise StudyConfigError(_message(file, e.errors()[0])) from None
    if base is not None:  # judge / policy files named in the study are found beside it
        from ..judges.config import add_study_folder

        add_study_folder(base)
    _check_names(cfg, file)
    _check_files(cfg, file, base or root())
    return cfg


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    path = Path(path)
    if not path.exists():
        raise StudyConfigError(f"{path}: study file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(top level)"
        raise StudyConfigError(f"{path}: {where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise StudyConfigError(f"{path}: (top level): not UTF-8 text") from None
    return validate(raw, str(path), path.resolve().parent)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "study"
