"""Judges and policies as files: ``resolve(kind, name)`` -> one validated settings dict.

A judge or a policy is named by

- a config name: ``./judges/<name>.yaml`` / ``./policies/<name>.yaml`` in the current folder,
  then in the ``judges/`` / ``policies/`` folder beside a loaded study file, then the shipped
  ``sflib/configs/judges/<name>.yaml`` / ``sflib/configs/policies/<name>.yaml``
  (``gpt-4o-mini``, ``gpt-4o``, ``smollm2-llamacpp``, ``recorded``; policies ``smollm2``,
  ``qwen2.5-7b-vllm``);
- a path to a YAML file of your own (``my_judge.yaml``; relative to the current folder, else to
  the folder of a loaded study file);
- the shorthand ``openai:<model>``, ``local:<model>``, ``recorded[:file,file]`` (and, for a policy,
  a local model folder).

Each resolves to the same dict (:data:`KEYS`, defaults filled in):

``provider`` (``openai`` = any OpenAI-compatible endpoint, ``local`` = a transformers model,
``recorded``), ``model``, ``base_url`` or ``base_url_env`` (the name of the environment variable
holding it; when set it wins over ``base_url``), ``api_key_env`` (the variable holding the key,
default ``OPENAI_API_KEY``; the key itself never appears in a file), ``concurrency``, ``rpm``,
``tpm``, ``timeout``, ``temperature``, ``max_tokens``, ``top_p``, ``template`` (judges: the prompt
template version, ``v1`` = ``rating_v1`` / ``ranking_v1``; policies: ``chat`` or ``alpaca``),
``price_input_per_mtok`` / ``price_output_per_mtok`` (USD per million tokens; from
:mod:`sflib.core.costs` when absent, 0 for local / recorded, ``None`` when unknown) and the batch-API
prices ``price_batch_input_per_mtok`` / ``price_batch_output_per_mtok``, plus ``max_retries``,
``batch_size``, ``device`` (local), ``files`` (recorded) and, for a policy on a server,
``n_per_request`` (default true: an instruction's k samples in one request with ``n``, the prompt
paid once; a server that ignores ``n`` has the rest asked one by one; false: one request per sample).
``name`` is what was asked for and
``source`` the file read (or ``"shorthand"``).

An unknown key or a value of the wrong type in a file is one :class:`ConfigError` naming the file
and the key; an unknown name is a ``ValueError`` listing the known names.

CLI helpers: :func:`add_judge_options` adds ``--concurrency --rpm --tpm --timeout --temperature
--max-tokens`` (all default: the config's value) and :func:`judge_overrides` turns the parsed
arguments into the overrides for :func:`sflib.judges.get_judge` / :func:`sflib.generation.policies.get_policy`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

KINDS = ("judge", "policy")
FOLDERS = {"judge": "judges", "policy": "policies"}
PROVIDERS = ("openai", "local", "recorded")

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))
#: every key a config may have -> accepted types
KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "provider": (str,), "model": (str,),
    "base_url": _OPT_STR, "base_url_env": _OPT_STR, "api_key_env": _OPT_STR,
    "concurrency": (int,), "rpm": _OPT_NUM, "tpm": _OPT_NUM, "timeout": _NUM,
    "temperature": _NUM, "max_tokens": (int,), "top_p": _OPT_NUM, "template": (str,),
    "price_input_per_mtok": _OPT_NUM, "price_output_per_mtok": _OPT_NUM,
    "price_batch_input_per_mtok": _OPT_NUM, "price_batch_output_per_mtok": _OPT_NUM,
    "max_retries": (int,), "batch_size": (int,), "device": _OPT_STR, "files": (list, str, type(None)),
    "source": (str,), "logprobs": (bool,), "top_logprobs": (int, type(None)), "n_per_request": (bool,),
    # ask for the protocol's JSON schema: true / json_schema (OpenAI), json_object (llama-cpp-python), guided_json (vLLM)
    "structured_verdicts": (bool, str),
}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "text", list: "a list", type(None): "null"}

#: defaults per kind; ``max_tokens`` also depends on the provider (see :func:`_defaults`)
DEFAULTS: dict[str, dict[str, Any]] = {
    "judge": {"description": "", "provider": "openai", "base_url": None, "base_url_env": None, "api_key_env": "OPENAI_API_KEY",
              "concurrency": 16, "rpm": None, "tpm": None, "timeout": 60.0, "temperature": 0.0,
              "max_tokens": 512, "top_p": None, "template": "v1", "max_retries": 6, "batch_size": 8,
              "device": None, "files": None, "logprobs": False, "top_logprobs": None},
    "policy": {"description": "", "provider": "local", "base_url": None, "base_url_env": None, "api_key_env": "OPENAI_API_KEY",
               "concurrency": 8, "rpm": None, "tpm": None, "timeout": 120.0, "temperature": 1.0,
               "max_tokens": 128, "top_p": 0.9, "template": "chat", "max_retries": 6, "batch_size": 8,
               "device": None, "files": None, "n_per_request": True},
}
PRICE_KEYS = ("price_input_per_mtok", "price_output_per_mtok", "price_batch_input_per_mtok",
              "price_batch_output_per_mtok")
#: keys a CLI may override (see :func:`add_judge_options`)
OVERRIDE_KEYS = ("concurrency", "rpm", "tpm", "timeout", "temperature", "max_tokens", "top_p")


class ConfigError(ValueError):
    """A judge/policy config file with an unknown key, a wrong type or a bad value."""

    def __init__(self, source: str, key: str | None, message: str):
        self.source, self.key = source, key
        where = f"{source}" + (f", key '{key}'" if key else "")
        super().__init__(f"{where}: {message}")


def shipped_dir(kind: str) -> Path:
    """``sflib/configs/judges`` or ``sflib/configs/policies``."""
    return Path(__file__).resolve().parent.parent / "configs" / FOLDERS[_check_kind(kind)]


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


#: folders of the study files loaded in this process (:func:`add_study_folder`): a judge or policy
#: file named in a study is looked for beside the study file too
_STUDY_FOLDERS: list[Path] = []


def add_study_folder(folder: str | Path) -> None:
    """Also look for judge / policy files relative to ``folder`` (a study file's folder): a YAML
    path relative to it, and config names in its ``judges/`` and ``policies/`` subfolders."""
    folder = Path(folder).expanduser().resolve()
    if folder not in _STUDY_FOLDERS:
        _STUDY_FOLDERS.append(folder)


def _search_dirs(kind: str) -> list[Path]:
    return [Path.cwd() / FOLDERS[kind], *(f / FOLDERS[kind] for f in _STUDY_FOLDERS), shipped_dir(kind)]


def known_names(kind: str) -> list[str]:
    """Config names found in ``./judges/`` or ``./policies/`` and the shipped configs."""
    names = set()
    for folder in _search_dirs(kind):
        if folder.is_dir():
            names.update(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    return sorted(names)


def _find_file(kind: str, name: str) -> Path | None:
    p = Path(name).expanduser()
    if p.suffix in (".yaml", ".yml"):
        if p.is_file():
            return p
        if not p.is_absolute():
            for folder in reversed(_STUDY_FOLDERS):  # the newest study first
                if (folder / p).is_file():
                    return folder / p
        where = f" (looked in {Path.cwd()}{''.join(', ' + str(f) for f in _STUDY_FOLDERS)})" if not p.is_absolute() else ""
        raise FileNotFoundError(f"{kind} config file {p} does not exist{where}")
    if os.sep in name or "/" in name:
        return None
    for folder in _search_dirs(kind):
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # YAML true/false is not a number
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def validate(raw: dict, source: str, kind: str) -> dict:
    """Check keys and types of a config mapping; raise :class:`ConfigError` naming ``source`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(source, None, f"expected a mapping of settings, found {type(raw).__name__}")
    for key, value in raw.items():
        if key not in KEYS:
            raise ConfigError(source, str(key), f"unknown key; known keys: {', '.join(k for k in KEYS if k != 'source')}")
        if not _type_ok(value, KEYS[key]):
            types = [t for t in KEYS[key] if not (t is int and float in KEYS[key])]
            want = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in types)
            raise ConfigError(source, key, f"expected {want}, found {type(value).__name__} {value!r}")
    provider = raw.get("provider")
    if provider is not None and provider not in PROVIDERS:
        raise ConfigError(source, "provider", f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    if kind == "policy" and provider == "recorded":
        raise ConfigError(source, "provider", "a policy cannot be 'recorded'; use 'local' or 'openai'")
    for key in ("concurrency", "max_tokens", "batch_size"):
        if key in raw and raw[key] < 1:
            raise ConfigError(source, key, f"must be >= 1, got {raw[key]}")
    for key in ("rpm", "tpm", "timeout"):
        if raw.get(key) is not None and raw[key] <= 0:
            raise ConfigError(source, key, f"must be > 0, got {raw[key]}")
    for key in PRICE_KEYS + ("temperature",):
        if raw.get(key) is not None and raw[key] < 0:
            raise ConfigError(source, key, f"must be >= 0, got {raw[key]}")
    if raw.get("top_p") is not None and not 0 < raw["top_p"] <= 1:
        raise ConfigError(source, "top_p", f"must be in (0, 1], got {raw['top_p']}")
    if isinstance(raw.get("structured_verdicts"), str) and raw["structured_verdicts"] not in (
            "json_schema", "json_object", "guided_json"):
        raise ConfigError(source, "structured_verdicts", f"expected true/false, json_schema, json_object or "
                          f"guided_json, got {raw['structured_verdicts']!r}")
    if isinstance(raw.get("files"), list) and not all(isinstance(f, str) for f in raw["files"]):
        raise ConfigError(source, "files", "expected a list of file paths")
    return dict(raw)


def _read_yaml(path: Path, kind: str) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), None, f"not valid YAML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), None, f"cannot read the file ({e})") from None
    cfg = validate(raw if raw is not None else {}, str(path), kind)
    if "model" not in cfg and cfg.get("provider", DEFAULTS[kind]["provider"]) != "recorded":
        raise ConfigError(str(path), "model", "missing (the model name to ask for)")
    return cfg


def _shorthand(kind: str, name: str) -> dict | None:
    spec = name.strip()
    if kind == "judge" and (spec == "recorded" or spec.startswith("recorded:")):
        rest = spec.partition(":")[2]
        files = [f.strip() for f in rest.split(",") if f.strip()] or None
        return {"provider": "recorded", "model": "recorded", "files": files}
    prefix, sep, rest = spec.partition(":")
    if sep and rest and prefix in ("openai", "local"):
        return {"provider": prefix, "model": rest}
    if sep and rest and kind == "judge":
        from . import _REGISTRY  # a provider added with register_judge

        if prefix in _REGISTRY:
            return {"provider": prefix, "model": rest}
    if kind == "policy" and not sep:
        from ..generation.models import ALIASES

        if spec.lower() in ALIASES or Path(spec).expanduser().is_dir():
            return {"provider": "local", "model": spec}
    return None


def _defaults(kind: str, provider: str) -> dict:
    out = dict(DEFAULTS[kind])
    if kind == "judge" and provider == "local":
        out.update(max_tokens=64, concurrency=1)
    if provider in ("local", "recorded"):
        out.update(api_key_env=None)
    return out


def fill_prices(cfg: dict) -> dict:
    """Fill missing prices: 0 for local/recorded, else :mod:`sflib.core.costs`' table (``None`` if unknown)."""
    from ..core import costs

    cfg = dict(cfg)
    if cfg["provider"] in ("local", "recorded"):
        for key in PRICE_KEYS:
            cfg[key] = 0.0 if cfg.get(key) is None else cfg[key]
        return cfg
    known = costs.price(f"openai:{cfg['model']}")
    if cfg.get("price_input_per_mtok") is None:
        cfg["price_input_per_mtok"] = known[0] if known else None
    if cfg.get("price_output_per_mtok") is None:
        cfg["price_output_per_mtok"] = known[1] if known else None
    for key, full in (("price_batch_input_per_mtok", "price_input_per_mtok"),
                      ("price_batch_output_per_mtok", "price_output_per_mtok")):
        if cfg.get(key) is None:  # OpenAI's batch API costs half the standard price
            cfg[key] = None if cfg[full] is None else cfg[full] / 2
    return cfg


def resolve(kind: str, name: str) -> dict:
    """The full settings of a judge or policy named by a config name, a YAML path or a shorthand."""
    _check_kind(kind)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{kind} name must be non-empty text, got {name!r}")
    prefix = name.strip().partition(":")[0]
    path = None if ":" in name and prefix in PROVIDERS else _find_file(kind, name.strip())
    if path is not None:
        raw, source = _read_yaml(path, kind), str(path)
    else:
        raw, source = _shorthand(kind, name), "shorthand"
        if raw is None:
            examples = ("a spec: expected '<provider>:<model>' such as 'openai:<model>', 'local:<model>', "
                        "'recorded[:file,...]'" if kind == "judge"
                        else "'openai:<model>', 'local:<model>', a local model folder")
            raise ValueError(f"unknown {kind} {name!r}; known {FOLDERS[kind]}: {', '.join(known_names(kind)) or '(none)'} "
                             f"(from ./{FOLDERS[kind]}/ and sflib/configs/{FOLDERS[kind]}/), a path to a .yaml file, "
                             f"or {examples}")
    provider = raw.get("provider", DEFAULTS[kind]["provider"])
    cfg = {**_defaults(kind, provider), **raw, "provider": provider}
    cfg.setdefault("model", "recorded" if provider == "recorded" else "")
    cfg["name"] = raw.get("name") or name.strip()
    cfg["source"] = source
    for key in PRICE_KEYS:
        cfg.setdefault(key, None)
    cfg = fill_prices(cfg)
    return {**{k: cfg[k] for k in KEYS if k in cfg}, **cfg}


def apply_overrides(cfg: dict, overrides: dict, source: str = "overrides") -> dict:
    """``cfg`` with the given settings replaced (validated like a file; ``None`` values are ignored)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    validate(given, source, "judge")
    if "base_url" in given and "base_url_env" not in given:
        given["base_url_env"] = None  # an explicit URL wins over the config's environment variable
    return {**cfg, **given}


def base_url(cfg: dict) -> str | None:
    """The endpoint: the variable named by ``base_url_env`` when it is set, else ``base_url``."""
    env = cfg.get("base_url_env")
    if env and os.environ.get(env):
        return os.environ[env]
    return cfg.get("base_url")


def api_key(cfg: dict) -> str | None:
    """The API key from the variable named by ``api_key_env`` (never stored in a config)."""
    env = cfg.get("api_key_env")
    return os.environ.get(env) if env else None


# ----------------------------------------------------------------------------- CLI helpers

def add_judge_options(parser, *, sampling: bool = False) -> None:
    """Add ``--concurrency --rpm --tpm --timeout --temperature --max-tokens`` (``--top-p`` with
    ``sampling=True``); each defaults to the judge's/policy's config value."""
    g = parser.add_argument_group("request limits and decoding (default: the judge/policy config)")
    g.add_argument("--concurrency", type=int, help="requests in flight at once")
    g.add_argument("--rpm", type=float, help="requests per minute budget (every HTTP attempt counts)")
    g.add_argument("--tpm", type=float, help="tokens per minute budget")
    g.add_argument("--timeout", type=float, help="seconds per HTTP attempt")
    g.add_argument("--temperature", type=float, help="sampling temperature")
    names = ["--max-tokens", "--max-new-tokens"] if sampling else ["--max-tokens"]
    g.add_argument(*names, dest="max_tokens", type=int, help="longest reply in tokens")
    if sampling:
        g.add_argument("--top-p", dest="top_p", type=float, help="nucleus sampling mass")


def limits_line(name: str, overrides: dict | None = None) -> str:
    """The request limits a judge will run under and where each comes from, e.g.
    ``rpm 500 from judges/x.yaml, tpm none, concurrency 16 (default)``; '' for a judge without HTTP
    requests (recorded, local, human)."""
    try:
        cfg = resolve("judge", name)
    except Exception:  # noqa: BLE001 - e.g. a human judge: nothing to announce
        return ""
    if cfg.get("provider") != "openai":
        return ""
    import yaml

    written: dict = {}
    if cfg.get("source") not in (None, "shorthand"):
        try:
            written = yaml.safe_load(Path(cfg["source"]).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            written = {}
    parts = []
    for key in ("rpm", "tpm", "concurrency"):
        if (overrides or {}).get(key) is not None:
            parts.append(f"{key} {overrides[key]:g} from --{key}")
        elif cfg.get(key) is None:
            parts.append(f"{key} none" + (" (paced by the server's 429s)" if key == "rpm" else ""))
        elif key in written:
            parts.append(f"{key} {cfg[key]:g} from {_short_path(cfg['source'])}")
        else:
            parts.append(f"{key} {cfg[key]:g} (default)")
    return ", ".join(parts)


def _short_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def judge_overrides(args) -> dict:
    """The options of :func:`add_judge_options` that were given, as overrides for ``get_judge``."""
    return {k: getattr(args, k) for k in OVERRIDE_KEYS if getattr(args, k, None) is not None}
