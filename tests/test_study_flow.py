"""A fresh study from studies/example.yaml, stage by stage, against the project's fake OpenAI server.

Notebooks 04-07 run through the study runner (papermill, quick mode) and read only the study
folder: 04's pairs are 03's pairs, 05 trained on 02/03's rows, 06 scored with 05's models, 07
judged 06's outputs (checked from the stage files and the manifests' input hashes). The same study
with a judge that answers mostly unparsable text completes 01 -> 07, and every affected executed
notebook shows how many answers were invalid.

Every executed notebook is also checked like tests/test_notebooks.py checks the paper's run: one inline
image per saved figure, and no warnings, tracebacks, machine paths or raw log dicts in its outputs.
"""
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("papermill")

import fake_openai  # tests/ is on sys.path under pytest
import fake_replies
import nbcheck
from fake_openai import serving_study

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-DO-NOT-LEAK-flow-0123456789"
GARBLE = "I would rather not give a number here; both answers have their merits."


def _study_file(tmp: Path, name: str, judge: str) -> Path:
    """studies/example.yaml made tiny: 8 instructions, k=3, short sequences, 3 evaluation instructions x n=2."""
    cfg = yaml.safe_load((ROOT / "studies" / "example.yaml").read_text(encoding="utf-8"))
    cfg["name"] = name
    cfg["instructions"]["paths"] = [str(ROOT / "studies" / "data" / "example_instructions.jsonl")]
    cfg["policy"].update(k=3, max_new_tokens=16)
    cfg["feedback"]["judge"] = judge
    cfg["reward_models"].update(max_length=64, batch_size=4, epochs=1)
    cfg["best_of_n"].update(n=2, sample=3, max_new_tokens=16)
    cfg["evaluation"]["judge"] = judge
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _run(s) -> None:
    """01-03 in full (the tiny study is cheap; quick mode would leave too few pairs to train on), 04-07 quick."""
    from sflib import study as studies

    studies.run(s, only="01,02,03", quick=False, progress=False, log=lambda *_: None)
    studies.run(s, only="04,05,06,07", quick=True, progress=False, log=lambda *_: None)


def _text(executed: Path) -> str:
    """Everything an executed notebook shows as text (streams, plain-text results, errors)."""
    nb = json.loads(executed.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            parts.append("".join(out.get("data", {}).get("text/plain", "")))
            parts.append(str(out.get("evalue", "")))
    return "\n".join(parts)


def _check_notebooks(s) -> dict:
    """Every executed notebook of the study: no leaked key; 04-07: inline figures and no noise. Texts by number."""
    executed = sorted((s.folder / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.name[:2] for p in executed] == ["01", "02", "03", "04", "05", "06", "07"]
    for path in executed:
        assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"
        if path.name[:2] < "04":  # 01-03 (run in full here) are checked by tests/test_notebooks.py
            continue
        report = nbcheck.check(path)
        assert report["inline_images"] >= len(report["saved_figures"]) and not report["unshown"], report
        assert report["noise"] == [], report
    return {p.name[:2]: _text(p) for p in executed}


def _ids(df: pd.DataFrame) -> set:
    return set(zip(df["instruction_id"], df["response_id_1"], df["response_id_2"]))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow")
    with serving_study(out, KEY) as env:
        yield env


@pytest.mark.slow
def test_fresh_study_flows_forward(env):
    from sflib import study as studies

    tmp, server = env
    s = studies.load(_study_file(tmp, "flow", "openai:gpt-4o-mini"))
    _run(s)
    assert [s.state(st) for st in studies.STAGES] == ["done"] * 7

    def inputs_current(stage):  # each manifest names its inputs with the hash of their manifests as read
        m = s.manifest(stage)
        assert m["inputs"] and all(h == s.manifest_hash(up) for up, h in m["inputs"].items())
        return m

    # 04: its pairs are 03's pairs, scored with 02's ratings
    m04 = inputs_current("consistency")
    assert set(m04["inputs"]) == {"ratings", "rankings"}
    pairs, rankings, ratings = s.read("consistency"), s.read("rankings"), s.read("ratings")
    assert len(pairs) and _ids(pairs) <= _ids(rankings)
    score = dict(zip(zip(ratings["instruction_id"], ratings["response_id"]), ratings["score"]))
    for row in pairs.head(5).itertuples():
        assert row.score1 == score[(row.instruction_id, row.response_id_1)]
    assert json.loads(s.path_of("consistency", "report.json").read_text())["n_compared"] == len(pairs)

    # 05: trained on 02/03's rows (every usable row on one side of the split or the other)
    m05 = inputs_current("reward_models")
    metrics = json.loads(s.path_of("reward_models", "metrics.json").read_text())
    assert sorted(m05["files"]) == ["held_out.jsonl", "metrics.json", "rankings", "ratings"]
    used = {k: v["counts"]["train"]["used"] + ((v["counts"].get("eval") or {}).get("used") or 0)
            for k, v in metrics["trained"].items()}
    from sflib.feedback.clean import clean_rankings, clean_ratings

    assert used["ratings"] == len(clean_ratings(ratings)[0])   # the one counting rule of 02-04
    assert used["rankings"] == int(clean_rankings(rankings)[0]["decision"].isin(["a", "b"]).sum())

    # 06: the best-of-n selections are the argmax of 05's models' rewards over the samples
    m06 = inputs_current("best_of_n")
    assert set(m06["inputs"]) == {"reward_models"}
    samples = s.read("best_of_n")
    assert samples.groupby("instruction_id").size().eq(2).all()
    from sflib.rm import score as rm_score

    fresh = rm_score(s.path_of("reward_models", "ratings"), list(samples["instruction"]), list(samples["response"]))
    assert list(fresh) == pytest.approx(list(samples["ratings_reward"]), abs=1e-4)
    for kind in ("ratings", "rankings"):
        top = samples.loc[samples.groupby("instruction_id")[f"{kind}_reward"].idxmax()]
        assert sorted(s.read("best_of_n", f"{kind}_outputs")["output"]) == sorted(top["response"])

    # 07: judged 06's outputs against 06's reference, through the fake server
    m07 = inputs_current("evaluation")
    assert m07["judge"] == "openai:gpt-4o-mini"
    judged = s.read("evaluation")
    ours = set(s.read("best_of_n", "ratings_outputs")["output"]) | set(s.read("best_of_n", "rankings_outputs")["output"])
    counted = judged[judged["win"].notna()]
    assert len(counted) and set(counted["policy_output"]) <= ours
    assert set(counted["reference_output"]) <= set(s.read("best_of_n", "reference_outputs")["output"])
    asked = " ".join(server.prompts)
    assert all(text[:40] in asked for text in counted["policy_output"])
    _check_notebooks(s)


@pytest.mark.slow
def test_noisy_judge_completes_with_invalid_counts(env, monkeypatch):
    from sflib import study as studies

    tmp, _ = env
    clean = fake_replies.reply_for

    def mostly_garbled(prompt: str) -> str:  # 4 of 5 answers unparsable, deterministically by prompt
        digest = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16)
        return clean(prompt) if digest % 5 == 0 else GARBLE

    monkeypatch.setattr(fake_replies, "reply_for", mostly_garbled)   # what the server's replies call
    monkeypatch.setattr(fake_openai, "reply_for", mostly_garbled)
    s = studies.load(_study_file(tmp, "noisy", "openai:gpt-4.1-nano"))  # another judge: nothing from the clean cache
    _run(s)
    assert [s.state(st) for st in studies.STAGES] == ["done"] * 7

    ratings_counts, rankings_counts = s.manifest("ratings")["counts"], s.manifest("rankings")["counts"]
    assert ratings_counts["invalid"] + ratings_counts["failed"] > ratings_counts["valid"]
    assert rankings_counts["invalid"] + rankings_counts["failed"] > rankings_counts["valid"]
    executed = _check_notebooks(s)
    for nb in ("04", "05"):  # the upstream counts, with their invalid numbers, in the notebooks that read them
        for kind, c in (("ratings", ratings_counts), ("rankings", rankings_counts)):
            assert re.search(rf"^{kind}\s+done\s+openai:gpt-4\.1-nano\s+{c['n']}\s+{c['valid']}\s+{c['invalid']}\s",
                             executed[nb], re.M), f"{nb} does not show the {kind} counts"
    m04 = s.manifest("consistency")["counts"]
    assert m04["invalid"] > 0 and (m04["reasons"] or m04.get("reason"))
    m07 = s.manifest("evaluation")["counts"]
    assert m07["invalid"] + m07["failed"] > 0
    assert re.search(r"judgment (invalid|failed)", executed["07"]), "07 does not say what it dropped"
    assert "Traceback" not in "".join(executed.values())
