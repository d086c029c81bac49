"""train-rm, score and best-of-n read their input through sflib.io: any layout it reads is accepted
(AlpacaEval outputs, generation JSON, a dataset folder with --split), and every bad file ends in one
message naming the file, the row and the field, exit 1, no traceback, previous output untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sflib import bon as bon
from sflib import cli
from sflib import io as sfio
from sflib.core.data import DataError

# kind of table -> fields of its file (the last one is broken by a short row), two valid rows, headerless CSV?
SPECS = {
    "ratings": (["instruction", "input", "output", "score"],
                [["Add two and two.", "", "Four.", "7"], ["Name a colour.", "", "Red.", "6"]], True),
    "rankings": (["instruction", "input", "output1", "output2", "feedback"],
                 [["Add two and two.", "", "Four.", "5", "(a)"], ["Name a colour.", "", "Red.", "Blue.", "equal"]], True),
    "responses": (["instruction", "input", "response"],
                  [["Add two and two.", "", "Four."], ["Name a colour.", "", "Red."]], False),
}


from test_bad_files import _csv_text as _csv  # noqa: E402  (tests/ is on sys.path: one CSV helper)


def _bad_files(kind):
    """(name, make(tmp) -> path, row, field, text the message must hold) for a file of ``kind``."""
    fields, rows, headerless = SPECS[kind]

    def text(content, suffix, binary=False):
        def make(tmp):
            p = tmp / f"bad{suffix}"
            p.write_bytes(content) if binary else p.write_text(content, encoding="utf-8")
            return p
        return make

    generation = [{"instruction": "A", "input": "", "responses": ["x", "y"]},
                  {"instruction": "B", "input": "", "responses": []}]
    latin = _csv(fields, rows, header=not headerless).encode() + "caf\xe9,,x,5\n".encode("latin-1")
    short = _csv(fields, [rows[0], rows[1][:-1]], header=not headerless)
    # a generation JSON is a responses layout; a feedback reader finds no score/decision column in it
    responses_empty = (2, "responses", "no responses") if kind == "responses" else \
        (None, "response" if kind == "ratings" else "response1", "missing column")
    return [
        ("[]", text("[]", ".json"), None, None, "has no records"),
        ('"responses": []', text(json.dumps(generation), ".json"), *responses_empty),
        ("header-only CSV", text(_csv(fields, []), ".csv"), None, None, "no data rows"),
        ("short CSV row", text(short, ".csv"), 2, fields[-1], "too few fields"),
        ("folder", lambda tmp: (tmp / "folder").mkdir() or tmp / "folder", None, None, "is a folder"),
        ("non-UTF-8", text(latin, ".csv", binary=True), 3, fields[0], "not valid UTF-8"),
        ("missing file", lambda tmp: tmp / "nope.jsonl", None, None, "file not found"),
    ]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train_rm(kind):
    def run(data, tmp):
        out = tmp / "rm"
        out.mkdir()
        (out / "reward_model.json").write_text('{"kept": true}')  # a previous model: must stay as it is
        return ["train-rm", "--kind", kind, "--data", str(data), "--output", str(out), "--backbone", "minilm"], out
    return run


def _score(data, tmp):
    out = tmp / "previous"
    out.mkdir()
    (out / "scored.jsonl").write_text('{"kept": 1}\n')
    return ["score", "--rm", str(tmp / "no_rm_needed"), "--data", str(data), "--output", str(out / "scored.jsonl")], out


def _best_of_n(data, tmp):
    out = tmp / "bon"
    out.mkdir()
    (out / "ratings_rm_outputs.json").write_text('[{"kept": 1}]')
    (out / "ratings_rm_scored.jsonl").write_text('{"kept": 1}\n')
    return ["best-of-n", "--responses", str(data), "--rm", f"ratings_rm={tmp / 'no_rm_needed'}", "--out-dir", str(out)], out


COMMANDS = {"train-rm ratings": ("ratings", _train_rm("ratings")), "train-rm rankings": ("rankings", _train_rm("rankings")),
            "score": ("responses", _score), "best-of-n": ("responses", _best_of_n)}
CASES = [(command, *case) for command, (kind, _) in COMMANDS.items() for case in _bad_files(kind)]


@pytest.mark.parametrize("command,name,make,row,field,text", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_file_is_one_message_and_keeps_the_previous_output(tmp_path, capsys, command, name, make, row,
                                                                     field, text):
    kind, build = COMMANDS[command]
    data = make(tmp_path)
    argv, out = build(data, tmp_path)
    before = _snapshot(out)
    with pytest.raises(DataError) as e:  # the reader alone gives the same message
        sfio.read(kind, data)
    rc = cli.main(argv)
    captured = capsys.readouterr()
    assert rc == 1
    message = captured.err.strip()
    assert message == f"error: {e.value}" and "\n" not in message
    assert message.startswith(f"error: {data}") and text in message, message
    if row is not None:
        assert f"row {row}" in message, message
    if field is not None:
        assert f"field '{field}'" in message, message
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(out) == before  # nothing written, nothing replaced, no temporary files left
    assert not (tmp_path / "no_rm_needed").exists()


def test_the_bad_file_table_covers_the_brief():
    for kind in SPECS:
        names = {c[0] for c in _bad_files(kind)}
        assert {"[]", '"responses": []', "header-only CSV", "short CSV row", "folder", "non-UTF-8"} <= names


# ----------------------------------------------------------------------------- valid inputs

@pytest.fixture(scope="module")
def tiny_rm(tiny_rm_folder):
    """The tiny saved reward model of conftest.py, loaded, and its folder."""
    from sflib.rm import RewardModel

    return RewardModel.load(tiny_rm_folder), tiny_rm_folder


def _expected(rm, instructions, responses, inputs=None):
    from sflib.rm import score

    return score(rm, instructions, responses, 32, inputs, progress=False)


def test_score_keeps_alpacaeval_output_naming_and_never_writes_an_empty_table(tiny_rm, tmp_path):
    rm, folder = tiny_rm
    outputs = [{"instruction": "Name a fruit.", "output": "Apple.", "generator": "m", "dataset": "koala"},
               {"instruction": "Name a car.", "output": "", "generator": "m", "dataset": "oasst"}]
    data = tmp_path / "model_outputs.json"
    data.write_text(json.dumps(outputs))
    target = tmp_path / "scored.csv"
    assert cli.main(["score", "--rm", str(folder), "--data", str(data), "--output", str(target)]) == 0
    scored = pd.read_csv(target, keep_default_na=False)
    assert "output" in scored and "response" not in scored  # the file's name for the responses is kept
    assert scored["output"].tolist() == ["Apple.", ""] and scored["dataset"].tolist() == ["koala", "oasst"]
    np.testing.assert_allclose(scored["reward"], _expected(rm, ["Name a fruit.", "Name a car."], ["Apple.", ""]),
                               atol=1e-5)
    before = target.read_bytes()
    data.write_text("[]")  # no outputs: refused, the previous scores stay
    assert cli.main(["score", "--rm", str(folder), "--data", str(data), "--output", str(target)]) == 1
    assert target.read_bytes() == before
    # and the writer itself never replaces data with an empty table
    from sflib.rm.cli import _write_scored

    with pytest.raises(DataError, match="not replaced"):
        _write_scored(scored.iloc[:0], target)
    assert target.read_bytes() == before


def test_score_reads_a_generation_json_and_refuses_an_unknown_output_format_first(tiny_rm, tmp_path, capsys):
    rm, folder = tiny_rm
    data = tmp_path / "generations.json"
    data.write_text(json.dumps([{"instruction": "Add.", "input": "2 and 2", "responses": ["Four.", "4"]},
                                {"instruction": "Name a colour.", "responses": ["Red."]}]))
    target = tmp_path / "scored.jsonl"
    assert cli.main(["score", "--rm", str(folder), "--data", str(data), "--output", str(target)]) == 0
    scored = sfio.read_table(target, ["response", "reward", "response_id"])
    assert scored["response"].tolist() == ["Four.", "4", "Red."] and scored["input"].tolist() == ["2 and 2"] * 2 + [""]
    np.testing.assert_allclose(scored["reward"], _expected(rm, ["Add.", "Add.", "Name a colour."],
                                                           ["Four.", "4", "Red."], ["2 and 2", "2 and 2", ""]), atol=1e-5)
    capsys.readouterr()
    assert cli.main(["score", "--rm", str(tmp_path / "missing"), "--data", str(data),
                     "--output", str(tmp_path / "scored.txt")]) == 1
    assert "unsupported output format '.txt'" in capsys.readouterr().err
    assert not (tmp_path / "scored.txt").exists()


def test_rm_readers_are_the_io_readers(tmp_path):
    from sflib.core import catalog
    from sflib import rm as R

    for kind in ("ratings", "rankings"):
        path = catalog.path(f"feedback.{kind}", original=True)
        pd.testing.assert_frame_equal(R.read_feedback(path, kind), sfio.read(kind, path))
    path = catalog.path("feedback.responses", original=True)
    df, name = R.read_responses(path)
    pd.testing.assert_frame_equal(df, sfio.read_responses(path))
    assert name == "response" and len(df) == 100
    assert R.read_responses(catalog.path("eval.reference_outputs", original=True))[1] == "output"
    with pytest.raises(ValueError, match="kind must be one of"):
        R.read_feedback(path, "responses")


def test_best_of_n_reads_a_dataset_split_and_a_generation_json(tiny_rm, tmp_path):
    datasets = pytest.importorskip("datasets")
    rm, folder = tiny_rm
    gen = [{"instruction": "Name a fruit.", "input": "", "responses": ["Apple.", "A pear, ripe.", "Plum"]},
           {"instruction": "Name a car.", "input": "", "responses": ["Volvo.", "A small red car.", "Car"]}]
    samples = bon.read_samples(_write(tmp_path / "gen.json", gen))
    expected = bon.select_best(bon.score_samples(samples, rm, progress=False))["response"].tolist()

    flat = pd.DataFrame([{"instruction": g["instruction"], "input": "", "response": r} for g in gen for r in g["responses"]])
    dd = tmp_path / "dd"
    datasets.DatasetDict({"test": datasets.Dataset.from_pandas(flat, preserve_index=False)}).save_to_disk(str(dd))
    for data, extra, out in [(tmp_path / "gen.json", [], tmp_path / "a"), (dd, ["--split", "test"], tmp_path / "b")]:
        assert cli.main(["best-of-n", "--responses", str(data), *extra, "--rm", f"ratings_rm={folder}",
                         "--n", "3", "--out-dir", str(out)]) == 0
        got = sfio.read_model_outputs(out / "ratings_rm_outputs.json")
        assert got["output"].tolist() == expected
        assert (got["generator"] == "policy_best_of_3_ratings_rm").all()  # no generator in the file: "policy"
    # the folder without --split: one message naming the splits, nothing written
    assert cli.main(["best-of-n", "--responses", str(dd), "--rm", f"ratings_rm={folder}",
                     "--out-dir", str(tmp_path / "c")]) == 1
    assert not (tmp_path / "c").exists()


def _write(path: Path, records) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_evaluation_instructions_default_is_the_catalog_reference_outputs():
    from sflib.core import catalog

    default = bon.evaluation_instructions()
    explicit = bon.evaluation_instructions(catalog.path("eval.reference_outputs", original=True))
    pd.testing.assert_frame_equal(default, explicit)
    assert len(default) == 553 and set(default["source"]) == set(bon.PAPER_DATASETS)
