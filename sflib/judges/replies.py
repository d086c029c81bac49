"""Reading a provider's replies: ``Retry-After`` headers, token logprobs of a chat choice, and a
Batch API output line as a :class:`~sflib.judges.base.Completion` (with the usage it was billed)."""
from __future__ import annotations

from typing import Any

from .base import Completion


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (numeric forms), or None."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if 0 <= seconds < 3600:
            return seconds
    return None


def token_logprobs(choice: Any) -> list | None:
    """``[[token, {alternative: logprob}], ...]`` from a chat choice's ``logprobs.content``
    (None when the provider sent none). Works on the client's objects and on plain dicts."""
    def get(obj, name):
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    lp = get(choice, "logprobs")
    content = get(lp, "content") if lp is not None else None
    if not content:
        return None
    out = []
    for item in content:
        token = get(item, "token")
        alternatives = {get(t, "token"): float(get(t, "logprob"))
                        for t in (get(item, "top_logprobs") or [])}
        if token is not None and token not in alternatives and get(item, "logprob") is not None:
            alternatives[token] = float(get(item, "logprob"))
        out.append([token, alternatives])
    return out


def _usage(line: dict) -> tuple[int, int]:
    """(prompt, completion) tokens an output line says were used (billed even without a reply)."""
    body = (line.get("response") or {}).get("body") or {}
    usage = body.get("usage") if isinstance(body, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _completion(line: dict, attempt: int) -> tuple[Completion | None, str | None]:
    """``(completion, None)`` for a usable output line, ``(None, why)`` for one to resubmit."""
    response = line.get("response") or {}
    error = line.get("error")
    if error or response.get("status_code") != 200:
        body_error = ((response.get("body") or {}).get("error") or {}).get("message")
        return None, f"batch line error: {error or ''} {response.get('status_code')} {body_error or ''}".strip()
    body = response.get("body") or {}
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None, "batch line without a chat completion"
    if text is None:
        return None, f"reply has no text (finish_reason={choice.get('finish_reason')})"
    usage = body.get("usage") or {}
    return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0),
                      attempts=attempt, logprobs=token_logprobs(choice)), None
