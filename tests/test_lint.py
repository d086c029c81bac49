"""The linter configured in pyproject.toml ([tool.ruff]) passes on the code, and the parser's examples run."""
from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "sflib", "tests", "bench", "scripts"],
                         cwd=ROOT, capture_output=True, text=True)
    # ruff is in the test extra (pip install -e ".[test]"); a missing ruff fails here too
    assert res.returncode == 0, res.stdout + res.stderr


def test_parser_examples_run_as_doctests():
    from sflib.feedback import parsing

    result = doctest.testmod(parsing, verbose=False)
    assert result.attempted >= 15, "the parser's examples are gone from its docstrings"
    assert result.failed == 0
