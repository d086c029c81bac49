"""Notebook 08 runs headless (papermill, no human): it shows the widgets and analyses a labelled simulated example."""
import json
import os
from pathlib import Path

import pytest

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
    assert "SIMULATED annotators" in text and "Krippendorff" in text and "GPT-3.5-Turbo (recorded)" in text
    assert "application/vnd.jupyter.widget-view+json" in text  # the annotator widgets were displayed
    assert (tmp_path / "figures" / "08_human_vs_ai.png").exists()
    # the simulated answers never reach the real store
    from sflib import human
    from sflib.store import AnnotationStore

    st = AnnotationStore(tmp_path / "outputs" / "annotations.sqlite")
    assert human.known_annotators(st) == []
    st.close()
