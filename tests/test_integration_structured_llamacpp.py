"""Opt-in (``SFLIB_INTEGRATION=1``): structured verdicts against the real llama.cpp server.

The bundled SmolLM2-135M behind ``python -m sflib.generation.serve_local`` rates and ranks the same responses
twice: as free text (judge ``smollm2-llamacpp``) and with the protocol's JSON schema (judge
``smollm2-llamacpp-structured``: ``response_format={"type": "json_object", "schema": ...}``, which
llama-cpp-python compiles to a grammar). Free text is mostly unparsable; with the schema every answer is
readable (goal: at most 5% invalid), so the consistency of ratings and rankings gets a number. The invalid
rates are printed (``-s``) for the session note. A few minutes on two CPU cores.
"""
import json
import os

import pandas as pd
import pytest

from test_integration_llamacpp import SAMPLE, server  # noqa: F401  (the module-scoped server fixture)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("SFLIB_INTEGRATION") != "1", reason="opt in with SFLIB_INTEGRATION=1"),
]


def _responses(n_instructions=3, k=3):
    gens = json.loads(SAMPLE.read_text())[:n_instructions]
    return pd.DataFrame([{"instruction": g["instruction"], "input": g.get("input", ""), "response": r}
                         for g in gens for r in sorted(g["responses"], key=len)[:k]])


def test_structured_verdicts_make_a_small_judge_readable(server, tmp_path, monkeypatch):  # noqa: F811
    from sflib import consistency
    from sflib.feedback.rankings import make_pairs, rank
    from sflib.feedback.ratings import rate
    from sflib.judges import get_judge

    monkeypatch.setenv("SFLIB_JUDGE_URL", server["url"])
    responses = _responses()
    rates = {}
    results = {}
    for name in ("smollm2-llamacpp", "smollm2-llamacpp-structured"):
        judge = get_judge(name)
        ratings = rate(responses, judge, store=tmp_path / "s.sqlite", progress=False)
        rankings = rank(make_pairs(responses), judge, store=tmp_path / "s.sqlite", progress=False)
        rates[name] = {"ratings_invalid": float((~ratings["valid"]).mean()),
                       "rankings_invalid": float((~rankings["valid"]).mean()),
                       "failed": int((ratings["status"] == "failed").sum() + (rankings["status"] == "failed").sum())}
        results[name] = (ratings, rankings)
    print("invalid rates:", json.dumps(rates))
    after = rates["smollm2-llamacpp-structured"]
    assert after["failed"] == 0
    assert after["ratings_invalid"] <= 0.05 and after["rankings_invalid"] <= 0.05, rates
    ratings, rankings = results["smollm2-llamacpp-structured"]
    assert all(r.strip().startswith("{") for r in ratings["raw"])             # the answers came as JSON
    rep = consistency.report(ratings, rankings, bootstrap=50)
    print("consistency with structured verdicts:", rep.consistency, "n =", rep.n_compared)
    assert rep.n_compared == len(rankings) and 0 <= rep.consistency <= 1
    assert server["proc"].poll() is None, server["log"].read_text()
