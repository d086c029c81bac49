"""Small item lists and a constant judge shared by the human-feedback tests."""
import pandas as pd

from sflib.judges.base import Completion, Judge


def responses(n_instructions: int = 3, k: int = 3) -> pd.DataFrame:
    rows = []
    for i in range(n_instructions):
        for j in range(k):
            rows.append({"instruction": f"Task {i}: name a colour", "input": "" if i % 2 else f"hint {i}",
                         "response": f"colour {i}.{j}"})
    return pd.DataFrame(rows)


class ConstantJudge(Judge):
    """Answers every rating with 'Score: 4' and every ranking with 'Output (a)'."""

    name = "const:test"
    model = "const"

    def complete(self, requests):
        for k, r in enumerate(requests):
            text = "Output (a)" if (r.meta or {}).get("kind") == "ranking" else "Score: 4"
            yield k, Completion(text=text)
