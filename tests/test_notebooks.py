"""Every numbered notebook runs headlessly in quick mode for the paper study, in pipeline order, writes
figures, and leaks no secret into its executed copy or its figures; a fresh study from
studies/example.yaml flows forward through 01 -> 02 -> 03 against the fake OpenAI server, also when
the judge answers mostly unparsable text and when the policy's server is down. Every executed
notebook shows one inline image per saved figure and no noise (tests/nbcheck.py).

The paper-study notebooks share one temporary outputs folder (SFLIB_OUTPUTS) because later stages
read what earlier ones wrote, exactly as in run_all.sh.
"""
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

pm = pytest.importorskip("papermill")
import nbcheck  # noqa: E402  (tests/nbcheck.py)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FAKE_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"


@pytest.fixture(scope="module")
def shared_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs")
    old = {k: os.environ.get(k) for k in ("SFLIB_OUTPUTS", "OPENAI_API_KEY", "HF_HUB_OFFLINE")}
    os.environ.update(SFLIB_OUTPUTS=str(out), OPENAI_API_KEY=FAKE_KEY, HF_HUB_OFFLINE="1")
    yield out
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _check_reads_well(executed: Path) -> None:
    """One inline image per saved figure, every saved figure shown, and no noise (warnings, tracebacks,
    machine paths, float spam, progress widgets, "SPEC") in any output."""
    report = nbcheck.check(executed)
    assert nbcheck.inline_images(executed) >= len(report["saved_figures"]), report
    assert report["unshown"] == [], report
    assert report["noise"] == [], report


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:1] == ["00"]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(notebook, shared_outputs, tmp_path):
    src = json.loads(notebook.read_text(encoding="utf-8"))
    assert src["metadata"].get("kernelspec") and src["metadata"].get("language_info"), "papermill needs both"
    assert not any(c.get("outputs") for c in src["cells"] if c["cell_type"] == "code"), "commit notebooks without outputs"
    tagged = [c for c in src["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    params = "".join(tagged[0]["source"]) if tagged else ""
    assert all(re.search(rf"^{name} = ", params, re.M) for name in ("study", "quick", "figures_dir")), params

    figures = tmp_path / "figures"
    out = tmp_path / notebook.name
    pm.execute_notebook(str(notebook), str(out), parameters={"quick": True, "figures_dir": str(figures)},
                        cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    pngs = sorted(figures.glob("*.png"))
    assert pngs, f"{notebook.name} saved no figure"
    assert {p.stem for p in pngs} == {p.stem for p in figures.glob("*.pdf")}, "every figure as PNG and PDF"
    _check_reads_well(out)
    assert set(nbcheck.saved_figures(out)) == {p.stem for p in pngs}, "every saved figure went through save_figure"
    for path in [out, *figures.iterdir()]:
        assert FAKE_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"


# ----------------------------------------------------------------------------- a study of one's own, 01 -> 03

FLOW = ("01_generate", "02_ratings", "03_rankings")


def _example_study(folder: Path, name: str) -> Path:
    """studies/example.yaml under another name, its instructions file given by absolute path."""
    text = (ROOT / "studies" / "example.yaml").read_text(encoding="utf-8")
    text = re.sub(r"^name: example\b", f"name: {name}", text, count=1, flags=re.M)
    text = text.replace("data/example_instructions.jsonl", str(ROOT / "studies" / "data" / "example_instructions.jsonl"))
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _run_flow(study_file: Path, executed: Path) -> dict[str, str]:
    """Notebooks 01-03 in quick mode for ``study_file``; returns each executed notebook's text."""
    texts = {}
    executed.mkdir(parents=True, exist_ok=True)
    for name in FLOW:
        out = executed / f"{name}.ipynb"
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out),
                            parameters={"study": str(study_file), "quick": True, "figures_dir": str(executed / "figures")},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
        texts[name] = out.read_text(encoding="utf-8")
        assert FAKE_KEY not in texts[name], f"the API key leaked into {name}"
        _check_reads_well(out)
    return texts


def _pair_set(df, a="response_id_1", b="response_id_2") -> set:
    return {frozenset(p) for p in zip(df[a], df[b])}


@pytest.fixture(scope="module")
def example_flow(tmp_path_factory):
    """example.yaml (SmolLM2 policy, judge openai:gpt-4o-mini) against the fake OpenAI server: 01 -> 02 -> 03."""
    from fake_openai import FakeOpenAI

    tmp = tmp_path_factory.mktemp("flow")
    mp = pytest.MonkeyPatch()
    mp.setenv("SFLIB_OUTPUTS", str(tmp / "outputs"))
    mp.setenv("OPENAI_API_KEY", FAKE_KEY)
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        with FakeOpenAI(latency=0.0) as server:
            mp.setenv("OPENAI_BASE_URL", server.url)
            study_file = _example_study(tmp, "flow")
            texts = _run_flow(study_file, tmp / "executed")
            requests = server.requests
        yield {"study_file": study_file, "texts": texts, "requests": requests, "outputs": tmp / "outputs"}
    finally:
        mp.undo()


@pytest.mark.slow
def test_fresh_study_flows_forward(example_flow, monkeypatch):
    """02 rates exactly 01's responses, 03 ranks exactly their pairs, and each manifest names its input."""
    from sflib.feedback.rankings import make_pairs
    from sflib.study import load

    monkeypatch.setenv("SFLIB_OUTPUTS", str(example_flow["outputs"]))
    s = load(example_flow["study_file"])
    assert example_flow["requests"] > 0                     # the judge was really asked
    responses, ratings, rankings = s.read("responses"), s.read("ratings"), s.read("rankings")
    assert len(responses) > 0 and responses["generator"].iloc[0] == "smollm2-135m-instruct"
    assert s.manifest("responses")["policy"] == "local:smollm2"
    # 02 rated exactly 01's responses, one row each
    assert sorted(ratings["response_id"]) == sorted(responses["response_id"])
    assert ratings["valid"].all() and ratings["score"].between(1, 7).all()
    # 03 ranked exactly the pairs of 01's responses to the same instruction
    owner = dict(zip(responses["response_id"], responses["instruction_id"]))
    assert all(owner[a] == owner[b] == i for a, b, i in
               zip(rankings["response_id_1"], rankings["response_id_2"], rankings["instruction_id"]))
    assert _pair_set(rankings) == _pair_set(make_pairs(responses)) and len(rankings) == len(make_pairs(responses))
    for stage, n in (("ratings", len(responses)), ("rankings", len(rankings))):
        m = s.manifest(stage)
        assert m["inputs"] == {"responses": s.manifest_hash("responses")}, f"{stage} names its input"
        assert m["judge"] == "openai:gpt-4o-mini" and m["template_version"].endswith("-v1")
        assert m["counts"]["n"] == n and m["counts"]["valid"] == n and m["counts"]["invalid"] == 0
        assert s.state(stage) == "done"
    assert f"{len(responses)} ratings: {len(responses)} valid, 0 invalid" in example_flow["texts"]["02_ratings"]
    # example.yaml asks for soft verdicts from a judge file with logprobs: the fake server returns them
    assert ratings["expected_score"].between(1, 7).all() and rankings["p_a"].between(0, 1).all()


def _mostly_prose(original):
    """A judge that answers about 4 prompts in 5 with prose that holds no score and no choice."""
    def reply_for(prompt: str) -> str:
        if int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) % 5 == 0:
            return original(prompt)
        return "I find this answer somewhat helpful, though it could be clearer and more specific."
    return reply_for


@pytest.mark.slow
def test_mostly_unparsable_judge_completes_with_counts(example_flow, tmp_path, monkeypatch):
    """A judge whose replies are mostly unparsable: 01-03 complete, the counts of invalid replies are in
    the manifests and visible in the executed notebooks, and nothing beyond 01's responses was judged."""
    import fake_openai
    from sflib.study import load

    outputs = tmp_path / "outputs"
    shutil.copytree(example_flow["outputs"] / "generations", outputs / "generations")  # SmolLM2's samples, cached
    monkeypatch.setenv("SFLIB_OUTPUTS", str(outputs))
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    noisy = _mostly_prose(fake_openai.reply_for)
    monkeypatch.setattr(fake_openai, "reply_for", noisy)
    try:  # the server's replies may live in their own module (tests/fake_replies.py)
        import fake_replies
    except ImportError:
        pass
    else:
        monkeypatch.setattr(fake_replies, "reply_for", noisy)
    with fake_openai.FakeOpenAI(latency=0.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        study_file = _example_study(tmp_path, "noisy")
        texts = _run_flow(study_file, tmp_path / "executed")
        assert server.requests > 0
    s = load(study_file)
    responses = s.read("responses")
    for stage, what, notebook in (("ratings", "ratings", "02_ratings"), ("rankings", "ranked pairs", "03_rankings")):
        table, counts = s.read(stage), s.manifest(stage)["counts"]
        assert counts["n"] == len(table) and counts["invalid"] > counts["n"] / 2, counts
        assert counts["reasons"].get("reply could not be parsed") == counts["invalid"]
        assert counts["valid"] + counts["invalid"] + counts["failed"] == counts["n"]
        line = f"{counts['n']} {what}: {counts['valid']} valid, {counts['invalid']} invalid"
        assert line in texts[notebook], f"{notebook} shows its invalid count"
        assert "Traceback" not in texts[notebook]
        if counts["valid"] == 0:
            assert f"none of the {counts['n']} {what} is valid" in texts[notebook]
    assert sorted(s.read("ratings")["response_id"]) == sorted(responses["response_id"])


@pytest.mark.slow
def test_unreachable_policy_server_gives_empty_stages_not_tracebacks(tmp_path, monkeypatch):
    """A study whose policy server is down: 01 saves no responses with the reason, 02 and 03 say in one
    line that there is nothing to judge and save empty stages; no notebook stops, nothing is noisy."""
    import socket

    from sflib.study import load

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    study_file = _example_study(tmp_path, "down")
    study_file.write_text(study_file.read_text().replace("name: local:smollm2", "name: openai:nowhere"))
    texts = _run_flow(study_file, tmp_path / "executed")
    s = load(study_file)
    counts = s.manifest("responses")["counts"]
    assert counts["n"] == 0 and counts["failed"] == counts["instructions"] * counts["k"] > 0
    assert "01_generate: no responses: " in texts["01_generate"] and "openai:nowhere failed" in texts["01_generate"]
    for stage, what, notebook in (("ratings", "ratings", "02_ratings"), ("rankings", "ranked pairs", "03_rankings")):
        assert s.manifest(stage)["counts"]["n"] == 0 and s.state(stage) == "done"
        assert f"{notebook}: nothing to judge: the responses stage is empty; saved an empty {what} table" in texts[notebook]


@pytest.mark.slow
def test_consistency_notebook_shows_humans_beside_the_ai_judge(tmp_path, monkeypatch):
    """Human answers in the study's store (here two SIMULATED annotators, written through the widget's own
    session) appear in notebook 04 beside the AI judge, with their agreement on the overlap."""
    from sflib import human, study

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    s = study.load("paper")
    human.simulated_answers(s.store_path, human.study_material("paper"), names=("ann-a", "ann-b"))
    out = tmp_path / "04.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "04_consistency.ipynb"), str(out),
                        parameters={"quick": True, "figures_dir": str(tmp_path / "figures")},
                        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    text = out.read_text(encoding="utf-8")
    assert "ann-a (human, own pairs): consistency" in text and "ann-b (human, own pairs): consistency" in text
    assert "(AI, the pairs the humans ranked): consistency" in text
    assert "agreement on rankings (ann-a · ann-b)" in text
    assert (tmp_path / "figures" / "04_humans_beside_ai.png").exists()
    assert nbcheck.inline_images(out) >= len(nbcheck.saved_figures(out)) and nbcheck.noise(out) == []
