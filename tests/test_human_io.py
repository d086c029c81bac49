"""Import / export of human judgments as plain CSV / JSONL tables."""
import json

import pandas as pd
import pytest

from human_fixtures import responses
from sflib import human
from sflib.core.data import DataError
from sflib.human.session import stored_answers
from sflib.feedback.store import AnnotationStore


@pytest.fixture
def store(tmp_path):
    st = AnnotationStore(tmp_path / "annotations.sqlite")
    yield st
    st.close()


def annotate(store, name, kind, items, values, both_orders=0.0):
    s = human.AnnotationSession(items, name, store, kind, both_orders=both_orders)
    k = 0
    while not s.done:
        v = values[k % len(values)]
        s.skip("unsure") if v is None else s.answer(v, comment=f"c{k}")
        k += 1
    s.close()


def rows(store, name, kind):
    df = stored_answers(store, human.judge_name(name), kind)
    return {r["key"]: (r["value"], r["status"], r["meta"]["comment"], r["meta"]["order"], r["meta"]["item_id"])
            for r in df.to_dict("records")}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip_gives_the_same_store_rows(store, tmp_path, suffix):
    resp = responses(3, 3)
    annotate(store, "ann", "ratings", human.rating_items(resp), [5, None, 2, 7])
    annotate(store, "bob", "ratings", human.rating_items(resp), [1, 3])
    annotate(store, "ann", "rankings", human.ranking_items(resp), ["a", "b", "equal", None], both_orders=0.5)
    fresh = AnnotationStore(tmp_path / "fresh.sqlite")
    for kind in ("ratings", "rankings"):
        path = tmp_path / f"{kind}{suffix}"
        table = human.export_human(store, kind, path)
        assert path.exists() and list(table.columns) == human.io.EXPORT_COLUMNS[kind]
        counts = human.import_human(path, fresh)
        assert counts["kind"] == kind and counts["written"] == len(table) and counts["conflicts"] == 0
        for name in human.known_annotators(store, kind):
            assert rows(fresh, name, kind) == rows(store, name, kind)
            a, b = human.human_feedback(store, name, kind), human.human_feedback(fresh, name, kind)
            key = ["response_id"] if kind == "ratings" else ["response_id_1", "response_id_2"]
            cols = ["score", "valid", "raw"] if kind == "ratings" else ["decision", "verdict_12", "verdict_21", "valid"]
            pd.testing.assert_frame_equal(a.sort_values(key)[cols].reset_index(drop=True),
                                          b.sort_values(key)[cols].reset_index(drop=True))
    again = human.import_human(tmp_path / f"ratings{suffix}", fresh)
    assert again["written"] == 0 and again["unchanged"] == again["rows"]
    fresh.close()


def test_tool_style_csv_with_aliases(store, tmp_path):
    resp = responses(2, 2)
    pairs = human.ranking_items(resp)
    p = pairs.iloc[0]
    path = tmp_path / "tool.csv"
    pd.DataFrame({"Worker": ["Alice Smith", "Alice Smith", "bob"],
                  "instruction": [p["instruction"]] * 3, "input": [p["input"]] * 3,
                  "output1": [p["response1"]] * 3, "output2": [p["response2"]] * 3,
                  "order": ["12", "21", "12"], "preference": ["(a)", "tie", "2"],
                  "notes": ["", "close call", ""]}).to_csv(path, index=False)
    counts = human.import_human(path, store)
    assert counts == {"kind": "rankings", "rows": 3, "written": 3, "unchanged": 0, "conflicts": 0,
                      "annotators": ["human:alice-smith", "human:bob"]}
    fb = human.human_feedback(store, "alice-smith", "rankings")
    assert len(fb) == 1 and fb["decision"].iloc[0] == "equal"  # a in one order, equal in the other
    assert fb["verdict_12"].iloc[0] == "a" and fb["verdict_21"].iloc[0] == "equal"
    assert human.human_feedback(store, "bob", "rankings")["decision"].tolist() == ["b"]
    # a ratings export from another tool, as JSONL with item ids looked up in the item list
    items = human.rating_items(resp)
    jpath = tmp_path / "ratings.jsonl"
    jpath.write_text("\n".join(json.dumps({"rater": "cy", "item_id": i, "rating": s})
                               for i, s in zip(items["item_id"], [3, 4.0, "5", 6])))
    assert human.import_human(jpath, store, items=items)["written"] == 4
    fb = human.human_feedback(store, "cy", "ratings")
    assert dict(zip(fb["response_id"], fb["score"])) == dict(zip(items["response_id"], [3.0, 4.0, 5.0, 6.0]))


@pytest.mark.parametrize("change, row, field, words", [
    ({"score": [5, 9]}, 2, "score", "1 to 7"),
    ({"score": [5, ""]}, 2, "score", "skipped=true"),
    ({"annotator": ["ok", "b@d"]}, 2, "annotator", "'@'"),
    ({"item_id": ["x", "nope"]}, 1, "item_id", "does not match"),
])
def test_bad_rows_name_file_row_field_and_write_nothing(store, tmp_path, change, row, field, words):
    resp = responses(1, 2)
    base = pd.DataFrame({"annotator": ["ok", "ok"], "instruction": resp["instruction"], "input": resp["input"],
                         "response": resp["response"], "score": [5, 6]})
    for k, v in change.items():
        base[k] = v
    path = tmp_path / "bad.csv"
    base.to_csv(path, index=False)
    with pytest.raises(DataError) as e:
        human.import_human(path, store)
    assert str(path) in str(e.value) and f"row {row}" in str(e.value) and f"field '{field}'" in str(e.value)
    assert words in str(e.value)
    assert len(store) == 0


def test_unknown_item_and_missing_columns(store, tmp_path):
    path = tmp_path / "ids.csv"
    pd.DataFrame({"annotator": ["a"], "item_id": ["zzz"], "score": [3]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="row 1, field 'item_id': unknown item"):
        human.import_human(path, store)
    pd.DataFrame({"name": ["a"], "score": [3]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="no annotator column"):
        human.import_human(path, store)
    pd.DataFrame({"annotator": ["a"], "stars": [3]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="neither a score column"):
        human.import_human(path, store)
    with pytest.raises(DataError, match="does not exist"):
        human.import_human(tmp_path / "missing.csv", store)
    assert len(store) == 0


def test_conflicting_answers_are_kept_unless_replace(store, tmp_path):
    items = human.rating_items(responses(1, 2))
    annotate(store, "dee", "ratings", items, [4])
    table = human.export_human(store, "ratings")
    table["score"] = 1
    counts = human.import_human(table, store)
    assert counts["conflicts"] == 2 and counts["written"] == 0
    assert set(human.human_feedback(store, "dee", "ratings")["score"]) == {4.0}
    counts = human.import_human(table, store, on_conflict="replace")
    assert counts["written"] == 2
    assert set(human.human_feedback(store, "dee", "ratings")["score"]) == {1.0}
