"""Table-driven tests of the judge-reply parsers (sflib.feedback.parsing)."""
import pytest

from sflib.feedback.parsing import parse_choice, parse_score

SCORES = [
    # (reply, expected score or None)
    ("Score: 6\nThe answer is accurate and clear.", 6),
    ("6", 6),
    ("6.", 6),
    ("**6**", 6),
    ("Score: **5**", 5),
    ("6/7", 6),
    ("Rating: 6/7", 6),
    ("Rating: 6 out of 7", 6),
    ("The response is correct but terse.\nScore: 6", 6),
    ("The response is mostly right. I would rate it 6 out of 7.", 6),
    ("It answers the question, though a 7 would need more detail. Score: 5", 5),
    ("Score: 3\nA score of 7 would require citing the passage.", 3),
    ("The response follows the instruction well. **4**", 4),
    ("Overall it is fine. I'd give it a 5.", 5),
    ("I give this response a 2 because it is wrong.", 2),
    ("Final score: 4\n(earlier I thought Score: 6)", 4),
    ("Reasoning first. It lists 3 facts and 2 of them are wrong.\nScore: 2", 2),
    ("score - 7", 7),
    ("SCORE: 1", 1),
    ("Rating = 3", 3),
    ("6 - Clear and correct.", 6),
    ("5: mostly right", 5),
    ("Here is my evaluation.\n4\nThe response misses one step.", 4),
    # invalid: out of range, other scales, decimals, unrelated numbers, numbered lists, nothing
    ("1. Accuracy: fine\n2. Coherence: fine", None),
    ("3-4 sentences would have been better.", None),
    ("Score: 8", None),
    ("Score: 10", None),
    ("9/10", None),
    ("Rating: 6/10", None),
    ("Score: 6.5", None),
    ("It lists 3 facts and 2 of them are wrong.", None),
    ("The answer is great.", None),
    ("", None),
    (None, None),
    ("   \n ", None),
    ("Score: 0", None),
    ("In 2023 there were 5 of them.", None),
    # real-judge phrasings (issue 13): a labelled score with words between label and number
    ("The response is correct, and the score for this task is 7.", 7),
    ("Score for this response: 5", 5),
    ("The score I would give is 4.", 4),
    ("My rating for the response would be 4.", 4),
    ("The final score for this answer is 3.", 3),
    # ...and ranges, which are ambiguous: no score rather than the first number
    ("Score: 5-6", None),
    ("Score: 4\u20135", None),
    ("Score: 5 to 6", None),
    ("I'd rate it 5 or 6.", None),
    ("Score: 6 - 7", None),
]


@pytest.mark.parametrize("reply,expected", SCORES)
def test_parse_score(reply, expected):
    score, valid = parse_score(reply)
    assert score == expected
    assert valid is (expected is not None)


CHOICES = [
    ("Output (a)", "a"),
    ("Output (b)\nIt is more accurate.", "b"),
    ("(b)", "b"),
    ("Output (B).", "b"),
    ("output b", "b"),
    ("Output A is more accurate.", "a"),
    ("**Output (a)**", "a"),
    ("Output (a)\nOutput (a) is accurate while Output (b) is not.", "a"),
    ("Both have merits. Output (a) is short, Output (b) is detailed. Output (b) is better.", "b"),
    ("Output (a) is concise and Output (b) rambles. I prefer Output (a).", "a"),
    ("Comparing Output (a) with Output (b): verdict: Output (b)", "b"),
    ("The better response is Output (a), since Output (b) contains an error.", "a"),
    ("Only Output (b) answers the question.", "b"),
    ("Output (a) vs Output (b)\nWinner: (a)", "a"),
    # invalid: none, both without a verdict, neither/tie
    ("Output (a) and Output (b) are both fine.", None),
    ("Neither output (a) nor output (b) is good.", None),
    ("I cannot decide.", None),
    ("It is a tie.", None),
    ("Both are equally good.", None),
    ("The first one.", None),
    ("", None),
    (None, None),
    ("output a list of numbers", None),
    ("Answer: (b)", "b"),
    ("The answer is Output (b).", "b"),
    ("Output (a) is better than Output (b).", "a"),
    # a verdict against one output is a verdict for the other (issue 13)
    ("Output (b) is worse than Output (a)", "a"),
    ("Output (a) is worse than Output (b).", "b"),
    ("Output (a) is less accurate than Output (b).", "b"),
    ("Output (b) is inferior to Output (a).", "a"),
    ("Output (a) is worse.", "b"),
]


@pytest.mark.parametrize("reply,expected", CHOICES)
def test_parse_choice(reply, expected):
    choice, valid = parse_choice(reply)
    assert choice == expected
    assert valid is (expected is not None)
