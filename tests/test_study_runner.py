"""The study runner: papermill on throwaway notebooks, executed copies, SFLIB_OUTPUTS, budget, failures."""
from __future__ import annotations

import json
import os

import nbformat
import pytest

from sflib.core.paths import root
from sflib.study import load
from sflib.study.runner import BudgetExceeded, NotebookFailed, check_params, parse_only, run

STUDY = """\
name: runner-test
budget_usd: {budget}
instructions:
  paths: [instructions.jsonl]
policy:
  name: local:smollm2
  k: 2
feedback:
  judge: openai:gpt-4o-mini
best_of_n:
  n: 2
  sample: 2
evaluation:
  judge: openai:gpt-4o-mini
"""


def notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('study = "paper"\nquick = False\nvalue = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = """\
import os, json, pathlib
out = pathlib.Path(os.environ["SFLIB_OUTPUTS"])
(out / "ran-{name}.json").write_text(json.dumps({{"study": study, "quick": quick, "value": value,
    "figures": os.environ.get("SFLIB_FIGURES"), "cwd": os.getcwd()}}))
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("SFLIB_OUTPUTS", str(out))
    monkeypatch.delenv("SFLIB_FIGURES", raising=False)
    (tmp_path / "instructions.jsonl").write_text(json.dumps({"instruction": "Say hi.", "input": ""}) + "\n")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    return tmp_path, out, nbs


def write_study(tmp_path, budget):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(budget=budget))
    return path


def test_run_writes_executed_copies_under_sflib_outputs(setup):
    tmp_path, out, nbs = setup
    notebook(nbs / "01_first.ipynb", WRITE.format(name="01"))
    notebook(nbs / "04_second.ipynb", WRITE.format(name="04"))
    notebook(nbs / "05_skipped.ipynb", "raise RuntimeError('must not run')")
    path = write_study(tmp_path, "null")
    runs_in_repo = sorted(os.listdir(root() / "outputs" / "runs")) if (root() / "outputs" / "runs").exists() else []
    result = run(path, only="01,4", params={"value": 7}, notebooks_dir=nbs, progress=False, log=lambda m: None)
    study = load(path)
    kept = study.folder / "notebooks"
    assert sorted(p.name for p in kept.iterdir()) == ["01_first.ipynb", "04_second.ipynb"]
    assert result.executed == [kept / "01_first.ipynb", kept / "04_second.ipynb"]
    latest = out / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == result.run_dir.resolve()
    assert sorted(p.name for p in latest.iterdir()) == ["01_first.ipynb", "04_second.ipynb", "kernel.log", "study.yaml",
                                                        "timings.tsv"]
    assert (latest / "timings.tsv").read_text().splitlines()[0] == "notebook\tseconds"
    ran = json.loads((out / "ran-01.json").read_text())
    assert ran["study"] == str(path.resolve()) and ran["quick"] is False and ran["value"] == 7
    assert ran["figures"] == str(out / "figures") and ran["cwd"] == str(nbs)
    assert not (out / "ran-05.json").exists()
    executed = json.loads((kept / "04_second.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    # nothing under the repository
    now = sorted(os.listdir(root() / "outputs" / "runs")) if (root() / "outputs" / "runs").exists() else []
    assert now == runs_in_repo
    assert str(result.run_dir).startswith(str(out))


def test_failing_notebook_stops_the_run_with_its_executed_copy(setup):
    tmp_path, out, nbs = setup
    notebook(nbs / "01_fails.ipynb", "raise ValueError('broken on purpose')")
    notebook(nbs / "02_after.ipynb", WRITE.format(name="02"))
    with pytest.raises(NotebookFailed) as e:
        run(write_study(tmp_path, "null"), notebooks_dir=nbs, progress=False, log=lambda m: None)
    assert "01_fails.ipynb failed" in str(e.value) and "ValueError: broken on purpose" in str(e.value)
    assert e.value.path.exists() and "broken on purpose" in e.value.path.read_text()
    assert str(e.value.path) in str(e.value)
    assert not (out / "ran-02.json").exists()


def test_budget_stops_before_the_stage_that_would_exceed_it(setup):
    tmp_path, out, nbs = setup
    notebook(nbs / "01_generate.ipynb", WRITE.format(name="01"))   # local policy: free
    notebook(nbs / "02_ratings.ipynb", WRITE.format(name="02"))    # a paid judge
    with pytest.raises(BudgetExceeded, match=r"stopping before 02_ratings: spent \$0.00 \+ planned \$0.00 for "
                                             r"stage ratings would exceed budget_usd \$0.00"):
        run(write_study(tmp_path, "0.0000001"), notebooks_dir=nbs, progress=False, log=lambda m: None)
    assert (out / "ran-01.json").exists() and not (out / "ran-02.json").exists()


def test_parameters_and_only_are_checked():
    with pytest.raises(ValueError, match="refusing parameter 'api_key'"):
        check_params({"judge": "x", "api_key": "sk-1"})
    assert parse_only("2, 03") == {"02", "03"}
    with pytest.raises(ValueError, match="notebook numbers"):
        parse_only("ratings")


def test_cli_run_passes_parameters_and_reports_a_budget_stop(setup, capsys):
    from sflib.cli import main

    tmp_path, out, nbs = setup
    notebook(nbs / "01_generate.ipynb", WRITE.format(name="01"))
    notebook(nbs / "02_ratings.ipynb", WRITE.format(name="02"))
    path = write_study(tmp_path, "null")
    assert main(["study", "run", str(path), "--only", "01", "-p", "value", "3", "--quick", "--no-progress",
                 "--notebooks", str(nbs)]) == 0
    ran = json.loads((out / "ran-01.json").read_text())
    assert (ran["value"], ran["quick"]) == (3, True)
    assert main(["study", "run", str(path), "-p", "openai_api_key", "x", "--notebooks", str(nbs)]) == 1
    assert "refusing parameter 'openai_api_key'" in capsys.readouterr().err
    path.write_text(STUDY.format(budget="0.0000001"))
    assert main(["study", "run", str(path), "--no-progress", "--notebooks", str(nbs)]) == 1
    err = capsys.readouterr().err
    assert "error: study runner-test: stopping before 02_ratings" in err and "Traceback" not in err


def test_a_human_feedback_judge_without_answers_is_named_with_what_to_do(setup):
    """``feedback.judge: human:alice`` before alice has answered: the run finishes (no hang, no crash) and
    its last line says how much is answered and that notebook 08 is where to annotate."""
    import pandas as pd

    tmp_path, out, nbs = setup
    notebook(nbs / "04_consistency.ipynb", WRITE.format(name="04"))
    path = write_study(tmp_path, "null")
    path.write_text(path.read_text().replace("judge: openai:gpt-4o-mini\nbest_of_n", "judge: human:alice\nbest_of_n"))
    study = load(path)
    study.save("responses", tables={"responses": pd.DataFrame({
        "instruction_id": ["i1"] * 4, "response_id": ["r1", "r2", "r3", "r4"], "instruction": ["Say hi."] * 4,
        "input": [""] * 4, "response": ["Hi.", "Hello.", "Hey.", "Hi there."]})})

    def feedback(valid):
        for stage, n in (("ratings", 4), ("rankings", 6)):
            study.save(stage, tables={stage: pd.DataFrame({"x": [1]})}, inputs=["responses"], judge="human:alice",
                       counts={"n": n, "valid": min(valid, n), "failed": n - min(valid, n)})

    feedback(0)
    lines = []
    run(path, notebooks_dir=nbs, progress=False, log=lines.append)
    assert (out / "ran-04.json").exists()
    assert lines[-1].startswith("study runner-test: human:alice has answered 0 of 4 ratings and 0 of 6 pairs so far")
    assert "notebook 08" in lines[-1] and "annotator = 'alice'" in lines[-1] and f"study run {path} again" in lines[-1]
    feedback(6)
    lines.clear()
    run(path, notebooks_dir=nbs, progress=False, log=lines.append)
    assert lines[-1].startswith("== done") and not any("human:alice" in m for m in lines)


SAVE_RATINGS = """\
import os, json, pathlib
import pandas as pd
from sflib.study import load
out = pathlib.Path(os.environ["SFLIB_OUTPUTS"])
runs = out / "ran-02.txt"
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
load(study).save("ratings", tables={"ratings": pd.DataFrame({"response_id": ["r1"], "score": [value]})},
                 counts={"n": 1})
"""


def test_skip_done_runs_only_what_is_missing_stale_or_of_the_other_mode(setup):
    tmp_path, out, nbs = setup
    notebook(nbs / "02_ratings.ipynb", SAVE_RATINGS)
    notebook(nbs / "00_overview.ipynb", WRITE.format(name="00"))
    path = write_study(tmp_path, "null")
    logs = []
    run(path, notebooks_dir=nbs, progress=False, log=logs.append)                     # first run: 02 runs
    assert (out / "ran-02.txt").read_text() == "x"
    result = run(path, notebooks_dir=nbs, progress=False, log=logs.append, skip_done=True)
    assert (out / "ran-02.txt").read_text() == "x"                                     # done and current: skipped
    assert any("02_ratings.ipynb: stage ratings is done and current" in m for m in logs)
    assert result.timings["notebook"].tolist() == ["00_overview.ipynb", "02_ratings.ipynb"]
    (out / "ran-00.json").unlink()
    run(path, notebooks_dir=nbs, progress=False, log=logs.append, skip_done=True)
    assert (out / "ran-00.json").exists()                                              # 00 has no stage: always runs
    run(path, notebooks_dir=nbs, progress=False, log=logs.append, skip_done=True, quick=True)
    assert (out / "ran-02.txt").read_text() == "xx"                                    # a full output is not a quick one
    path.write_text(path.read_text().replace("judge: openai:gpt-4o-mini\nbest_of_n", "judge: openai:gpt-4o\nbest_of_n"))
    run(path, notebooks_dir=nbs, progress=False, log=logs.append, skip_done=True, quick=True)
    assert (out / "ran-02.txt").read_text() == "xxx"                                   # stale (feedback changed): runs
    run(path, notebooks_dir=nbs, progress=False, log=logs.append)
    assert (out / "ran-02.txt").read_text() == "xxxx"                                  # without skip_done: always runs
    assert load(path).manifest("ratings")["quick"] is False                            # the runner recorded the mode
    m = load(path).manifest("ratings")
    m.pop("quick")
    (load(path).stage_dir("ratings") / "manifest.json").write_text(json.dumps(m))        # written by hand: mode unknown
    run(path, notebooks_dir=nbs, progress=False, log=logs.append, skip_done=True)
    assert (out / "ran-02.txt").read_text() == "xxxxx"                                 # unknown mode: run again


# ----------------------------------------------------------------------------- a stage is done only when its work is

SERVER_STUDY = """\
name: server-down
seed: {seed}
instructions:
  paths: [instructions.jsonl]
policy:
  name: {policy}
  k: 2
  max_new_tokens: 16
feedback:
  judge: openai:gpt-4o-mini
"""

POLICY = """\
provider: openai
model: pol
base_url: {url}
api_key_env: null
max_retries: 0
timeout: 5
concurrency: 4
temperature: 1.0
price_input_per_mtok: 0.0
price_output_per_mtok: 0.0
"""


def test_a_stage_with_failed_items_is_incomplete_until_a_skip_done_run_finishes_it(setup, fake_openai_factory, capsys):
    """Notebook 01 against a policy server that fails some requests: the stage is recorded incomplete
    (status shows it, study run exits 3); --skip-done re-runs it and asks only the failed samples; a
    stage done is not run again; a new seed samples anew."""
    from sflib.cli import main
    from sflib.study.planner import status

    tmp_path, out, _ = setup
    down = {"on": True}
    server = fake_openai_factory(schedule=lambda n, prompt: "500" if down["on"] and "poem" in prompt else "ok")
    lines = ["Write a poem about the sea.", "Say hi.", "Write a poem about rain.", "Name a colour."]
    (tmp_path / "instructions.jsonl").write_text("".join(json.dumps({"instruction": t, "input": ""}) + "\n"
                                                         for t in lines))
    (tmp_path / "pol.yaml").write_text(POLICY.format(url=server.url))
    path = tmp_path / "study.yaml"
    path.write_text(SERVER_STUDY.format(seed=0, policy=tmp_path / "pol.yaml"))
    run_01 = ["study", "run", str(path), "--only", "01", "--no-progress"]

    capsys.readouterr()
    assert main(run_01) == 3                                              # two instructions' samples failed
    err = capsys.readouterr().err
    assert "incomplete: 01_generate" in err and "--skip-done" in err
    study = load(path)
    assert study.state("responses") == "incomplete"
    assert status(study).set_index("stage").loc["responses", "state"] == "incomplete"
    assert server.outcomes["ok"] == 2                                     # one request (n = 2) per instruction

    down["on"] = False                                                    # the server is back
    server.reset_counts()
    assert main(run_01 + ["--skip-done"]) == 0                            # an incomplete stage is run again ...
    assert server.requests == 2 and all("poem" in p for p in server.prompts)  # ... asking only what failed
    study = load(path)
    assert study.state("responses") == "done" and len(study.read("responses")) == 8

    server.reset_counts()
    capsys.readouterr()
    assert main(run_01 + ["--skip-done"]) == 0                            # done and current: not run again
    assert server.requests == 0 and "done and current" in capsys.readouterr().err
    assert main(run_01) == 0 and server.requests == 0                     # run again: every sample from the store

    path.write_text(SERVER_STUDY.format(seed=1, policy=tmp_path / "pol.yaml"))
    assert main(run_01 + ["--skip-done"]) == 0                            # a new seed samples anew
    assert server.requests == 4


def test_cli_run_interrupted_is_130_with_one_line(setup):
    """Ctrl-C during a notebook: exit 130, one "interrupted:" line, no traceback."""
    import signal
    import subprocess
    import sys
    import time

    tmp_path, out, nbs = setup
    notebook(nbs / "01_generate.ipynb", "import pathlib, os, time\n"
                                        "(pathlib.Path(os.environ['SFLIB_OUTPUTS']) / 'started').write_text('x')\n"
                                        "time.sleep(120)")
    path = write_study(tmp_path, "null")
    proc = subprocess.Popen([sys.executable, "-m", "sflib", "study", "run", str(path), "--notebooks", str(nbs),
                             "--no-progress"], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(root())),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not (out / "started").exists() and time.monotonic() - start < 180 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in stdout + err and "KeyboardInterrupt" not in stdout + err
    assert err.strip().splitlines()[-1].startswith("interrupted: ")


def test_budget_is_checked_before_notebook_09_collects_other_protocols(setup):
    tmp_path, out, nbs = setup
    notebook(nbs / "01_generate.ipynb", WRITE.format(name="01"))   # local policy: free
    notebook(nbs / "09_protocols.ipynb", WRITE.format(name="09"))  # pairwise-5way with a paid judge
    spec = write_study(tmp_path, "0.0000001")
    protocols = "  protocols: [rating-1-7, pairwise-3way, pairwise-5way]\n"
    text = spec.read_text().replace("  judge: openai:gpt-4o-mini\nbest_of_n",
                                    "  judge: openai:gpt-4o-mini\n" + protocols + "best_of_n")
    spec.write_text(text)
    with pytest.raises(BudgetExceeded, match=r"stopping before 09_protocols: .* for stage protocols would exceed"):
        run(spec, notebooks_dir=nbs, progress=False, log=lambda m: None, only="01,09")
    assert (out / "ran-01.json").exists() and not (out / "ran-09.json").exists()
