"""Writing a stage's outputs all or nothing (:meth:`sflib.study.folder.Study.save`): every table and file
is first written to a temporary path beside its target, then renamed into place; and the fingerprints
that tell a changed input file or folder apart.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(path: Path) -> str:
    """sha256 of a file's bytes; of a folder's listing with sizes and modification times (cheap for model weights)."""
    if path.is_file():
        return sha256_hex(path.read_bytes())
    listing = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in path.rglob("*") if p.is_file())
    return sha256_hex(json.dumps(listing).encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_staged(out: Path, stage: str, tables: Mapping[str, pd.DataFrame], files: Iterable) -> list[tuple[Path, Path]]:
    """Write every table and copy every outside file / folder to a temporary path in ``out``.

    Returns ``[(temporary, target)]``; on any error the temporaries are removed and it re-raises.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for name, df in tables.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            os.close(fd)
            staged.append((Path(tmp), out / f"{name}.jsonl"))
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        for f in files:
            src = Path(f)
            if not src.exists():
                raise FileNotFoundError(f"save({stage!r}): {src} does not exist")
            if src.resolve().parent == out.resolve():
                continue  # already in place
            if src.is_dir():
                tmp = Path(tempfile.mkdtemp(prefix=f".{src.name}.", suffix=".tmp", dir=out))
                staged.append((tmp, out / src.name))
                shutil.copytree(src, tmp, dirs_exist_ok=True)
            else:
                fd, name = tempfile.mkstemp(prefix=f".{src.name}.", suffix=".tmp", dir=out)
                os.close(fd)
                staged.append((Path(name), out / src.name))
                shutil.copyfile(src, name)
    except BaseException:
        for tmp, _ in staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        raise
    return staged


def commit_staged(staged: list[tuple[Path, Path]]) -> None:
    """Rename every temporary into place (a replaced folder is moved aside first, then removed)."""
    mode = 0o666 & ~_umask()
    for tmp, target in staged:
        if tmp.is_dir():
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: the usual permissions, files included
            for path in tmp.rglob("*"):
                os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old.{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.chmod(tmp, mode)  # mkstemp makes 0600; give the file the usual permissions
            os.replace(tmp, target)
