"""Every reader against a table of bad files: each ends in one DataError naming the file, the row and
the field (where there is one), the CLI prints it without a traceback, and the previous output is kept."""
from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path

import pytest

from sflib import cli
from sflib import io as sfio
from sflib.core.data import DataError

# kind -> the fields of its file (the required one to break last), two valid rows, headerless CSV?
SPECS = {
    "instructions": (["input", "instruction"], [["", "Add two and two."], ["red", "Name a colour."]], False),
    "responses": (["instruction", "input", "response"],
                  [["Add two and two.", "", "Four."], ["Name a colour.", "", "Red."]], False),
    "pairs": (["instruction", "input", "response1", "response2"],
              [["Add two and two.", "", "Four.", "4"], ["Name a colour.", "", "Red.", "Blue."]], False),
    "ratings": (["instruction", "input", "output", "score"],
                [["Add two and two.", "", "Four.", "7"], ["Name a colour.", "", "Red.", "6"]], True),
    "rankings": (["instruction", "input", "output1", "output2", "feedback"],
                 [["Add two and two.", "", "Four.", "5", "(a)"], ["Name a colour.", "", "Red.", "Blue.", "equal"]], True),
    "model_outputs": (["instruction", "generator", "output"],
                      [["Add two and two.", "m", "Four."], ["Name a colour.", "m", "Red."]], False),
    # a missing preference is a failed annotation (kept, invalid), so the field to break is output_2
    "annotations": (["instruction", "preference", "output_1", "output_2"],
                    [["Add two and two.", 1, "Four.", "5"], ["Name a colour.", 2, "Red.", "Blue."]], False),
}
KINDS = list(SPECS)


def _csv_text(fields, rows, header=True) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(fields)
    w.writerows(rows)
    return buf.getvalue()


def _records(fields, rows):
    return [dict(zip(fields, r)) for r in rows]


def _cases(kind):
    """(name, writer(path) -> path, expected row, expected field, text the message must hold)."""
    fields, rows, headerless = SPECS[kind]
    last = fields[-1]
    csv_row2 = 2  # data row 2 of a CSV, with or without header

    def text(content, suffix=".json", binary=False):
        def make(tmp):
            p = tmp / f"bad{suffix}"
            p.write_bytes(content) if binary else p.write_text(content, encoding="utf-8")
            return p
        return make

    recs = _records(fields, rows)
    missing = [recs[0], {k: v for k, v in recs[1].items() if k != last}]
    null = [recs[0], {**recs[1], "instruction": None}]
    empty_ins = [recs[0], {**recs[1], "instruction": "  "}]
    short = _csv_text(fields, [rows[0], [str(v) for v in rows[1][:-1]]], header=not headerless)
    quote = _csv_text(fields, rows[:1], header=not headerless) + '"Name" a colour.,' + ",".join(
        str(v) for v in rows[1][1:]) + "\n"
    latin = _csv_text(fields, rows, header=not headerless).encode() + "caf\xe9,,x,5\n".encode("latin-1")
    jsonl = "\n".join(json.dumps(r) for r in recs) + "\n{oops\n"
    cases = [
        ("missing file", lambda tmp: tmp / "nope.json", None, None, "file not found"),
        ("0 bytes", text("", ".csv"), None, None, "file is empty (0 bytes)"),
        ("folder", lambda tmp: (tmp / "folder").mkdir() or tmp / "folder", None, None, "is a folder"),
        ("{}", text("{}"), None, None, "empty JSON object"),
        ("list of strings", text('["a", "b"]'), 1, None, "expected an object"),
        ("[]", text("[]"), None, None, "has no records"),
        ("missing field", text(json.dumps(missing)), 2, last, "missing"),
        ("null instruction", text(json.dumps(null)), 2, "instruction", "missing"),
        ("blank instruction", text(json.dumps(empty_ins)), 2, "instruction", "is empty"),
        ("short CSV row", text(short, ".csv"), csv_row2, last, "too few fields"),
        ("CSV quote error", text(quote, ".csv"), csv_row2, fields[0], "malformed CSV"),
        ("non-UTF-8", text(latin, ".csv", binary=True), 3, fields[0], "not valid UTF-8"),
        ("non-UTF-8 JSON", text(json.dumps(recs).encode()[:-1] + b', {"instruction": "caf\xe9"}]', binary=True),
         1, None, "not valid UTF-8"),
        ("bad JSONL line 3", text(jsonl, ".jsonl"), 3, None, "malformed JSON Lines"),
        ("parquet that is not", text("instruction,output\nA,B\n", ".parquet"), None, None, "not a Parquet file"),
        ("not a table", text("hello world\n", ".txt"), 1, "input" if headerless else None,
         "too few fields" if headerless else "not a header"),
    ]
    cases.append(("header-only CSV", text(_csv_text(fields, []), ".csv"), None, None, "no data rows"))
    if kind in ("responses", "pairs"):
        gen = [{"instruction": "A", "input": "", "responses": ["x", "y"]}, {"instruction": "B", "input": "", "responses": []}]
        cases.append(('"responses": []', text(json.dumps(gen)), 2, "responses", "no responses"))
        cases.append(("responses not a list", text(json.dumps([{"instruction": "A", "responses": "x"}])), 1,
                      "responses", "expected a list"))
    if kind == "ratings":
        for bad in ("0", "8", "5.5", "high"):
            cases.append((f"score {bad}", text(_csv_text(fields, [rows[0], rows[1][:-1] + [bad]], header=False), ".csv"),
                          2, "score", "1-7"))
    if kind == "rankings":
        for bad in ("(c)", "tie", "Output (a)"):
            cases.append((f"label {bad}", text(_csv_text(fields, [rows[0], rows[1][:-1] + [bad]], header=False), ".csv"),
                          2, "feedback", "unknown feedback label"))
    if kind == "annotations":
        for bad in (3, "first", 0.5):
            cases.append((f"preference {bad}", text(json.dumps([recs[0], {**recs[1], "preference": bad}])), 2,
                          "preference", "preference"))
    if kind == "pairs":
        one = [{"instruction": "A", "input": "", "responses": ["x"]}, {"instruction": "B", "input": "", "responses": ["y", "y"]}]
        cases.append(("one response each", text(json.dumps(one)), None, "response", "no pair to rank"))
    if kind == "model_outputs":
        cases.append(("output null", text(json.dumps([recs[0], {**recs[1], "output": None}])), 2, "output", "missing"))
    if kind in ("responses", "ratings"):
        both = [{**r, "response": "other", "output": "text"} for r in _records(["instruction", "input"], [x[:2] for x in rows])]
        cases.append(("output and response differ", text(json.dumps(both)), None, "output", "both"))
    if kind == "instructions":
        dolly = [{"instruction": "Summarise.", "input": "x", "context": "The paragraph."}]
        cases.append(("input and context differ", text(json.dumps(dolly)), None, "context", "both"))
    return cases


ALL = [(kind, *case) for kind in KINDS for case in _cases(kind)]


@pytest.mark.parametrize("kind", KINDS)
def test_at_least_twelve_kinds_of_bad_file_per_reader(kind):
    assert len(_cases(kind)) >= 12


@pytest.mark.parametrize("kind,name,make,row,field,text", ALL, ids=[f"{c[0]}-{c[1]}" for c in ALL])
def test_bad_file(tmp_path, capsys, kind, name, make, row, field, text):
    path = make(tmp_path)
    with pytest.raises(DataError) as e:
        sfio.read(kind, path)
    err = e.value
    message = str(err)
    assert message.startswith(str(path)), message
    assert text in message, message
    assert (err.row, err.field) == (row, field), message
    if row is not None:
        assert f"{err.unit} {row}" in message
    if field is not None:
        assert f"field '{field}'" in message
    # through the CLI: one line on stderr, no traceback, and the previous output is kept
    out = tmp_path / "out.jsonl"
    out.write_text('{"kept": 1}\n')
    rc = cli.main(["convert", str(path), str(out), "--from", kind])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.strip() == f"error: {message}"
    assert "Traceback" not in captured.err + captured.out
    assert out.read_text() == '{"kept": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_dataset_folder_without_train_split_lists_the_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"instruction": ["A"], "input": [""]}),
                          "test": datasets.Dataset.from_dict({"instruction": ["B"], "input": [""]})}).save_to_disk(str(folder))
    with pytest.raises(DataError, match=r"has no 'train' split; choose one with --split \(splits: validation, test\)"):
        sfio.read_instructions(folder)
    with pytest.raises(DataError, match=r"has no split 'dev' \(splits: validation, test\)"):
        sfio.read_instructions(folder, split="dev")
    assert sfio.read_instructions(folder, split="test")["instruction"].tolist() == ["B"]


def test_split_given_for_a_plain_file_is_refused(tmp_path):
    p = tmp_path / "i.json"
    p.write_text('[{"instruction": "A"}]')
    with pytest.raises(DataError, match="applies to a saved dataset folder"):
        sfio.read_instructions(p, split="test")


def test_empty_table_never_replaces_a_file_with_data(tmp_path):
    import pandas as pd

    from sflib.core import data as d

    target = tmp_path / "ratings.jsonl"
    sfio.write_table(pd.DataFrame({"x": [1]}), target)
    for write in (lambda: sfio.write_table(pd.DataFrame({"x": []}), target),
                  lambda: sfio.write_table(pd.DataFrame({"x": []}), target)):
        with pytest.raises(DataError, match="not replaced: the new table is empty"):
            write()
        assert sfio.read_table(target)["x"].tolist() == [1]
    for name, writer, cols in [("o.json", d.write_model_outputs, ["instruction", "output", "generator", "dataset"]),
                               ("i.json", d.write_instructions_json, ["instruction", "input"]),
                               ("g.json", d.write_generations, ["instruction_id", "instruction", "input", "response"])]:
        p = tmp_path / name
        p.write_text("[1]")
        with pytest.raises(DataError, match="not replaced"):
            writer(pd.DataFrame({c: [] for c in cols}), p)
        assert p.read_text() == "[1]"
    # all answers invalid: nothing valid for the headerless CSV, so the old file stays
    p = tmp_path / "r.csv"
    p.write_text("A,,x,5\n")
    with pytest.raises(DataError, match="not replaced"):
        d.write_ratings_csv(pd.DataFrame({"instruction": ["A"], "input": [""], "response": ["x"], "score": [float("nan")]}), p)
    assert p.read_text() == "A,,x,5\n"
    # an empty table may still be written where there is no file, or on purpose
    sfio.write_table(pd.DataFrame({"x": []}), tmp_path / "new.jsonl")
    sfio.write_table(pd.DataFrame({"x": []}), target, replace_with_empty=True)
    assert target.read_text() == ""
    assert sfio.read_table(target, ["x"], allow_empty=True).empty


def test_bad_file_cases_cover_the_named_kinds():
    names = {c[0] for c in _cases("ratings")}
    for needed in ("missing file", "0 bytes", "header-only CSV", "folder", "{}", "list of strings", "[]",
                   "missing field", "short CSV row", "non-UTF-8", "score 0", "score 8", "score 5.5",
                   "bad JSONL line 3", "parquet that is not"):
        assert needed in names
    assert "label (c)" in {c[0] for c in _cases("rankings")}
    assert '"responses": []' in {c[0] for c in _cases("responses")}
    assert Path  # keep import used
