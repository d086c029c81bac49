"""Notebook 08 runs headless (papermill, no human): it shows the widgets; before any answer its analysis cells say
"no answers yet" (no stale or made-up results); with simulate=True it analyses a labelled simulated example."""
import json
import os
from pathlib import Path

import pytest

import nbcheck

papermill = pytest.importorskip("papermill")
ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, monkeypatch, **parameters) -> tuple[Path, str]:
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "08.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "08_human_feedback.ipynb"), str(out),
                               parameters={"quick": True, "figures_dir": str(tmp_path / "figures"), **parameters},
                               cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    return out, json.dumps(json.loads(out.read_text())["cells"], ensure_ascii=False)


def _clean(out: Path) -> None:
    """Every saved figure shown inline, no warnings, tracebacks or machine paths; the only widgets are the two
    annotator widgets themselves."""
    assert nbcheck.saved_figures(out) == ["08_human_vs_ai"]
    assert nbcheck.inline_images(out) >= len(nbcheck.saved_figures(out))
    assert nbcheck.unshown_figures(out) == []
    widgets = nbcheck.widgets(out)
    assert len(widgets) == 2, widgets
    assert nbcheck.noise(out) == []


@pytest.mark.slow
def test_notebook_08_before_any_answer_says_so(tmp_path, monkeypatch):
    from sflib import human

    out, text = _run(tmp_path, monkeypatch)
    assert text.count(human.notebook.NO_ANSWERS_YET) >= 3  # who answered, agreement, humans beside the AI judge
    assert "SIMULATED" not in text and "Krippendorff's alpha (ordinal)" not in text
    assert "application/vnd.jupyter.widget-view+json" in text and "human:annotator-1" in text
    assert "every item is yours" in text
    assert (tmp_path / "figures" / "08_human_vs_ai.png").exists()  # the AI judge alone
    _clean(out)


@pytest.mark.slow
def test_notebook_08_simulated_example_and_team(tmp_path, monkeypatch):
    from sflib import human

    out, text = _run(tmp_path, monkeypatch, simulate=True, annotator="bob", team=["alice", "bob"], overlap=0.5)
    ai_name = human.study_material("paper")["ai_name"]
    assert "SIMULATED annotators" in text and "Krippendorff" in text and ai_name and ai_name in text
    assert "human:bob" in text and "shared among 2 annotators (alice, bob)" in text
    assert human.notebook.NO_ANSWERS_YET not in text
    _clean(out)
    # the simulated answers never reach the real store
    from sflib.feedback.store import AnnotationStore

    st = AnnotationStore(tmp_path / "outputs" / "annotations.sqlite")
    assert human.known_annotators(st) == []
    st.close()


@pytest.mark.slow
def test_notebook_08_refused_name_stops_run_all_with_one_line(tmp_path, monkeypatch):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        _run(tmp_path, monkeypatch, annotator="Bob Smith!")
    assert err.value.ename == "Stop"
    assert "'!' are not allowed" in err.value.evalue and "parameters cell" in err.value.evalue
    assert err.value.traceback and all("Traceback" not in line for line in err.value.traceback)
    assert len(err.value.traceback) == 1  # one line, not a stack


def test_open_annotation_stops_with_one_line_for_a_busy_annotator_and_a_bad_team(tmp_path, monkeypatch):
    """What notebook 08's first code cell raises: Stop, whose traceback is its one line."""
    pytest.importorskip("anywidget")
    from sflib import human
    from sflib.feedback.store import AnnotationStore
    from sflib.human.lease import _Tables

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    store = tmp_path / "annotations.sqlite"
    st = AnnotationStore(store)
    tables = _Tables(st)
    now = __import__("time").time()
    tables.set_lease("alice", "ratings", dict(pid=1, host=__import__("socket").gethostname(), token="other",
                                              acquired_at=now, seen_at=now))  # pid 1: a live process elsewhere
    tables.close()
    st.close()
    with pytest.raises(human.notebook.Stop) as stop:
        human.notebook.open_annotation(annotator="alice", store_path=store, n_instructions=1)
    (line,) = stop.value._render_traceback_()
    assert "already annotating ratings in another kernel" in line and "set force = True in the parameters cell" in line
    work = human.notebook.open_annotation(annotator="alice", store_path=store, n_instructions=1, force=True)
    assert set(work.annotators) == {"ratings", "rankings"}
    work.close()
    with pytest.raises(human.notebook.Stop, match="not in team"):
        human.notebook.open_annotation(annotator="carol", team=["alice", "bob"], store_path=store, n_instructions=1)
    work = human.notebook.open_annotation(annotator="bob", team=["alice", "bob"], overlap=1.0, store_path=store,
                                          n_instructions=2)
    plan = work.assignment["ratings"]
    assert set(plan["annotator"]) == {"alice", "bob"} and plan["overlap"].all()  # every item seen by both
    assert "shared among 2 annotators (alice, bob); 100% of the items" in work.description()
    work.close()
