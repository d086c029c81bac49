"""Notebook 08 runs headless (papermill, no human): it shows the widgets and analyses a labelled simulated example."""
import json
import os
from pathlib import Path

import pytest

import nbcheck

papermill = pytest.importorskip("papermill")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_notebook_08_runs_headless(tmp_path, monkeypatch):
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "08.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "08_human_feedback.ipynb"), str(out),
                               parameters={"quick": True, "figures_dir": str(tmp_path / "figures")},
                               cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    text = json.dumps(json.loads(out.read_text())["cells"])
    from sflib import human

    ai_name = human.study_material("paper")["ai_name"]  # the recorded GPT-3.5-Turbo judge of the paper study
    assert "SIMULATED annotators" in text and "Krippendorff" in text and ai_name and ai_name in text
    assert "application/vnd.jupyter.widget-view+json" in text  # the annotator widgets were displayed
    assert (tmp_path / "figures" / "08_human_vs_ai.png").exists()
    # clean outputs: every saved figure shown inline, no warnings, tracebacks or machine paths; the only
    # widgets are the two annotator widgets themselves (no progress bars)
    assert nbcheck.saved_figures(out) == ["08_human_vs_ai"]
    assert nbcheck.inline_images(out) >= len(nbcheck.saved_figures(out))
    assert nbcheck.unshown_figures(out) == []
    widgets = nbcheck.widgets(out)
    assert len(widgets) == 2 and all("human:annotator-1" in n for n in widgets), widgets
    assert nbcheck.noise(out) == []
    # the simulated answers never reach the real store
    from sflib.feedback.store import AnnotationStore

    st = AnnotationStore(tmp_path / "outputs" / "annotations.sqlite")
    assert human.known_annotators(st) == []
    st.close()
