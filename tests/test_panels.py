"""Judge panels: per-judge and pooled verdicts, agreement, one store for all judges."""
import numpy as np
import pandas as pd
import pytest

from sflib.judges.base import Completion, Judge, Request
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.panels import cohen_kappa, pool_frames, run_panel
from sflib.feedback.parsing import parse_choice, parse_score
from sflib.feedback.store import AnnotationStore


def test_cohen_kappa_known_values():
    # the textbook 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    assert np.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement 1: undefined (sflib.core.stats)
    assert np.isnan(cohen_kappa([], []))
    # quadratic weights: near misses on an ordinal scale count less than far ones
    near = cohen_kappa([1, 2, 3, 4, 5, 6, 7], [2, 1, 4, 3, 6, 5, 7], "quadratic")
    far = cohen_kappa([1, 2, 3, 4, 5, 6, 7], [7, 1, 4, 3, 6, 5, 2], "quadratic")
    assert near > 0.8 > far
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([1], [1], "cubic")


def test_pool_frames_mean_majority_ties_and_missing():
    scores = {"j1": pd.DataFrame({"score": [1, 4, np.nan]}), "j2": pd.DataFrame({"score": [3, 4, 6]}),
              "j3": pd.DataFrame({"score": [2, 7, np.nan]})}
    p = pool_frames(scores, "score")
    assert p.wide["pooled"].tolist() == [2.0, 5.0, 6.0] and p.wide["votes"].tolist() == [3, 3, 1]
    assert p.judges == ["j1", "j2", "j3"] and len(p.agreement) == 3
    assert p.agreement.set_index(["judge_1", "judge_2"]).loc[("j1", "j2"), "n"] == 2
    decisions = {"x": pd.DataFrame({"decision": ["a", "b", "a", None]}),
                 "y": pd.DataFrame({"decision": ["a", "a", "b", "b"]})}
    p = pool_frames(decisions, "decision")
    assert p.wide["pooled"].tolist() == ["a", None, None, "b"]  # ties give no majority
    row = p.agreement.iloc[0]
    assert row["n"] == 3 and row["agreement"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="different lengths"):
        pool_frames({"x": decisions["x"], "z": decisions["x"].iloc[:2]}, "decision")


class Constant(Judge):
    def __init__(self, name, reply):
        self.name, self.model, self.params, self.reply, self.asked = name, "m", {}, reply, 0

    def complete(self, requests):
        for i, r in enumerate(requests):
            self.asked += 1
            yield i, Completion(text=self.reply(r.messages[-1]["content"]))


def test_run_panel_uses_one_store_and_asks_only_new_judges(fake_openai_factory, tmp_path):
    server = fake_openai_factory(score_probs={"3": 0.5, "5": 0.5})
    store = AnnotationStore(tmp_path / "s.sqlite")
    requests = [Request([{"role": "user", "content": f"Rate on a scale of 1 to 7. Item {i}"}])
                for i in range(8)]
    gpt = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk", logprobs=True, top_logprobs=5)
    fours = Constant("const:four", lambda text: "Score: 4")
    p = run_panel([gpt, fours], requests, store=store, template_version="v", parse=parse_score,
                  progress=False, kappa_weights="quadratic")
    assert set(p.wide.columns) >= {"value_openai:gpt-4o-mini", "value_const:four", "pooled", "pooled_soft"}
    served = p.wide["value_openai:gpt-4o-mini"].astype(float)
    assert np.allclose(p.wide["pooled"], (served + 4) / 2)
    assert np.allclose(p.wide["pooled_soft"], (4.0 + 4.0) / 2, atol=1e-6)  # soft 4.0 and text 4
    assert store.count() == 16 and p.stats["const:four"]["called"] == 8
    sevens = Constant("const:seven", lambda text: "Score: 7")
    p2 = run_panel([gpt, fours, sevens], requests, store=store, template_version="v", parse=parse_score,
                   progress=False)
    assert server.requests == 8 and fours.asked == 8 and sevens.asked == 8  # only the new judge asked
    assert len(p2.agreement) == 3
    with pytest.raises(ValueError, match="twice"):
        run_panel([fours, fours], requests, store=None, template_version="v", parse=parse_score,
                  progress=False)


def test_run_panel_on_pairs_pools_by_majority():
    requests = [Request([{"role": "user", "content": f"Output (a) or Output (b)? {i}"}]) for i in range(4)]
    judges = [Constant("c:a", lambda t: "Output (a)"), Constant("c:b", lambda t: "Output (b)"),
              Constant("c:mix", lambda t: "Output (a)" if t.endswith(("0", "1")) else "Output (b)")]
    p = run_panel(judges, requests, store=None, template_version="v", parse=parse_choice, progress=False)
    assert p.wide["pooled"].tolist() == ["a", "a", "b", "b"]
    kappas = p.agreement.set_index(["judge_1", "judge_2"])["agreement"]
    assert kappas[("c:a", "c:b")] == 0.0 and kappas[("c:a", "c:mix")] == 0.5
