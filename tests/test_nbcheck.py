"""nbcheck on a tiny notebook executed with papermill: inline figures, save markers, noise."""
import os
from pathlib import Path

import nbformat
import pytest

import nbcheck

REPO = Path(__file__).resolve().parents[1]

CELLS = [
    # 1: a figure from the library, saved; the cell ends with save_figure's (quiet) return value
    "import pandas as pd\nfrom sflib import plots\n"
    "fig = plots.plot_decisions(pd.Series({'a': 5, 'b': 3, 'equal': 2}))\n"
    "plots.save_figure(fig, 'decisions', figures_dir)",
    # 2: saved without showing: recorded as not shown
    "fig = plots.plot_rm_accuracy({'ratings': (0.47, 17), 'rankings': (0.59, 17)})\n"
    "plots.save_figure(fig, 'hidden', figures_dir, show=False)",
    # 3: noise of every kind
    "import warnings\nprint('written to /tmp/run/x.json')\nprint(f'{116.0:f}')\nprint('see SPEC.md')\n"
    "warnings.warn('careful')",
    # 4: clean output
    "print('agreement 0.5 on 17 pairs')",
    # 5: a figure that must not be drawn
    "plots.plot_position_bias({'pairs': 10}, measured=False, reason='recorded verdicts replayed in both orders')",
    # 6: the backend in the kernel
    "import matplotlib\nprint(matplotlib.get_backend())",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "SFLIB_FIGURES": str(tmp / "default_figures")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        src = nbcheck.make_notebook(CELLS, tmp / "demo.ipynb", parameters="figures_dir = None")
        out = nbcheck.execute(src, tmp / "demo.out.ipynb", parameters={"figures_dir": str(tmp / "figs")}, cwd=tmp)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out, tmp


def _cell(nb_path, source_start):
    nb = nbformat.read(nb_path, as_version=4)
    return next(c for c in nb.cells if c.source.startswith(source_start))


def test_saved_figure_is_inline_once_and_on_disk(executed):
    out, tmp = executed
    assert nbcheck.saved_figures(out) == ["decisions", "hidden"]
    assert nbcheck.unshown_figures(out) == ["hidden"]
    assert nbcheck.inline_images(out) == 1  # shown once: the inline backend does not draw it again
    for ext in ("png", "pdf"):
        assert (tmp / "figs" / f"decisions.{ext}").stat().st_size > 1000
    assert (tmp / "figs" / "decisions.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (tmp / "default_figures").exists()
    cell = _cell(out, "import pandas")
    assert [o.output_type for o in cell.outputs] == ["display_data"]  # no execute_result listing paths
    assert "figs" not in str(cell.outputs[0].data.get("text/plain"))


def test_inline_backend_and_not_measured_figure(executed):
    out, _ = executed
    backend = "".join(o.get("text", "") for o in _cell(out, "import matplotlib").outputs)
    assert "inline" in backend
    cell = _cell(out, "plots.plot_position_bias")
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "position bias not shown: recorded verdicts replayed" in text
    assert not any("image/png" in o.get("data", {}) for o in cell.outputs)


def test_noise_found_where_it_is_and_nowhere_else(executed):
    out, _ = executed
    found = nbcheck.noise(out)
    nb = nbformat.read(out, as_version=4)
    noisy = next(i for i, c in enumerate(nb.cells) if c.source.startswith("import warnings"))
    kinds = {line.split(": ")[1] for line in found if line.startswith(f"cell {noisy}:")}
    assert {"machine path", "float spam", "SPEC", "warning"} <= kinds, found
    assert all(line.startswith(f"cell {noisy}:") for line in found), found


def test_noise_on_a_handmade_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["Traceback ..."]),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "1"},
                                                     "text/plain": "Converting: 100%"}),
        nbformat.v4.new_output("stream", name="stdout", text="{'loss': 0.69, 'grad_norm': 1.0, 'epoch': 1.0}\n"),
        nbformat.v4.new_output("display_data", data={"text/html": '<img src="data:image/png;base64,AAAA/tmp/AAAA">',
                                                     "image/png": "AAAA"}),
        nbformat.v4.new_output("stream", name="stdout", text="https://example.org/home/x and ~/cache, 1.000000001\n"),
    ]
    nb.cells.append(cell)
    path = tmp_path / "hand.ipynb"
    nbformat.write(nb, path)
    kinds = [line.split(": ")[1] for line in nbcheck.noise(path)]
    assert kinds == ["traceback", "progress widget", "trainer log dict"], nbcheck.noise(path)
    assert nbcheck.inline_images(path) == 1 and nbcheck.saved_figures(path) == []
