"""The replies of the fake OpenAI server (tests/fake_openai.py): deterministic texts, token
log-probabilities and ``n`` choices; used by the chat endpoint and by the batch backend."""
from __future__ import annotations

import hashlib
import math
import re
import time

from fake_structured import answer


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def reply_for(prompt: str) -> str:
    """The deterministic answer to a prompt (see the module docstring)."""
    low = prompt.lower()
    h = _digest(prompt)
    if "output (a)" in low:
        return "Output (a)" if h % 2 == 0 else "Output (b)"
    if "1 to 7" in low or "score" in low:
        return f"Score: {h % 7 + 1}\nReasoning: a deterministic fake judgment."
    return "echo: " + prompt[:40]


_TOKEN_RE = re.compile(r"\w+|\s+|[^\w\s]")


def _token_logprobs(text: str, top: int, options: dict) -> list[dict]:
    """Chat-completion ``logprobs.content`` for a reply (see the module docstring)."""
    tokens = _TOKEN_RE.findall(text)
    out = []
    for i, token in enumerate(tokens):
        probs = {token: 1.0}
        if token in "1234567" and len(token) == 1 and "score" in text[:20].lower():
            k = int(token)
            probs = options.get("score_probs") or {
                str(j): w for j, w in ((k, 0.6), (k - 1, 0.2), (k + 1, 0.2)) if 1 <= j <= 7}
        elif token in ("a", "b") and i > 0 and tokens[i - 1].endswith("("):
            p = options.get("choice_p", 0.7)
            probs = {token: p, "b" if token == "a" else "a": 1 - p}
        total = sum(probs.values())
        alts = sorted(((t, math.log(w / total)) for t, w in probs.items() if w > 0),
                      key=lambda x: -x[1])[: max(1, top)]
        out.append({"token": token, "logprob": dict(alts).get(token, -20.0), "bytes": None,
                    "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in alts]})
    return out


def completion(n: int, payload: dict, options: dict | None = None) -> dict:
    """The chat completion for a request body (``n`` choices, logprobs when asked and supported)."""
    options = options or {}
    messages = payload.get("messages") or [{"content": ""}]
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    k = int(payload.get("n") or 1) if options.get("support_n", True) else 1
    want_lp = bool(payload.get("logprobs")) and options.get("logprobs", True)
    choices, completion_tokens = [], 0
    for j in range(k):
        structured = answer(payload, prompt)  # a JSON instance of the schema asked for (fake_structured.py)
        text = structured if structured is not None else reply_for(prompt) + (f" [sample {j}]" if j else "")
        completion_tokens += max(1, len(text) // 4)
        choice = {"index": j, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": text}}
        if want_lp:
            choice["logprobs"] = {"content": _token_logprobs(
                text, int(payload.get("top_logprobs") or 0), options)}
        choices.append(choice)
    prompt_tokens = max(1, len(prompt) // 4)
    return {"id": f"chatcmpl-fake{n}", "object": "chat.completion", "created": int(time.time()),
            "model": payload.get("model", "fake"), "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
