"""Every stage command reads its input through sflib.io: a bad file is one error line naming the file,
the row and the field, exit status 1, no traceback, and an earlier output left as it was."""
import json
from pathlib import Path

import pandas as pd
import pytest

from sflib.core import catalog
from sflib import io as sfio
from sflib.cli import main

KEEP = "an earlier result that a failed run must not replace\n"


def _run(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _check(code, err, path: Path, *expected: str):
    assert code == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert path.name in lines[0], err
    for text in expected:
        assert text in lines[0], (text, err)


def _bad_common(tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """Bad files any reader refuses: name -> (path, what the message must say)."""
    (tmp / "empty.json").write_text("")
    (tmp / "folder").mkdir()
    (tmp / "latin1.csv").write_bytes("instruction,input,response\nCaf\xe9,,ok\n".encode("latin-1"))
    (tmp / "object.json").write_text(json.dumps({"instruction": "x"}) + "\n[1, 2]")
    (tmp / "list_of_numbers.json").write_text("[1, 2]")
    (tmp / "broken.json").write_text('[{"instruction": "a", "response": "b"},')
    return {
        "missing": (tmp / "does_not_exist.json", ("file not found",)),
        "empty": (tmp / "empty.json", ("empty",)),
        "folder": (tmp / "folder", ("is a folder",)),
        "not_utf8": (tmp / "latin1.csv", ("UTF-8",)),
        "wrong_json_type": (tmp / "list_of_numbers.json", ("row 1",)),
        "truncated_json": (tmp / "broken.json", ()),
    }


COMMON = ["missing", "empty", "folder", "not_utf8", "wrong_json_type", "truncated_json"]


def _write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records))
    return path


# ----------------------------------------------------------------------------- rate and rank

def _feedback_bad(tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    bad = _bad_common(tmp)
    bad["no_responses"] = (_write_json(tmp / "no_responses.json", [
        {"instruction": "Name a fruit.", "input": "", "responses": ["Apple", "Pear"]},
        {"instruction": "Name a colour.", "input": "", "responses": []}]), ("row 2", "field 'responses'", "empty"))
    bad["missing_field"] = (_write_json(tmp / "missing_field.json", [
        {"instruction": "Name a fruit.", "input": "", "response": "Apple"},
        {"instruction": "Name a colour.", "input": ""}]), ("row 2", "field 'response'"))
    (tmp / "short_row.csv").write_text("instruction,input,response\nName a fruit.,,Apple\nName a colour.\n")
    bad["short_row"] = (tmp / "short_row.csv", ("row 2", "too few fields"))
    (tmp / "header_only.csv").write_text("instruction,input,response\n")
    bad["header_only"] = (tmp / "header_only.csv", ("no data rows",))
    bad["empty_list"] = (_write_json(tmp / "empty_list.json", []), ("no records",))
    return bad


FEEDBACK = COMMON + ["no_responses", "missing_field", "short_row", "header_only", "empty_list"]


@pytest.mark.parametrize("case", FEEDBACK)
@pytest.mark.parametrize("command", ["rate", "rank"])
def test_rate_and_rank_refuse_bad_inputs(tmp_path, capsys, command, case):
    path, expected = _feedback_bad(tmp_path)[case]
    output = tmp_path / "out.jsonl"
    output.write_text(KEEP)
    code, out, err = _run(capsys, command, "--judge", "recorded", "--input", path, "--output", output,
                          "--no-store", "--quiet")
    _check(code, err, path, *expected)
    assert output.read_text() == KEEP


def test_rank_refuses_a_pairs_row_without_its_second_response(tmp_path, capsys):
    path = _write_json(tmp_path / "pairs.json", [
        {"instruction": "Name a fruit.", "input": "", "response1": "Apple", "response2": "Pear"},
        {"instruction": "Name a colour.", "input": "", "response1": "Blue", "response2": None}])
    code, out, err = _run(capsys, "rank", "--judge", "recorded", "--input", path, "--output", tmp_path / "r.jsonl",
                          "--no-store", "--quiet")
    _check(code, err, path, "row 2", "field 'response2'")
    assert not (tmp_path / "r.jsonl").exists()


def test_rank_with_one_response_per_instruction_says_so(tmp_path, capsys):
    path = _write_json(tmp_path / "single.json", [{"instruction": "Name a fruit.", "input": "", "output": "Apple"}])
    code, out, err = _run(capsys, "rank", "--judge", "recorded", "--input", path, "--output", tmp_path / "r.jsonl",
                          "--no-store", "--quiet")
    _check(code, err, path, "no pairs: every instruction has one response")


# ----------------------------------------------------------------------------- a saved DatasetDict

def _recorded_judge(tmp: Path) -> str:
    rec = pd.DataFrame({"instruction": ["Add the numbers.", "Name a colour."], "input": ["2 and 3", ""],
                        "response": ["5", "Blue"], "score": [7, 6]})
    sfio.write_table(rec, tmp / "rec.jsonl")
    return f"recorded:{tmp / 'rec.jsonl'}"


def test_rate_reads_a_saved_dataset_dict_split(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = {"instruction": ["Add the numbers.", "Name a colour."], "input": ["2 and 3", ""], "output": ["5", "Blue"]}
    other = {"instruction": ["Something else."], "input": [""], "output": ["x"]}
    folder = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows),
                          "validation": datasets.Dataset.from_dict(other)}).save_to_disk(str(folder))
    judge = _recorded_judge(tmp_path)
    code, out, err = _run(capsys, "rate", "--judge", judge, "--input", folder, "--split", "test",
                          "--output", tmp_path / "r.jsonl", "--no-store", "--quiet")
    assert code == 0, err
    table = sfio.read_table(tmp_path / "r.jsonl")
    assert table["response"].tolist() == ["5", "Blue"] and table["score"].tolist() == [7, 6]
    assert table["input"].tolist() == ["2 and 3", ""]
    # no train split and no --split: one error naming the folder and the splits there are
    code, out, err = _run(capsys, "rate", "--judge", judge, "--input", folder, "--output", tmp_path / "r2.jsonl",
                          "--no-store", "--quiet")
    _check(code, err, folder, "no 'train' split", "test", "validation")
    code, out, err = _run(capsys, "rate", "--judge", judge, "--input", folder, "--split", "dev",
                          "--output", tmp_path / "r2.jsonl", "--no-store", "--quiet")
    _check(code, err, folder, "no split 'dev'")
    assert not (tmp_path / "r2.jsonl").exists()


# ----------------------------------------------------------------------------- generate

def _instructions_bad(tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    bad = _bad_common(tmp)
    bad["empty_list"] = (_write_json(tmp / "none.json", []), ("no records",))
    bad["missing_instruction"] = (_write_json(tmp / "no_instruction.json", [
        {"instruction": "Name a fruit.", "input": ""}, {"input": "Blue"}]), ("row 2", "field 'instruction'"))
    bad["number_instruction"] = (_write_json(tmp / "number.json", [
        {"instruction": "Name a fruit."}, {"instruction": 7}]), ("row 2", "field 'instruction'"))
    (tmp / "short.csv").write_text("instruction,input\nName a fruit.,\n\"Name\",x,y\n")
    bad["long_row"] = (tmp / "short.csv", ("row 2", "too many fields"))
    bad["context_and_input"] = (_write_json(tmp / "dolly.json", [
        {"instruction": "Summarise.", "context": "A paragraph.", "input": "Another text."}]), ("field 'context'", "'input'"))
    return bad


@pytest.mark.parametrize("case", COMMON + ["empty_list", "missing_instruction", "number_instruction", "long_row",
                                           "context_and_input"])
def test_generate_refuses_bad_instructions(tmp_path, capsys, case):
    path, expected = _instructions_bad(tmp_path)[case]
    output = tmp_path / "responses.jsonl"
    output.write_text(KEEP)
    code, out, err = _run(capsys, "generate", "--instructions", path, "--out", output, "-k", "1")
    _check(code, err, path, *expected)
    assert output.read_text() == KEEP


# ----------------------------------------------------------------------------- winrate

def _eval_files(tmp: Path) -> dict[str, Path]:
    ref = catalog.path("eval.reference_outputs", original=True)
    pol = catalog.path("eval.ratings_rm_outputs", original=True)
    files = {"reference": ref, "policy": pol}
    records = json.loads(pol.read_text())[:3]
    del records[1]["output"]
    files["policy_missing_output"] = _write_json(tmp / "policy_missing_output.json", records)
    files["policy_empty"] = _write_json(tmp / "policy_empty.json", [])
    (tmp / "ratings_bad.csv").write_text('t,,r1,5\nt,,r2,9\n')
    files["ratings_bad"] = tmp / "ratings_bad.csv"
    (tmp / "rankings_bad.csv").write_text('t,,r1,r2,(a)\nt,,r1,r2,(c)\n')
    files["rankings_bad"] = tmp / "rankings_bad.csv"
    (tmp / "rankings_short.csv").write_text('t,,r1,r2,(a)\nt,,r1,(b)\n')
    files["rankings_short"] = tmp / "rankings_short.csv"
    return files


WINRATE = {
    "policy_missing_output": (["--policy", "policy_missing_output", "--reference", "reference", "--rankings",
                               "rankings_bad"], "policy_missing_output", ("row 2", "field 'output'")),
    "policy_empty": (["--policy", "policy_empty", "--reference", "reference", "--rankings", "rankings_bad"],
                     "policy_empty", ("no records",)),
    "reference_missing": (["--policy", "policy", "--reference", "nowhere", "--rankings", "rankings_bad"],
                          "nowhere", ("file not found",)),
    "score_off_scale": (["--policy", "policy", "--reference", "reference", "--policy-ratings", "ratings_bad",
                         "--reference-ratings", "ratings_bad"], "ratings_bad", ("row 2", "field 'score'", "9")),
    "unknown_label": (["--policy", "policy", "--reference", "reference", "--rankings", "rankings_bad"],
                      "rankings_bad", ("row 2", "field 'feedback'", "(c)")),
    "short_row": (["--policy", "policy", "--reference", "reference", "--rankings", "rankings_short"],
                  "rankings_short", ("row 2", "too few fields")),
}


@pytest.mark.parametrize("case", sorted(WINRATE))
def test_winrate_refuses_bad_files(tmp_path, capsys, case):
    files = _eval_files(tmp_path)
    files["nowhere"] = tmp_path / "nowhere.json"
    args, culprit, expected = WINRATE[case]
    args = [files[a] if a in files else a for a in args]
    output = tmp_path / "winrate.json"
    output.write_text(KEEP)
    code, out, err = _run(capsys, "winrate", *args, "--n-boot", "10", "--json", output)
    _check(code, err, files[culprit], *expected)
    assert output.read_text() == KEEP


# ----------------------------------------------------------------------------- consistency

CONSISTENCY = {
    "score_off_scale": ("ratings", "t,,r1,5\nt,,r2,9\n", ("row 2", "field 'score'")),
    "score_not_a_number": ("ratings", "t,,r1,5\nt,,r2,good\n", ("row 2", "field 'score'", "good")),
    "ratings_short_row": ("ratings", "t,,r1,5\nt,r2\n", ("row 2", "too few fields")),
    "ratings_empty": ("ratings", "", ("empty",)),
    "unknown_label": ("rankings", "t,,r1,r2,(a)\nt,,r1,r2,(c)\n", ("row 2", "field 'feedback'")),
    "decision_missing": ("rankings", json.dumps([{"instruction": "t", "input": "", "response1": "r1",
                                                  "response2": "r2", "decision": None}]),
                         ("row 1", "field 'decision'", "missing")),
    "rankings_not_utf8": ("rankings", None, ("UTF-8",)),
}


@pytest.mark.parametrize("case", sorted(CONSISTENCY))
def test_consistency_refuses_bad_files(tmp_path, capsys, case):
    which, text, expected = CONSISTENCY[case]
    ratings, rankings = tmp_path / "ratings.csv", tmp_path / "rankings.csv"
    ratings.write_text("t,,r1,5\nt,,r2,4\n")
    rankings.write_text("t,,r1,r2,(a)\n")
    bad = ratings if which == "ratings" else rankings
    if text is None:
        bad.write_bytes("t,,r1,r2,(a)\nt\xe9,,r1,r2,(b)\n".encode("latin-1"))
    else:
        bad.write_text(text)
    output = tmp_path / "report.json"
    output.write_text(KEEP)
    code, out, err = _run(capsys, "consistency", "--ratings", ratings, "--rankings", rankings, "--json", output,
                          "--bootstrap", "0")
    _check(code, err, bad, *expected)
    assert output.read_text() == KEEP


def test_consistency_says_invalid_rating_not_missing_rating(tmp_path, capsys):
    """Ratings that exist but were unparsable are named as invalid, with the count of each reason."""
    rows = [{"instruction": "t", "input": "", "response": r, "score": None, "valid": False, "status": s}
            for r, s in (("r1", "invalid"), ("r2", "invalid"), ("r3", "failed"))]
    sfio.write_table(pd.DataFrame(rows + [{"instruction": "t", "input": "", "response": "r4", "score": 5,
                                        "valid": True, "status": "ok"}]), tmp_path / "ratings.jsonl")
    (tmp_path / "rankings.csv").write_text("t,,r1,r2,(a)\nt,,r3,r4,(b)\n")
    code, out, err = _run(capsys, "consistency", "--ratings", tmp_path / "ratings.jsonl", "--rankings",
                          tmp_path / "rankings.csv", "--bootstrap", "0")
    _check(code, err, tmp_path / "rankings.csv", "none of the 2 ranked pairs can be compared",
           "2 reference a response whose rating in", "is invalid", "unparsable reply: 2", "failed request: 1")
    assert "has no rating" not in err
    # one pair of never-rated responses next to them: both reasons, each counted
    (tmp_path / "rankings.csv").write_text("t,,r1,r2,(a)\nt,,r3,r4,(b)\nt,,x1,x2,equal\n")
    code, out, err = _run(capsys, "consistency", "--ratings", tmp_path / "ratings.jsonl", "--rankings",
                          tmp_path / "rankings.csv", "--bootstrap", "0")
    assert code == 1 and "1 reference a response that has no rating" in err and "2 reference a response whose" in err
