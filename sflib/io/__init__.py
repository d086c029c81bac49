"""The one place that reads and writes each kind of table.

- :mod:`sflib.io.sniff` — load any file (format from the content) into raw records with row numbers;
- :mod:`sflib.io.checks` — the checks the readers share (names, required fields, text, input);
- :mod:`sflib.io.tables` — one validating reader per kind of table (:mod:`sflib.io.alpaca_eval`
  for AlpacaEval's ``model_outputs`` and ``annotations.json``);
- :mod:`sflib.io.write` — atomic writes that never replace data with an empty table;
- :mod:`sflib.io.cli` — ``--input`` / ``--split`` for every stage command;
- :mod:`sflib.io.outputs` — the exit-code contract of every stage command and its ``.partial`` outputs.
"""
from ..core.data import DataError
from .cli import add_input_options, read_input
from .sniff import FORMATS, Raw, load
from .checks import HEADERLESS
from .tables import (KINDS, read, read_annotations, read_instructions, read_model_outputs,
                     read_pairs, read_rankings, read_ratings, read_responses, read_role, read_table)
from .write import guard_empty, write_table

__all__ = ["DataError", "FORMATS", "HEADERLESS", "KINDS", "Raw", "add_input_options", "guard_empty", "load", "read",
           "read_annotations", "read_input", "read_instructions", "read_model_outputs", "read_pairs", "read_rankings",
           "read_ratings", "read_responses", "read_role", "read_table", "write_table"]
