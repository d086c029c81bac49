"""Notebooks 05–07 only display what sflib computed: no if / for / while / def / class / try / comprehension
in any code cell (parsed with ast, so a word in a string does not count) and at most 40 code lines each."""
import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BRANCHING = (ast.If, ast.IfExp, ast.For, ast.While, ast.FunctionDef, ast.ClassDef, ast.Try, ast.ListComp,
             ast.DictComp, ast.SetComp, ast.GeneratorExp, ast.Lambda)


def _code(name):
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", ["05_reward_models", "06_best_of_n", "07_evaluation"])
def test_notebook_is_thin(name):
    cells = _code(name)
    lines = [ln for src in cells for ln in src.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) <= 40, f"{name}: {len(lines)} code lines"
    for src in cells:
        found = [type(n).__name__ for n in ast.walk(ast.parse(src)) if isinstance(n, BRANCHING)]
        assert not found, f"{name}: a cell has {found}:\n{src}"
