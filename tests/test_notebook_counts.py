"""One analysis: every count and headline number shown in notebooks 00-08, the README and ``study status``
agree, and notebook cells hold no analysis (no if / for / def / class beyond a documented allowance).

The count test runs the paper study once in quick mode into a temporary outputs folder (a few minutes:
papermill, every notebook) — or, with ``SFLIB_PAPER_RUN=<folder of executed notebooks>`` (e.g.
``outputs/studies/paper/notebooks`` after ``./run_all.sh``), reads that run; ``SFLIB_OUTPUTS`` must then be
the run's outputs folder. The headline numbers (consistency 56.4% of 117 pairs; win rates 52.9 with n 51
under the rating protocol and 32.6 with n 46 under the ranking protocol) are the paper study's and must
not drift.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nbcheck  # tests/nbcheck.py

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# ------------------------------------------------------------------ no analysis in cells

#: branches and loops allowed per notebook, and why: 00-07 and 09 show findings computed in sflib and have
#: none; 08 (annotation widgets, sflib.human.notebook) has one cell exporting both human tables with a dict
#: comprehension over ("ratings", "rankings") (two nodes: the comprehension and its dict).
ALLOWANCE = {"00": 0, "01": 0, "02": 0, "03": 0, "04": 0, "05": 0, "06": 0, "07": 0, "08": 2, "09": 0}
BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
            ast.Lambda, ast.comprehension)


def branches(source: str) -> int:
    """if / for / while / def / class / lambda / comprehension nodes in a cell (IPython magics dropped)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return sum(isinstance(node, BRANCHES) for node in ast.walk(ast.parse(code)))


def code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_analysis_in_notebook_cells(notebook):
    cells = [("".join(c["source"])) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    found = sum(branches(c) for c in cells)
    allowed = ALLOWANCE[notebook.name[:2]]
    assert found <= allowed, f"{notebook.name}: {found} if/for/def/class/... in code cells (allowed {allowed})"
    if allowed == 0:
        assert sum(code_lines(c) for c in cells) <= 40, f"{notebook.name}: more than 40 lines of code"


def test_branch_counter_counts_what_it_says():
    assert branches("x = 1\nf(x)") == 0
    assert branches("if a:\n    pass\nfor i in x:\n    pass\ndef g():\n    pass") == 3
    assert branches("y = [i for i in x if i]\nz = a if b else c\nk = lambda v: v") == 3
    assert branches("%matplotlib inline\nx = 1") == 0


# ------------------------------------------------------------------ one count everywhere

PAPER = {"responses rated": 97, "pairs ranked": 118, "pairs compared": 117}


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """``(folder of executed notebooks, outputs folder)`` of the paper study."""
    given = os.environ.get("SFLIB_PAPER_RUN")
    if given:
        return Path(given), Path(os.environ.get("SFLIB_OUTPUTS", ROOT / "outputs"))
    out = tmp_path_factory.mktemp("paper_outputs")
    env = dict(os.environ, SFLIB_OUTPUTS=str(out), SFLIB_FIGURES=str(out / "figures"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "sflib", "study", "run", "paper", "--quick", "--no-progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out / "studies" / "paper" / "notebooks", out


def _text(nb_path: Path) -> str:
    nb = nbcheck._read(nb_path)
    return "\n".join(t for _, out in nbcheck._outputs(nb) for _, t in nbcheck._texts(out))


def _executed(folder: Path) -> dict[str, str]:
    found = {p.name[:2]: _text(p) for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))}
    assert set(found) >= {p.name[:2] for p in NOTEBOOKS}, f"executed notebooks missing in {folder}: {sorted(found)}"
    return found


#: how each count is written (findings counts and headlines); every match must carry the paper study's number
PATTERNS = {
    "responses rated": [r"responses rated(?: \(kept\))?: (\d+)", r"(\d+) of the \d+ responses have a valid rating",
                        r"released responses rated: (\d+)", r"(\d+) of its \d+ distinct responses have a rating"],
    "pairs ranked": [r"pairs ranked: (\d+)", r"(\d+) pairs ranked", r"released pairs ranked: (\d+)",
                     r"and (\d+) pairs a decision"],
    "pairs compared": [r"pairs compared: (\d+)", r"disagree on [\d.]+% of (\d+) pairs"],
}


def counts_shown(texts: dict[str, str]) -> dict[str, dict[str, set[int]]]:
    """count name -> notebook -> the numbers shown for it."""
    shown: dict[str, dict[str, set[int]]] = {}
    for name, patterns in PATTERNS.items():
        for nb, text in texts.items():
            values = {int(v) for p in patterns for v in re.findall(p, text)}
            if values:
                shown.setdefault(name, {})[nb] = values
    return shown


def test_counts_shown_parser():
    texts = {"02": "- responses rated: 97\n97 of the 98 responses have a valid rating", "04": "pairs compared: 116"}
    assert counts_shown(texts) == {"responses rated": {"02": {97}}, "pairs compared": {"04": {116}}}


def test_every_notebook_readme_and_status_show_one_set_of_counts(paper_run):
    folder, outputs = paper_run
    texts = _executed(folder)
    shown = counts_shown(texts)
    for name, expected in PAPER.items():
        assert shown.get(name), f"no notebook shows {name!r}"
        wrong = {nb: v for nb, v in shown[name].items() if v != {expected}}
        assert not wrong, f"{name}: expected {expected} everywhere, got {wrong}"
    # where each count must appear at least once
    assert {"00", "02", "04"} <= set(shown["responses rated"]) and {"00", "03", "04"} <= set(shown["pairs ranked"])
    # the headlines
    assert "disagree on 43.6% of 117 pairs" in texts["04"] and "agree on 56.4%" in texts["04"]
    assert re.search(r"52\.9\D.{0,120}?\b51\b", texts["07"], re.S), "07: rating protocol 52.9 (n 51)"
    assert re.search(r"32\.6\D.{0,120}?\b46\b", texts["07"], re.S), "07: ranking protocol 32.6 (n 46)"
    readme = (ROOT / "README.md").read_text()
    assert "56.4% of 117" in readme and "52.9 ± 9.7 (n = 51)" in readme and "32.6 ± 12.6 (n = 46)" in readme
    # study status reads the manifests: the same counts
    env = dict(os.environ, SFLIB_OUTPUTS=str(outputs))
    from sflib.study import load
    from sflib.study.planner import status

    os.environ["SFLIB_OUTPUTS"] = str(outputs)
    try:
        st = status(load("paper")).set_index("stage")
    finally:
        os.environ.update({k: v for k, v in env.items() if k == "SFLIB_OUTPUTS"})
    assert int(st.loc["ratings", "valid"]) == PAPER["responses rated"]
    assert int(st.loc["rankings", "valid"]) == PAPER["pairs ranked"]
    assert int(st.loc["consistency", "valid"]) == PAPER["pairs compared"]
