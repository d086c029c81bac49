"""Every numbered notebook runs headlessly in quick mode, in pipeline order, writes figures, and
leaks no secret into its executed copy or its figures.

The notebooks share one temporary outputs folder (SFLIB_OUTPUTS) because later stages read what
earlier ones wrote (05's reward models feed 06, 06's outputs feed 07), exactly as in run_all.sh.
"""
import json
import os
from pathlib import Path

import pytest

pm = pytest.importorskip("papermill")

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


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:1] == ["00"]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(notebook, shared_outputs, tmp_path):
    src = json.loads(notebook.read_text(encoding="utf-8"))
    assert src["metadata"].get("kernelspec") and src["metadata"].get("language_info"), "papermill needs both"
    assert not any(c.get("outputs") for c in src["cells"] if c["cell_type"] == "code"), "commit notebooks without outputs"
    tagged = [c for c in src["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged and "quick" in "".join(tagged[0]["source"]) and "figures_dir" in "".join(tagged[0]["source"])

    figures = tmp_path / "figures"
    out = tmp_path / notebook.name
    pm.execute_notebook(str(notebook), str(out), parameters={"quick": True, "figures_dir": str(figures)},
                        cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    pngs = sorted(figures.glob("*.png"))
    assert pngs, f"{notebook.name} saved no figure"
    assert {p.stem for p in pngs} == {p.stem for p in figures.glob("*.pdf")}, "every figure as PNG and PDF"
    for path in [out, *figures.iterdir()]:
        assert FAKE_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"


@pytest.mark.slow
def test_real_judge_chain_feeds_consistency(tmp_path, monkeypatch):
    """With a non-recorded judge, 02 and 03 save fresh feedback that 04 then analyses (not the vendored files).

    The judge is the project's fake OpenAI-compatible server, reached through the real client."""
    from fake_openai import FakeOpenAI

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeOpenAI(latency=0.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        params = {"quick": True, "figures_dir": str(tmp_path / "figures"), "judge": "openai:fake-judge"}
        for name in ("02_ratings", "03_rankings", "04_consistency"):
            pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                                parameters=params, cwd=str(ROOT / "notebooks"), kernel_name="python3",
                                progress_bar=False)
        assert server.requests > 0
    feedback = tmp_path / "outputs" / "feedback"
    assert (feedback / "ratings.jsonl").exists() and (feedback / "rankings.jsonl").exists()
    executed = (tmp_path / "04_consistency.ipynb").read_text()
    assert str(feedback / "ratings.jsonl") in executed          # 04 read the fresh feedback
    assert "ratings.jsonl + rankings.jsonl: " in executed        # its report is labelled with those files
    for path in [*tmp_path.glob("*.ipynb"), *(tmp_path / "outputs").glob("*.sqlite*")]:
        assert FAKE_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"
