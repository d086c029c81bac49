"""The exit-code contract of every stage command, and where a complete or a partial result goes.

Every ``python -m sflib`` stage command (``generate``, ``rate``, ``rank``, ``consistency``,
``winrate``, ``train-rm``, ``score``, ``best-of-n``, ``convert``, ``convert-original``, ``study run``)
ends with one of these statuses (:func:`sflib.cli.main` applies them):

====  =====================================================================================
 0    complete: the output is written to the path asked for
 3    incomplete: what was done is written beside the output as ``<name>.partial<suffix>``
      (the previous complete output is left untouched) and one line on stderr says what is
      left and why; ``--allow-partial`` accepts the partial result (written to the output, exit 0)
 1    bad input: one line ``error: FILE, row N, field 'F': what is wrong`` and nothing written
 130  interrupted (Ctrl-C): one line ``interrupted: N stored, M in flight, re-run to finish``
====  =====================================================================================

A complete run removes a stale ``<name>.partial<suffix>`` left by an earlier incomplete one.
A stage function that can only do part of its work raises :class:`Incomplete` (carrying the
partial result) or returns a result and a one-line ``problem``; the command passes both to
:func:`finish`.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable

OK, BAD_INPUT, INCOMPLETE, INTERRUPTED = 0, 1, 3, 130


class Incomplete(RuntimeError):
    """Part of a stage's work failed; ``result`` is what was done (or None), ``str(e)`` one line on the rest."""

    def __init__(self, message: str, result=None, *, failed: int = 0, done: int = 0):
        super().__init__(message)
        self.result, self.failed, self.done = result, int(failed), int(done)


def partial_path(path: os.PathLike | str) -> Path:
    """``out.jsonl`` -> ``out.partial.jsonl`` (a folder ``out`` -> ``out.partial``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}") if path.suffix else path.with_name(f"{path.name}.partial")


def remove_stale_partial(path: os.PathLike | str) -> Path | None:
    """Remove ``<path>.partial`` after a complete write; returns the removed path (None when there was none)."""
    stale = partial_path(path)
    if stale.is_file():
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
        return stale
    return None


def finish(output: os.PathLike | str, write: Callable[[Path], object], problem: str | None = None, *,
           allow_partial: bool = False, retry_hint: str = "Run the same command again to retry what failed",
           log=print) -> int:
    """Write a stage's result by the contract and return the exit status.

    ``write(path)`` writes the result to ``path``. ``problem`` is None for a complete result, else
    one line saying what is left and why: the result then goes to :func:`partial_path` (status 3),
    or to ``output`` with ``allow_partial`` (status 0). A complete write removes a stale partial file.
    """
    output = Path(output)
    target = partial_path(output) if problem and not allow_partial else output
    if target != output and target.is_file():
        target.unlink()  # an older partial result: what it held is in the store, the new one replaces it
    note = write(target)
    log(f"wrote {target}{note if isinstance(note, str) else ''}")
    if not problem:
        stale = remove_stale_partial(output)
        if stale is not None:
            log(f"removed {stale} (left by an earlier incomplete run)")
        return OK
    print(problem, file=sys.stderr)
    if allow_partial:
        return OK
    print(f"not written to {output}: the run is incomplete. {retry_hint}, or pass --allow-partial to accept it.",
          file=sys.stderr)
    return INCOMPLETE


def incomplete_line(what: str, n: int, failed: int, reasons: dict | None = None) -> str:
    """``"incomplete: 4 of 10 samples failed (HTTP 503: 4)"`` — the one-line summary of what is left."""
    text = f"incomplete: {failed} of {n} {what} failed"
    if reasons:
        text += " (" + "; ".join(f"{str(r)[:120]}: {c}" for r, c in list(reasons.items())[:3]) + ")"
    return text
