"""How the annotation store keeps a request small on disk, and gets it back exactly.

A rating or ranking request repeats the same texts many times: the template (~1.6 KB) in every
row, an instruction in its k ratings and k(k-1) ranking calls, a response in every pair it is in,
and each text twice per row (in the rendered messages and in ``meta``). Stored as plain JSON that
is ~4.5 KB per answer. Instead:

- ``meta``: every string value of at least :data:`MIN_SHARED` characters is stored once in the
  ``texts`` table (content-addressed by sha256) and referenced from the row as ``"@sflib-text:<hash>"``
  (a shorter value that starts so is stored there too);
- ``prompt`` (the rendered messages) is a raw-deflate blob, ``sfz1<hash of the dictionary>`` then
  the compressed canonical JSON, compressed with a preset dictionary made of the template texts
  (stored once in ``texts`` too) and the row's own meta texts, so the parts the prompt shares with
  them cost a few bytes.

Nothing is lost: reading a row returns exactly the messages and meta that were written (the
store's tests compare them), the cache key is computed from the messages as before, and every
dictionary lives in the store file itself, so a store stays readable when the templates change.
Rows written by an older sflib (plain JSON text) are read as they are.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

MIN_SHARED = 64
MAGIC = b"sfz1"
_REF = "@sflib-text:"
_HASH_LEN = 24
TEXTS_SCHEMA = "CREATE TABLE IF NOT EXISTS texts (hash TEXT PRIMARY KEY, text TEXT NOT NULL) WITHOUT ROWID"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LEN]


@lru_cache(maxsize=1)
def base_dictionary() -> tuple[str, str]:
    """(hash, text): the shipped templates, the shared start of every rendered prompt."""
    folder = Path(__file__).resolve().parents[1] / "templates"
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt")))
    return text_hash(text), text


def _dumps(obj: Any) -> str:
    from .store import canonical_json

    return canonical_json(obj)


def encode(messages: list[dict], meta: dict) -> tuple[bytes, str, dict[str, str]]:
    """(prompt blob, meta JSON with references, {hash: text} to store in ``texts``)."""
    texts: dict[str, str] = {}
    shared_meta, shared = {}, []
    for name in sorted(meta):
        value = meta[name]
        if isinstance(value, str) and (len(value) >= MIN_SHARED or value.startswith(_REF)):
            h = text_hash(value)
            texts[h] = value
            shared_meta[name] = _REF + h
            shared.append(value)
        else:
            shared_meta[name] = value
    base_hash, base = base_dictionary()
    texts[base_hash] = base
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=_zdict(base, shared))
    blob = MAGIC + base_hash.encode("ascii") + comp.compress(_dumps(messages).encode("utf-8")) + comp.flush()
    return blob, _dumps(shared_meta), texts


def _zdict(base: str, shared: list[str]) -> bytes:
    # deflate looks back 32 KB: the row's own texts go last (closest), the templates before them
    return (base + "".join(shared)).encode("utf-8")[-32768:]


def store_texts(conn: sqlite3.Connection, texts: dict[str, str]) -> None:
    """Insert the shared texts (inside the caller's transaction)."""
    if texts:
        conn.executemany("INSERT OR IGNORE INTO texts (hash, text) VALUES (?, ?)", list(texts.items()))


def _refs(meta_text: Any) -> list[str]:
    if not isinstance(meta_text, str) or _REF not in meta_text:
        return []
    return [v[len(_REF):] for v in json.loads(meta_text).values() if isinstance(v, str) and v.startswith(_REF)]


def texts_statements(texts: dict[str, str]) -> list[tuple[str, tuple]]:
    """The statements that store shared texts (for :meth:`AnnotationStore.executemany`)."""
    return [("INSERT OR IGNORE INTO texts (hash, text) VALUES (?, ?)", (h, t)) for h, t in texts.items()]


def expand_pairs(conn: sqlite3.Connection, pairs: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """``(stored blob or JSON, stored meta)`` pairs back to ``(JSON, meta JSON)`` as written (the Batch API
    request lines of :mod:`sflib.judges.batch` are kept the same way as annotations)."""
    rows = [{"prompt": a, "meta": b} for a, b in pairs]
    expand(conn, rows)
    return [(r["prompt"], r["meta"]) for r in rows]


def expand(conn: sqlite3.Connection, rows: Iterable[dict]) -> None:
    """Turn each row's stored ``prompt`` / ``meta`` back into the JSON text that was written, in place."""
    rows = list(rows)
    needed = {h for r in rows for h in _refs(r.get("meta"))}
    needed |= {bytes(r["prompt"][len(MAGIC):len(MAGIC) + _HASH_LEN]).decode("ascii") for r in rows
               if isinstance(r.get("prompt"), (bytes, memoryview)) and bytes(r["prompt"][:len(MAGIC)]) == MAGIC}
    texts = fetch_texts(conn, needed)
    for r in rows:
        meta = r.get("meta")
        shared = []
        if _refs(meta):
            decoded = json.loads(meta)
            for name in sorted(decoded):
                v = decoded[name]
                if isinstance(v, str) and v.startswith(_REF):
                    decoded[name] = texts[v[len(_REF):]]
                    shared.append(decoded[name])
            r["meta"] = _dumps(decoded)
        prompt = r.get("prompt")
        if isinstance(prompt, (bytes, memoryview)) and bytes(prompt[:len(MAGIC)]) == MAGIC:
            prompt = bytes(prompt)
            base = texts[prompt[len(MAGIC):len(MAGIC) + _HASH_LEN].decode("ascii")]
            d = zlib.decompressobj(-15, zdict=_zdict(base, shared))
            r["prompt"] = (d.decompress(prompt[len(MAGIC) + _HASH_LEN:]) + d.flush()).decode("utf-8")


def fetch_texts(conn: sqlite3.Connection, hashes: Iterable[str]) -> dict[str, str]:
    hashes = list(hashes)
    out: dict[str, str] = {}
    for start in range(0, len(hashes), 500):
        chunk = hashes[start:start + 500]
        out.update(conn.execute(f"SELECT hash, text FROM texts WHERE hash IN ({','.join('?' * len(chunk))})",
                                chunk).fetchall())
    return out
