"""Reading raw files (JSONL, JSON, gzip, parquet) with file:line errors, and atomic JSONL writing."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

from tulu_cli.errors import TuluError
from tulu_cli.paths import temp_path

from tulu_cli.jsonl import OnBad, _raise, json_problem, read_jsonl  # noqa: F401  (read_jsonl is re-exported for the sources)


def open_text(path: str | Path) -> IO[str]:
    """Open a text file, transparently decompressing ``.gz``."""
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8")
    return open(p, encoding="utf-8")


def read_records(path: str | Path, on_bad: OnBad | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` from a JSONL file, a JSON list, or a parquet file.

    ``where`` locates the record for error messages: ``file:line`` for JSONL,
    ``file[item]`` for a JSON list (0-based item), ``file[row]`` for parquet.
    """
    p = Path(path)
    report = on_bad or _raise
    name = p.name.lower()
    if name.endswith(".parquet"):
        yield from read_parquet(p)
        return
    if name.endswith((".jsonl", ".jsonl.gz")):
        for lineno, row in read_jsonl(p, on_bad):
            yield f"{p}:{lineno}", row
        return
    with open_text(p) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            # JSON Lines saved under a .json name (common): read it line by line instead.
            for lineno, row in read_jsonl(p, on_bad):
                yield f"{p}:{lineno}", row
            return
        raise TuluError(f"{p}:{e.lineno}: {json_problem(e, text)}") from None
    if isinstance(data, dict):
        # Some JSON releases wrap the list ({"data": [...]}); accept the single list value.
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise TuluError(f"{p}: expected a JSON list of records")
        data = lists[0]
    if not isinstance(data, list):
        raise TuluError(f"{p}: expected a JSON list of records, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            report(f"{p}[{i}]", f"expected a JSON object, got {type(row).__name__}")
            continue
        yield f"{p}[{i}]", row


def read_parquet(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, row)`` from a parquet file in batches (never the whole table in memory)."""
    import pyarrow.parquet as pq

    p = Path(path)
    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise TuluError(f"{p}: not a readable parquet file ({e})") from None
    i = 0
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            yield f"{p}[{i}]", row
            i += 1


class JsonlWriter:
    """Write rows to ``path`` atomically: a temp file in the same folder, ``os.replace`` on success."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.count = 0
        self._tmp = temp_path(self.path)  # beside the output; a later run deletes it if this process is killed
        self._f: IO[str] | None = None

    def __enter__(self) -> "JsonlWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self._tmp, "w", encoding="utf-8")
        return self

    def write(self, row: dict[str, Any]) -> None:
        assert self._f is not None
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._f is not None
        self._f.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def write_jsonl(path: str | Path, rows) -> int:
    """Write an iterable of rows atomically; returns the number written."""
    with JsonlWriter(path) as w:
        for row in rows:
            w.write(row)
    return w.count
